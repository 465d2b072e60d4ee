"""The bench's workers run the code the bench runs, not a checkout that is the current
directory: an A/B of two trees (``PYTHONPATH=<tree> touchstream bench``) depends on it."""

from __future__ import annotations

from pathlib import Path

import touchstream
from touchstream.bench.runner import python_child
from touchstream.runtime.stack import clean_env

PRINT_CODE_PATH = "import touchstream; print(touchstream.__file__)"


def test_a_bench_child_imports_the_benchs_touchstream_not_the_current_directorys(
    tmp_path: Path, monkeypatch
) -> None:
    decoy = tmp_path / "other-checkout"
    (decoy / "touchstream").mkdir(parents=True)
    (decoy / "touchstream" / "__init__.py").write_text("")
    workdir = tmp_path / "bench"
    workdir.mkdir()
    monkeypatch.chdir(decoy)  # as when the bench is started from another tree

    child = python_child(["-c", PRINT_CODE_PATH], "probe", clean_env(), workdir, "probe.log")
    try:
        assert child.proc.wait(timeout=60) == 0
    finally:
        child.stop()

    imported = Path((workdir / "probe.log").read_text().strip())
    assert imported == Path(touchstream.__file__).resolve()
