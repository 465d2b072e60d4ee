"""Ports handed to the processes the tests, the demo and the bench start."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from touchstream.runtime import processes


class Kernel:
    """Stands in for the socket module: hands out the ports given, in order, as a bind to
    port 0 would (the kernel may give again a port it just gave, once its socket closed)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def socket(self, *args: Any) -> Any:
        kernel = self

        class Socket:
            def __enter__(self) -> Socket:
                return self

            def __exit__(self, *exc: Any) -> None:
                return None

            def bind(self, address: tuple[str, int]) -> None:
                self.port = kernel.ports.pop(0)

            def getsockname(self) -> tuple[str, int]:
                return ("127.0.0.1", self.port)

        return Socket()


def test_two_ports_asked_for_one_worker_are_never_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "_HANDED_OUT", set())
    kernel = Kernel([41001, 41001, 41001, 41002])
    monkeypatch.setattr(
        processes, "socket", SimpleNamespace(socket=kernel.socket, AF_INET=2, SOCK_STREAM=1)
    )

    api, ops = processes.free_port(), processes.free_port()

    assert (api, ops) == (41001, 41002)
