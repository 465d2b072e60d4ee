"""A RocksDB worker that did not stop cleanly reads its tables from the changelogs again: its
local files may hold states whose changelog records were never sent (runtime/worker.py)."""

from __future__ import annotations

from pathlib import Path

from touchstream.config.settings import Settings, load_settings
from touchstream.runtime.worker import RUNNING_MARKER, discard_unclean_state


def settings(data_dir: Path, store: str) -> Settings:
    env = {"TOUCHSTREAM_ENV": "development", "TOUCHSTREAM_DATA_DIR": str(data_dir)}
    return load_settings(env, store=store)


def tables(data_dir: Path) -> Path:
    tabledir = data_dir / "v1" / "tables"
    (tabledir / "customers-0.db").mkdir(parents=True)
    (tabledir / "customers-0.db" / "CURRENT").write_text("MANIFEST-000001\n")
    return tabledir


def test_local_tables_left_by_a_killed_worker_are_discarded(tmp_path: Path) -> None:
    tabledir = tables(tmp_path)
    (tmp_path / RUNNING_MARKER).touch()  # the last worker here never stopped cleanly
    discard_unclean_state(settings(tmp_path, "rocksdb"), tabledir)
    assert not tabledir.exists()
    assert (tmp_path / RUNNING_MARKER).exists()  # set again for this run


def test_local_tables_of_a_clean_stop_are_kept(tmp_path: Path) -> None:
    tabledir = tables(tmp_path)
    marker = discard_unclean_state(settings(tmp_path, "rocksdb"), tabledir)
    assert (tabledir / "customers-0.db" / "CURRENT").exists()
    assert marker.exists()
