"""Faust's table recovery, made to stop the worker where Faust would leave it stuck for ever.

At each assignment Faust's ``Recovery`` reads the tables' changelogs, then resumes the stream
partitions and seeks them to their committed offsets. It waits for each broker step of that
(highwaters, committed offsets, the seek) at most ``broker_request_timeout``
(``TOUCHSTREAM_BROKER_REQUEST_TIMEOUT_S``), through ``Recovery._wait``, which takes a wait that
timed out for its own service stopping: it raises ``ServiceStopped``, and the recovery loop
(``Recovery._restart_recovery``) ends for good. No later assignment is recovered either, Faust
never clears ``app.rebalancing``, the drain drops every fetch (streams/delivery.py) and the
worker answers not ready until someone restarts it (docs/design/late-writes.md).

Here a wait that timed out while the service is running raises ``RecoveryTimedOut``. The loop
re-raises any exception other than its own, the recovery task ends with it, mode crashes the
worker, and the process exits non-zero for its supervisor to start it again: it reads its
tables from the changelogs and joins the group afresh (docs/operations.md, "What a rebalance
costs"). A seek offset below 0, which Faust can compute and aiokafka refuses, is read as the
start of the changelog (``_seek_offsets``). The overrides are checked against the pinned Faust
by tests/unit/streams/test_library_internals.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from faust.tables import TableManager as FaustTableManager
from faust.tables.recovery import Recovery as FaustRecovery
from faust.tables.recovery import ServiceStopped

from touchstream.errors import TouchstreamError

log = logging.getLogger(__name__)


class RecoveryTimedOut(TouchstreamError):
    """A step of table recovery outlasted ``broker_request_timeout``: the worker stops."""


class Recovery(FaustRecovery):
    async def _wait(self, coro: Any, timeout: Any = None) -> None:
        try:
            await super()._wait(coro, timeout)
        except ServiceStopped:
            if self.should_stop:  # stopping or crashed: Faust's loop ends quietly
                raise
            error = RecoveryTimedOut(
                f"table recovery waited {timeout} s (TOUCHSTREAM_BROKER_REQUEST_TIMEOUT_S) for "
                "the broker and gave up: Faust would recover no assignment again and the "
                "worker would stay not ready, so it stops for its supervisor to restart it"
            )
            log.critical("%s", error)
            raise error from None

    async def _seek_offsets(
        self, consumer: Any, tps: set[Any], offsets: Counter[Any], title: str
    ) -> None:
        """Faust's seek to where a changelog's reading starts, with no offset below 0.

        Faust reads -1 as "nothing read yet" and seeks 0 for it, but its ``_build_offsets``
        can leave a lower value or None for a partition (an earliest offset, minus one, from a
        broker that had none to give during a quick second rebalance), which aiokafka's
        ``seek`` refuses with ``ValueError``: the recovery task crashed the worker at start
        (the chaos scenario of a rewound group, issue 29's tenth stop). Such an offset is read
        as -1 here, in Faust's own offsets (it counts what is left to read from them: a copy
        would leave an empty partition one record short for ever): the changelog partition is
        read from its start."""
        for tp in tps:
            offset = offsets[tp]
            if not isinstance(offset, int) or offset < -1:
                offsets[tp] = -1
        await super()._seek_offsets(consumer, tps, offsets, title)


class TableManager(FaustTableManager):
    """Faust's table manager, with the recovery above (``TableManager`` App setting)."""

    @property
    def recovery(self) -> FaustRecovery:
        # Faust's ``TableManager.recovery``, with this module's class
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
