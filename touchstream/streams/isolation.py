"""Fault isolation: one record whose processing raises never stops its partition.

A record from outside (an inbound touchpoint, a customer-stage event or tick) that raises
anywhere (decode, the pure core, the projection, building its output) is parked on the
quarantine topic with its reason, the exception, its original bytes (bounded as DLQ records
are, ``schemas.dlq``), topic, partition, offset and stage; the rest of its batch is applied
exactly once and the partition moves on.

Nothing of the failed record survives. The core changes the states it reads in place, so the
customer stage does not undo a record alone: while a batch runs, every side effect it has
outside its own ``StateCache`` (records queued in the outbox, table writes of the activity and
ledger tables, Redis writes queued, timer index changes) is journaled in an ``Undo``; when a
record raises, the journal is played backwards, the batch's cache is dropped (the table still
holds every state as of the batch's start) and the batch runs again without the failed record.
The happy path pays one list append per side effect.

The internal identity messages (merge, absorb, fold, release, drop, forget) must never be
parked: parking one loses points or undoes an erasure. If one raises, its partition is halted
(``Halted``): the records before it are applied, nothing from it on is acknowledged or handled,
a gauge and a critical alert say so and the worker is not ready, until the partition is
assigned again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from touchstream.errors import TouchstreamError
from touchstream.schemas.dlq import dlq_record, message_record

REASON = "processing_failed"
# record kinds of the customer-events topic that came from outside and may be parked
EXTERNAL_KINDS = frozenset(("ev", "tick"))
# "internal": an identity message caused by the event (never parked: its partition halts);
# "timer": a customer's due timers firing (named by customer id, not event id)
STAGES = ("ingest", "codec", "core", "projection", "output", "internal", "timer")
# the stages a record goes through, and recovery's seek of a consumer generation (named by
# the generation: it never ends, streams.transport), which no record goes through
FAULT_STAGES = (*STAGES, "seek")
EXCEPTION_MAX_CHARS = 500


class InjectedFault(TouchstreamError):
    """Raised by a stage for an event named in ``TOUCHSTREAM_FAULTS`` (tests only)."""


class Undo:
    """Inverse operations of a batch's side effects, played backwards on ``rollback``: each
    entry a ``(function, *arguments)`` tuple (cheaper to make than a closure, on the hot path).

    ``entries`` is None outside a batch: then nothing is journaled."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] | None = None

    def begin(self) -> None:
        self.entries = []

    def commit(self) -> None:
        self.entries = None

    def rollback(self) -> None:
        entries, self.entries = self.entries, None
        for function, *arguments in reversed(entries or ()):
            function(*arguments)


class Faults:
    """The test-only fault plan: which stage raises for which event ids (off: empty)."""

    def __init__(self, spec: str) -> None:
        wanted: dict[str, set[str]] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            stage, _, event_id = item.partition(":")
            if stage not in FAULT_STAGES or not event_id:
                raise ValueError(f"TOUCHSTREAM_FAULTS: {item!r} is not <stage>:<event_id>")
            wanted.setdefault(stage, set()).add(event_id)
        self.plan = {stage: frozenset(ids) for stage, ids in wanted.items()}

    @classmethod
    def parse(cls, spec: str) -> Faults | None:
        """The plan, or None when off (the stages test ``if faults``: a None check)."""
        return cls(spec) if spec.strip() else None

    def holds(self, stage: str, event_id: Any) -> bool:
        return event_id in self.plan.get(stage, ())

    def check(self, stage: str, event_id: Any) -> None:
        if self.holds(stage, event_id):
            raise InjectedFault(f"fault injected in stage {stage} for event {event_id}")


@dataclass
class Failure:
    """A record whose processing raised: where, and why."""

    index: int  # in its batch
    stage: str
    error: BaseException
    internal: bool  # an identity message: never parked, its partition halts
    # a customer whose due timers raised while this record fired them: the record is not at
    # fault, that customer's timers are left out (its state unchanged) and the record applied
    timer: str | None = None

    def describe(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"[:EXCEPTION_MAX_CHARS]


class TimerFailed(TouchstreamError):
    def __init__(self, customer_id: str, error: BaseException) -> None:
        super().__init__(f"timers of {customer_id}: {error!r}")
        self.customer_id = customer_id
        self.error = error


class RecordFailed(TouchstreamError):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


def quarantine_record(message: Any, topic: str, stage: str, error: BaseException) -> bytes:
    """The quarantine record of ``message``: the DLQ record format plus stage and exception."""
    text = f"{type(error).__name__}: {error}"[:EXCEPTION_MAX_CHARS]
    return message_record(
        REASON,
        f"processing raised in stage {stage}: {text}",
        topic,
        message,
        stage=stage,
        exception_type=type(error).__name__[:200],
        exception=text,
    )


def timer_quarantine_record(
    message: Any, topic: str, customer_id: str, error: BaseException
) -> bytes:
    """A customer's timers that raised, fired by ``message``: no original record to send
    back (``replayable`` false); the customer's state is as it was, its timers fire again the
    next time its state is written."""
    text = f"{type(error).__name__}: {error}"[:EXCEPTION_MAX_CHARS]
    timestamp = int(message.timestamp * 1000) if message.timestamp else None
    return dlq_record(
        REASON,
        f"the timers of {customer_id} raised: {text}",
        topic,
        message.partition,
        message.offset,
        timestamp,
        customer_id.encode(),
        None,
        stage="timer",
        customer_id=customer_id,
        exception_type=type(error).__name__[:200],
        exception=text,
        replayable=False,
    )
