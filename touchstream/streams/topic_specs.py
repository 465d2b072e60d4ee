"""Every topic a worker owns, with the partitions and settings it must have (docs/topics.md),
and the comparison of a topic as the broker describes it with what it must be.

Pure: no Kafka client here. ``streams.topic_admin`` creates and describes the topics.

What a difference means is decided here, once:
- fatal (the worker refuses to start): a changelog whose cleanup.policy lacks ``compact``
  (erased state would stay until retention, and recovery would lose the state of customers
  idle longer than that), a changelog whose ``max.compaction.lag.ms`` exceeds the configured
  bound (erasure would not leave the disk in time), and a partition count differing from
  ``TOUCHSTREAM_PARTITIONS`` on ``touchstream.customer-events`` or a changelog (a customer's
  events and state must sit on partitions of the same number: co-partitioning);
- a warning, topic left as it is: anything else differing (retention, segment size, the
  partitions of an output topic, fewer replicas). Operators may choose those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from touchstream.config.settings import Settings, key
from touchstream.streams import topics

HOUR_MS = 3_600_000
COMPACT = "compact"
DELETE = "delete"
CLEANUP_POLICY = "cleanup.policy"
MAX_COMPACTION_LAG = "max.compaction.lag.ms"
# how long a tombstone stays readable after compaction: a worker recovering a changelog
# partition must see the tombstone, or its local copy (RocksDB) would keep the erased
# state; Kafka's default, stated so that the broker's own default cannot shorten it
DELETE_RETENTION_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Changelog:
    """A Faust table's changelog: its topic name and, for a windowed table, the retention
    Faust gives it (the window's expiry), or None."""

    name: str
    window_retention_ms: int | None = None


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str]
    role: str  # what docs/topics.md calls it: input, internal, dlq, output, changelog, ...
    # co-partitioned with customer-events: any other partition count breaks the stage
    strict_partitions: bool = False

    def creation(self) -> str:
        """The settings an operator must create this topic with, on one line."""
        settings = [f"partitions={self.partitions}", f"replication.factor={self.replication}"]
        settings += [f"{k}={v}" for k, v in sorted(self.config.items())]
        return " ".join(settings)


@dataclass(frozen=True)
class Difference:
    topic: str
    setting: str
    actual: str
    wanted: str
    fatal: bool
    why: str = field(default="", compare=False)

    def problem(self) -> str:
        text = f"{self.setting} is {self.actual}, must be {self.wanted}"
        return f"{text} ({self.why})" if self.why else text

    def line(self) -> str:
        return f"topic {self.topic}: {self.problem()}"


def _hours(hours: int) -> str:
    return str(hours * HOUR_MS)


def compacted_config(settings: Settings) -> dict[str, str]:
    """Settings of every changelog: compaction bounded in time, so an erased customer's
    overwritten state leaves the broker's disk within ``changelog_compaction_lag_hours``."""
    lag_ms = settings.changelog_compaction_lag_hours * HOUR_MS
    return {
        CLEANUP_POLICY: COMPACT,
        MAX_COMPACTION_LAG: str(lag_ms),
        "min.compaction.lag.ms": "0",
        # only closed segments are compacted: segments roll within half the bound, leaving
        # the other half for the log cleaner, which may be busy with other topics
        "segment.ms": str(lag_ms // 2),
        # past max.compaction.lag.ms the cleaner compacts whatever the ratio; below it, the
        # broker's usual trade-off between rewriting and disk
        "min.cleanable.dirty.ratio": "0.5",
        "delete.retention.ms": str(DELETE_RETENTION_MS),
    }


def _deleting(retention_hours: int) -> dict[str, str]:
    return {CLEANUP_POLICY: DELETE, "retention.ms": _hours(retention_hours)}


def topic_specs(
    settings: Settings, changelogs: Iterable[Changelog], leader_topic: str | None = None
) -> list[TopicSpec]:
    """Every topic the worker owns: its inputs, the DLQ, the outputs, the table changelogs
    (named by Faust, ``{app_id}-{table}-changelog``) and Faust's assignor topic."""
    partitions, replication = settings.partitions, settings.replication_factor

    def spec(name: str, config: dict[str, str], role: str, strict: bool = False) -> TopicSpec:
        return TopicSpec(name, partitions, replication, config, role, strict)

    specs = [
        # producers choose its keys and may create it themselves: any partition count works,
        # ingest re-keys every event onto customer-events
        spec(
            settings.topic(topics.TOUCHPOINTS), _deleting(settings.input_retention_hours), "input"
        ),
        # erasure, access, redemption, consent grants: written only by the data-request and
        # loyalty services (domain.privileged, docs/security.md)
        spec(settings.topic(topics.PRIVILEGED), _deleting(settings.input_retention_hours), "input"),
        spec(
            settings.topic(topics.CUSTOMER_EVENTS),
            _deleting(settings.input_retention_hours),
            "internal",
            strict=True,
        ),
    ]
    for name in topics.OUTPUTS:
        if name in (topics.DLQ, topics.QUARANTINE):  # original bytes: the DLQ's retention
            role = "dlq" if name == topics.DLQ else "quarantine"
            specs.append(spec(settings.topic(name), _deleting(settings.dlq_retention_hours), role))
        else:
            specs.append(
                spec(settings.topic(name), _deleting(settings.output_retention_hours), "output")
            )
    for changelog in changelogs:
        config = compacted_config(settings)
        role = "changelog"
        if changelog.window_retention_ms is not None:
            # Faust's windowed changelogs: compacted, and windows past their expiry deleted
            config[CLEANUP_POLICY] = f"{COMPACT},{DELETE}"
            config["retention.ms"] = str(changelog.window_retention_ms)
            role = "windowed changelog"
        specs.append(spec(changelog.name, config, role, strict=True))
    if leader_topic is not None:
        # Faust's group leader election subscribes to it; nothing is ever written to it
        specs.append(
            TopicSpec(
                leader_topic,
                1,
                replication,
                _deleting(settings.output_retention_hours),
                "assignor",
            )
        )
    return specs


def _policy(value: str) -> frozenset[str]:
    return frozenset(p.strip() for p in value.split(",") if p.strip())


def _number(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def compare(
    spec: TopicSpec, partitions: int, replication: int, config: Mapping[str, str]
) -> list[Difference]:
    """How the topic as described differs from ``spec``, fatal differences first.

    ``config`` holds what the broker reports; a setting it does not report (the embedded
    Tansu broker reports only those given at creation) is not compared."""
    found: list[Difference] = []
    if partitions != spec.partitions:
        found.append(
            Difference(
                spec.name,
                "the partition count",
                str(partitions),
                f"{spec.partitions} ({key('partitions')})",
                spec.strict_partitions,
                "co-partitioned with customer-events: each customer's state must be on the"
                " partition of the same number"
                if spec.strict_partitions
                else "",
            )
        )
    if replication < spec.replication:
        found.append(
            Difference(
                spec.name,
                "the replication factor",
                str(replication),
                f"{spec.replication} ({key('replication_factor')})",
                False,
            )
        )
    for name, wanted in spec.config.items():
        actual = config.get(name)
        if actual is None or _same(name, actual, wanted) or _stricter(name, actual, wanted):
            continue
        found.append(_config_difference(spec, name, actual, wanted))
    return sorted(found, key=lambda d: not d.fatal)


def _same(name: str, actual: str, wanted: str) -> bool:
    if name == CLEANUP_POLICY:
        return _policy(actual) == _policy(wanted)
    a, w = _number(actual), _number(wanted)
    if a is not None and w is not None:
        return a == w
    try:
        return float(actual) == float(wanted)
    except ValueError:
        return actual == wanted


def _stricter(name: str, actual: str, wanted: str) -> bool:
    """A changelog compacted sooner than asked keeps the erasure promise: nothing to say."""
    a, w = _number(actual), _number(wanted)
    return name == MAX_COMPACTION_LAG and a is not None and w is not None and a < w


def _config_difference(spec: TopicSpec, name: str, actual: str, wanted: str) -> Difference:
    if name == CLEANUP_POLICY and COMPACT in _policy(wanted) and COMPACT not in _policy(actual):
        return Difference(
            spec.name,
            name,
            repr(actual),
            repr(wanted),
            True,
            "a changelog must be compacted: with delete only, erased customers stay until"
            " retention and recovery loses the state of customers idle longer than that",
        )
    if name == MAX_COMPACTION_LAG:
        return Difference(
            spec.name,
            name,
            actual,
            f"at most {wanted} ({key('changelog_compaction_lag_hours')})",
            True,
            "erased state would stay on the broker's disk longer than promised",
        )
    return Difference(spec.name, name, actual, wanted, False)


def missing_problem(spec: TopicSpec, others: Iterable[str] = ()) -> str:
    """What to tell an operator about a topic this worker may not create (one line)."""
    rest = list(others)
    line = f"does not exist and this worker may not create topics: create it with {spec.creation()}"
    if rest:
        line += f" (also missing: {', '.join(rest)}; docs/topics.md lists their settings)"
    return line
