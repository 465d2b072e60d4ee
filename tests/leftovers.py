"""What a command that stopped may have left behind: a port still listening, a process still
holding one of its files. Shared by the end-to-end tests of ``demo`` and ``bench``."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def port_open(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def holders_of(path: str) -> list[int]:
    """Live processes with a file open under ``path`` (logs, data directories)."""
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith(path) for link in links):
            holders.append(int(proc.name))
    return holders
