"""Ctrl-C stops the bench even when what it is awaiting swallows the cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest

from touchstream.bench.runner import _cancel_on_signals


async def _swallows_the_first_cancellation(log: list[str]) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    with contextlib.suppress(asyncio.CancelledError):  # as aiokafka's close() does
        await asyncio.sleep(10)
    log.append("went on after the first cancellation")
    await asyncio.sleep(10)
    log.append("ran to the end")


async def _ends_by_itself(log: list[str]) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)
    log.append("ran to the end")


def test_ctrl_c_stops_a_bench_that_swallowed_the_first_cancellation() -> None:
    log: list[str] = []
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(_cancel_on_signals(_swallows_the_first_cancellation(log)))
    assert log == ["went on after the first cancellation"]
    assert time.monotonic() - started < 5


def test_a_bench_interrupted_is_reported_interrupted_even_if_it_finished() -> None:
    log: list[str] = []
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(_cancel_on_signals(_ends_by_itself(log)))
    assert log == ["ran to the end"]
    # the handlers the bench found are back (a shell's background job starts with SIGINT ignored)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
