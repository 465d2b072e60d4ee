"""Write the golden outputs of the core: ``python -m tests.golden.regenerate [--write] [NAME...]``.

Without ``--write`` it only replays each data set (all three by default: bench, chaos,
adversarial) and says whether the files on disk still hold what the core produces now, naming
the first differences; it never overwrites. The golden files are the core's outputs *before*
issue 29: regenerate them only from a commit whose behaviour is the reference (see
docs/testing.md, "Golden outputs of the core"), never to make a failing test pass.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.golden.datasets import DATASETS
from tests.golden.projection import Doc, differences

HERE = Path(__file__).parent
# a file larger than this once encoded is stored gzip-compressed (``<name>.json.gz``)
COMPRESS_OVER_BYTES = 300_000


def encode(doc: Doc) -> bytes:
    """Sorted keys and indented, so a diff of two uncompressed files reads field by field."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def normalised(doc: Doc) -> Any:
    """``doc`` as it reads back from its file (tuples become lists, and so on)."""
    return orjson.loads(encode(doc))


def path_of(name: str) -> Path:
    plain = HERE / f"{name}.json"
    return plain if plain.exists() else HERE / f"{name}.json.gz"


def load(name: str) -> Any:
    path = path_of(name)
    data = path.read_bytes()
    return orjson.loads(gzip.decompress(data) if path.suffix == ".gz" else data)


def write(name: str, doc: Doc) -> Path:
    data = encode(doc)
    for stale in (HERE / f"{name}.json", HERE / f"{name}.json.gz"):
        stale.unlink(missing_ok=True)
    if len(data) > COMPRESS_OVER_BYTES:
        path = HERE / f"{name}.json.gz"
        path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))  # byte-stable
    else:
        path = HERE / f"{name}.json"
        path.write_bytes(data)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[[], *DATASETS], default=[])
    parser.add_argument("--write", action="store_true", help="overwrite the golden files")
    args = parser.parse_args(argv)
    differing = 0
    for name in args.names or list(DATASETS):
        doc = normalised(DATASETS[name]())
        if args.write:
            path = write(name, doc)
            print(f"{name}: wrote {path} ({path.stat().st_size:,} B)")
            continue
        try:
            golden = load(name)
        except FileNotFoundError:
            print(f"{name}: no golden file yet (--write to create it)")
            differing += 1
            continue
        problems = differences(golden, doc)
        if problems:
            differing += 1
            print(f"{name}: differs from its golden file; first differences:")
            print("  " + "\n  ".join(problems))
        else:
            print(f"{name}: equal to its golden file")
    if differing and not args.write:
        print("nothing written: --write overwrites the golden files", file=sys.stderr)
    return 1 if differing and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
