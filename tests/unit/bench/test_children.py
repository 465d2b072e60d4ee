"""The bench's workers run the code the bench runs, not a checkout that is the current
directory: an A/B of two trees (``PYTHONPATH=<tree> touchstream bench``) depends on it."""

from __future__ import annotations

from pathlib import Path

import touchstream
from touchstream.bench import runner
from touchstream.bench.runner import python_child
from touchstream.runtime.stack import clean_env

PRINT_CODE_PATH = "import touchstream; print(touchstream.__file__)"
PRINT_MARKER = "import touchstream; print(touchstream.MARKER)"


def _package(root: Path, marker: str) -> None:
    (root / "touchstream").mkdir(parents=True)
    (root / "touchstream" / "__init__.py").write_text(f"MARKER = {marker!r}\n")


def _probe(code: str, env: dict[str, str], workdir: Path) -> str:
    """What a bench child running ``code`` printed."""
    child = python_child(["-c", code], "probe", env, workdir, "probe.log")
    try:
        assert child.proc.wait(timeout=60) == 0
    finally:
        child.stop()
    return (workdir / "probe.log").read_text().strip()


def test_a_bench_child_imports_the_benchs_touchstream_not_the_current_directorys(
    tmp_path: Path, monkeypatch
) -> None:
    decoy = tmp_path / "other-checkout"
    _package(decoy, "decoy")
    workdir = tmp_path / "bench"
    workdir.mkdir()
    monkeypatch.chdir(decoy)  # as when the bench is started from another tree

    imported = Path(_probe(PRINT_CODE_PATH, clean_env(), workdir))
    assert imported == Path(touchstream.__file__).resolve()


def test_a_bench_child_imports_the_root_the_bench_was_imported_from_ahead_of_pythonpath(
    tmp_path: Path, monkeypatch
) -> None:
    # the other half of the A/B: the tree the bench runs goes first, ahead of an inherited
    # PYTHONPATH that names another tree
    bench_tree, other_tree = tmp_path / "bench-tree", tmp_path / "other-tree"
    _package(bench_tree, "bench tree")
    _package(other_tree, "other tree")
    workdir = tmp_path / "bench"
    workdir.mkdir()
    monkeypatch.setattr(runner, "code_root", lambda: str(bench_tree))
    env = {**clean_env(), "PYTHONPATH": str(other_tree)}

    assert _probe(PRINT_MARKER, env, workdir) == "bench tree"


def test_a_relative_pythonpath_entry_still_names_the_tree_the_user_meant(
    tmp_path: Path, monkeypatch
) -> None:
    _package(tmp_path / "tree", "relative tree")
    workdir = tmp_path / "bench"
    workdir.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "code_root", lambda: None)  # as if installed in site-packages
    env = {**clean_env(), "PYTHONPATH": "tree"}

    assert _probe(PRINT_MARKER, env, workdir) == "relative tree"


def test_an_installed_touchstream_adds_nothing_to_the_childrens_path(monkeypatch) -> None:
    root = str(Path(touchstream.__file__).resolve().parent.parent)
    monkeypatch.setattr(runner.site, "getsitepackages", lambda: [root])
    assert runner.code_root() is None
