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
costs"). The overrides are checked against the pinned Faust by
tests/unit/streams/test_library_internals.py.
"""

from __future__ import annotations

import logging
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


class TableManager(FaustTableManager):
    """Faust's table manager, with the recovery above (``TableManager`` App setting)."""

    @property
    def recovery(self) -> FaustRecovery:
        # Faust's ``TableManager.recovery``, with this module's class
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
