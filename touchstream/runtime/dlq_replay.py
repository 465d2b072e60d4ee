"""``touchstream dlq replay``: re-submit dead-lettered records to touchpoints.

``--from quarantine`` re-submits quarantined records (``streams.isolation``) instead, each to
the topic and partition it was read from (touchpoints or touchstream.customer-events).

After a producer fix or a contract change, the original bytes go back to the inbound topic.
The consumer group remembers what was replayed, so running it twice does not submit a record
twice; a record that is still bad simply lands in the DLQ again, with its reason.

``--dry-run`` reads the same records, checks their original bytes against the current
validation (decode + ingest normalisation, as the ingest agent does) and prints what a replay
would do; it produces nothing and commits no offsets.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from touchstream.config.rules import load_rules
from touchstream.config.settings import DEV_HMAC_SECRET, Settings, load_client_settings
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.errors import PoisonEvent
from touchstream.schemas.decode import decode
from touchstream.schemas.dlq import original_bytes, replayable
from touchstream.streams import topics
from touchstream.streams.kafka_client import security_kwargs
from touchstream.streams.transport import probe_end_offsets

QUIET_S = 2.0
# topics a quarantined record may be sent back to (names before the prefix): the worker's inputs
# (a privileged command parked on quarantine goes back to the privileged input, where it was)
QUARANTINE_SOURCES = (*topics.INPUTS, topics.CUSTOMER_EVENTS)
PASS = "pass"


def run_replay(args: argparse.Namespace) -> int:
    # the worker's TOUCHSTREAM_BROKER, TOUCHSTREAM_KAFKA_* and topic settings; --broker wins.
    # Client settings: a replay needs no HMAC secret and no Redis (docs/security.md).
    settings = load_client_settings(rules=args.rules, broker=args.broker)
    bootstrap = settings.bootstrap_servers()
    security = security_kwargs(settings)
    reasons = set(args.reason or ())
    source = getattr(args, "source", "dlq")
    if source == "quarantine":
        return _replay_quarantine(args, settings, reasons)
    dlq_topic = settings.topic(topics.DLQ)
    group = f"{settings.app_id}-dlq-replay-{'-'.join(sorted(reasons)) or 'all'}"
    if args.dry_run:
        ingest = ingest_for(settings)
        report = asyncio.run(
            dry_run(
                bootstrap,
                dlq_topic,
                group,
                reasons,
                args.max,
                ingest,
                settings.max_event_bytes,
                settings.probe_end_offsets,
                security,
            )
        )
        print(orjson.dumps(report.as_json()).decode() if args.json else report.format(dlq_topic))
        return 0
    target = settings.topic(topics.TOUCHPOINTS)
    replayed, skipped = asyncio.run(
        replay(
            bootstrap,
            dlq_topic,
            target,
            group,
            reasons,
            args.max,
            settings.probe_end_offsets,
            security,
        )
    )
    print(
        f"replayed {replayed} DLQ records to {target}"
        f" ({skipped} left: other reasons, or originals kept only in part)"
    )
    return 0


def _replay_quarantine(args: argparse.Namespace, settings: Settings, reasons: set[str]) -> int:
    """Quarantined records go back where they came from: the topic (touchpoints or
    customer-events) and partition their quarantine record names."""
    if args.dry_run:
        raise SystemExit("--dry-run checks DLQ records against the contract; not --from quarantine")
    source = settings.topic(topics.QUARANTINE)
    allowed = {settings.topic(name) for name in QUARANTINE_SOURCES}
    group = f"{settings.app_id}-quarantine-replay-{'-'.join(sorted(reasons)) or 'all'}"
    replayed, skipped = asyncio.run(
        replay(
            settings.bootstrap_servers(),
            source,
            None,
            group,
            reasons,
            args.max,
            settings.probe_end_offsets,
            security_kwargs(settings),
            allowed,
        )
    )
    print(
        f"replayed {replayed} quarantined records to the topics they came from"
        f" ({skipped} left: other reasons, other topics, or originals kept only in part)"
    )
    return 0


def requeued(value: bytes | None) -> bytes | None:
    """A quarantined record as it goes back. An event of the customer stage keeps its event
    id, but its inbound position moves to a route of its own (``q<partition>``): events of
    that inbound partition applied since have a higher offset, and the stage would take it
    for a redelivery. Replaying it twice is still recognised (same route and offset, and the
    event id). Anything else (a touchpoint, a tick) goes back byte for byte."""
    if value is None:
        return value
    try:
        msg = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if (
        not isinstance(msg, dict)
        or msg.get("k", "ev") != "ev"
        or "in" not in msg
        or "cid" not in msg
    ):
        return value
    partition, offset, *topic = msg["in"]  # the topic identity, if ingest had one
    if str(partition).startswith("q"):
        return value
    msg["in"] = [f"q{partition}", offset, *topic]
    return orjson.dumps(msg)


def ingest_for(settings: Settings) -> Ingest:
    """The ``Ingest`` a worker with these settings builds (see ``streams.topology``). Whether
    a record passes does not depend on the HMAC secret, only the digests it computes do, and
    they are not shown: without one, the development secret is used."""
    rules = load_rules(settings.rules or None)
    normaliser = IdentityNormaliser(
        settings.hmac_key_set() or DEV_HMAC_SECRET,
        rules.identity.blocked_values,
        rules.identity.default_country_code,
    )
    return Ingest(rules.program, normaliser, settings.future_tolerance_s * 1000)


def revalidate(value: bytes | None, ingest: Ingest, max_bytes: int, now_ms: int) -> str:
    """``pass``, or the DLQ reason the ingest agent would give these bytes now."""
    try:
        ingest.normalise(decode(value, max_bytes), now_ms, 0, 0)
    except PoisonEvent as exc:
        return exc.reason
    except Exception:  # the ingest agent quarantines these (streams.isolation)
        return "internal_error"
    return PASS


def classify(
    entries: Iterable[dict[str, Any]], ingest: Ingest, max_bytes: int, now_ms: int, report: DryRun
) -> DryRun:
    """Count DLQ records by (their reason, what the current validation says of their bytes)."""
    for entry in entries:
        outcome = revalidate(original_bytes(entry)[1], ingest, max_bytes, now_ms)
        report.add(str(entry.get("reason")), outcome)
    return report


@dataclass
class DryRun:
    """What a replay would do with the records it takes: (original reason, outcome) counts."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: int = 0  # records with other reasons than --reason asks for

    def add(self, original: str, outcome: str) -> None:
        self.outcomes[original, outcome] += 1

    @property
    def read(self) -> int:
        return sum(self.outcomes.values())

    @property
    def passing(self) -> int:
        return sum(n for (_, outcome), n in self.outcomes.items() if outcome == PASS)

    def rows(self) -> list[tuple[str, str, int]]:
        """Passes first, then failures; each by original reason, then new reason."""
        rows = [(original, outcome, n) for (original, outcome), n in self.outcomes.items()]
        return sorted(rows, key=lambda r: (r[1] != PASS, r[0], r[1]))

    def format(self, dlq_topic: str) -> str:
        lines = [
            f"dry run: read {self.read} records from {dlq_topic}"
            f" ({self.skipped} left: other reasons, or originals kept only in part);"
            " nothing produced, no offsets committed",
            f"would pass {self.passing}, would still fail {self.read - self.passing}",
        ]
        if self.outcomes:
            lines.append(f"{'original reason':<22} {'now':<22} {'records':>7}")
            lines += [f"{o:<22} {n:<22} {c:>7}" for o, n, c in self.rows()]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "skipped": self.skipped,
            "pass": self.passing,
            "fail": self.read - self.passing,
            "outcomes": [{"original": o, "now": n, "records": c} for o, n, c in self.rows()],
        }


def _consumer(
    bootstrap: str, dlq_topic: str, group: str, security: Mapping[str, Any] | None
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        dlq_topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(security or {}),
    )


async def _selection(
    consumer: AIOKafkaConsumer,
    reasons: set[str],
    limit: int | None,
    probe: str | None,
    topics_allowed: set[str] | None = None,
) -> AsyncIterator[tuple[list[dict[str, Any]], int, dict[TopicPartition, int]]]:
    """Batches of what the DLQ holds now, from the group's position: (records taken,
    records left for other reasons or not replayable, next offset per partition to commit once handled).

    ``probe``: bootstrap servers to read the true end offsets with (the embedded broker
    under-reports them, see ``streams.transport``), or None to trust the broker.
    """
    # records that fail again land behind this mark
    assigned = consumer.assignment()
    end = await consumer.end_offsets(list(assigned)) if assigned else {}
    if probe:
        end = await probe_end_offsets(probe, end)
    pending = {tp for tp in assigned if await consumer.position(tp) < end[tp]}
    taken = 0
    quiet_since = time.monotonic()
    while pending and time.monotonic() - quiet_since < QUIET_S:
        if limit is not None and taken >= limit:
            break
        batches = await consumer.getmany(*pending, timeout_ms=300, max_records=1000)
        if not batches:
            continue
        quiet_since = time.monotonic()
        handled: dict[TopicPartition, int] = {}
        entries: list[dict[str, Any]] = []
        skipped = 0
        for tp, records in batches.items():
            for record in records:
                if record.offset >= end[tp] or (limit is not None and taken >= limit):
                    break
                handled[tp] = record.offset + 1
                entry = orjson.loads(record.value or b"{}")
                if (
                    (reasons and entry.get("reason") not in reasons)
                    or not replayable(entry)
                    or (topics_allowed is not None and entry.get("topic") not in topics_allowed)
                ):
                    skipped += 1
                    continue
                entries.append(entry)
                taken += 1
        yield entries, skipped, handled
        pending = {tp for tp in pending if handled.get(tp, await consumer.position(tp)) < end[tp]}


async def replay(
    bootstrap: str,
    dlq_topic: str,
    target: str | None,
    group: str,
    reasons: set[str],
    limit: int | None,
    probe_end: bool = False,
    security: Mapping[str, Any] | None = None,
    topics_allowed: set[str] | None = None,
) -> tuple[int, int]:
    """``security``: aiokafka login arguments (``kafka_client.security_kwargs``). ``target``
    None: each record back to the topic and partition it names (the quarantine), if one of
    ``topics_allowed``."""
    consumer = _consumer(bootstrap, dlq_topic, group, security)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_request_size=4 * 1024 * 1024,
        **(security or {}),
    )
    await consumer.start()
    await producer.start()
    replayed = skipped = 0
    try:
        probe = bootstrap if probe_end else None
        selection = _selection(consumer, reasons, limit, probe, topics_allowed)
        async for entries, other, handled in selection:
            for entry in entries:
                key, value = original_bytes(entry)
                if target is None:
                    value = requeued(value)
                    await producer.send(
                        entry["topic"], value, key=key, partition=entry["partition"]
                    )
                else:
                    await producer.send(target, value, key=key)
            await producer.flush()
            if handled:  # only after the records are safely in the target topic
                await consumer.commit(handled)
            replayed += len(entries)
            skipped += other
    finally:
        await producer.stop()
        await consumer.stop()
    return replayed, skipped


async def dry_run(
    bootstrap: str,
    dlq_topic: str,
    group: str,
    reasons: set[str],
    limit: int | None,
    ingest: Ingest,
    max_bytes: int,
    probe_end: bool = False,
    security: Mapping[str, Any] | None = None,
) -> DryRun:
    """What ``replay`` with these arguments would do now; produces nothing, commits nothing."""
    consumer = _consumer(bootstrap, dlq_topic, group, security)
    report = DryRun()
    now_ms = int(time.time() * 1000)
    await consumer.start()
    try:
        probe = bootstrap if probe_end else None
        async for entries, other, _ in _selection(consumer, reasons, limit, probe):
            classify(entries, ingest, max_bytes, now_ms, report)
            report.skipped += other
    finally:
        await consumer.stop()
    return report
