"""Running a ``touchstream`` command as an operator does: a process of its own, with only the
environment given, run to its exit. Shared by the tests of how a command stops and what it
prints when it does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def run_touchstream(
    *args: str, env: Mapping[str, str], timeout_s: float = 90
) -> subprocess.CompletedProcess[str]:
    """``python -m touchstream ARGS`` with exactly ``env``; its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "touchstream", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
