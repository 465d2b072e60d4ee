"""Prometheus metrics. Label values come from closed sets (types, channels, reasons), never ids."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# one sample per series: the _created timestamps double the scrape size and nobody graphs them
disable_created_metrics()

EVENTS_IN = Counter(
    "touchstream_events_in_total", "Valid inbound events accepted by ingest", ["type", "channel"]
)
DLQ = Counter("touchstream_dlq_total", "Inbound records sent to the DLQ", ["reason"])
EVENTS_APPLIED = Counter(
    "touchstream_events_applied_total", "Events applied to customer state", ["type"]
)
DUPLICATES = Counter(
    "touchstream_duplicates_skipped_total", "Redelivered or duplicate events skipped", ["stage"]
)
SEEN_EVICTED = Counter(
    "touchstream_dedup_ids_evicted_total",
    "Event ids pushed out of a customer's duplicate memory by its cap (SEEN_CAP) while still "
    "inside its span of event time: a re-send of one of them would be applied again",
)
DECISION_LATENCY = Histogram(
    "touchstream_event_to_decision_seconds",
    "Wall time from the inbound record's timestamp to its state update and outputs",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROFILE_UPDATES = Counter(
    "touchstream_profile_updates_total",
    "Profile updates published to profiles.updates (one per customer per fetch)",
)
REDIS_SYNC_ERRORS = Counter(
    "touchstream_redis_sync_errors_total", "Failed Redis profile writes (retried)"
)
REDIS_SYNC_PENDING = Gauge(
    "touchstream_redis_sync_pending", "Profiles waiting to be written to Redis"
)
REDIS_SYNC_OVERFLOWS = Counter(
    "touchstream_redis_sync_overflows_total",
    "Times the profiles waiting for Redis reached TOUCHSTREAM_REDIS_MAX_PENDING: they were "
    "dropped and every profile is re-synced from the table once Redis answers",
)
REDIS_SYNC_LAG = Gauge(
    "touchstream_redis_sync_lag_seconds", "Age of the oldest profile change not yet in Redis"
)
REDIS_WRITES = Counter(
    "touchstream_redis_profile_writes_total", "Profile writes applied in Redis", ["result"]
)
TABLE_KEYS = Gauge("touchstream_table_keys", "Keys held in a local table", ["table"])
READY = Gauge("touchstream_ready", "1 when partitions are assigned and tables recovered")
REDIS_RESYNCS = Counter(
    "touchstream_redis_resyncs_total",
    "Full rewrites of local profiles to Redis (after recovery or Redis data loss)",
)
IDENTITY_LINKS = Counter(
    "touchstream_identity_links_total",
    "Links requested: an event carried an identifier its profile did not hold yet",
)
IDENTITY_MERGES = Counter(
    "touchstream_identity_merges_total", "Profiles folded into another (published on merges)"
)
IDENTITY_REFUSALS = Counter(
    "touchstream_identity_link_refusals_total",
    "Links refused because the joined profile would break a per-profile identifier limit",
    ["limit"],
)
FORWARDED = Counter(
    "touchstream_identity_forwarded_total",
    "Records forwarded from an absorbed customer id to the profile that holds it now",
    ["kind"],
)
ANONYMOUS_EXPIRED = Counter(
    "touchstream_anonymous_profiles_expired_total",
    "Anonymous-only profiles dropped after the idle TTL (state, Redis profile and aliases)",
)
ERASURES = Counter(
    "touchstream_erasures_total", "Erasure requests completed (receipt on privacy.receipts)"
)
ERASED_DROPPED = Counter(
    "touchstream_erased_in_flight_dropped_total",
    "Records of an erased customer that were in flight at the erasure, dropped",
    ["kind"],
)
# issue 28, erasure that stays done (README, "Privacy"; docs/operations.md)
ERASURE_DROPS = Counter(
    "touchstream_erasure_drops_total",
    "Records for an erased identifier not applied: before_erasure (event time before the "
    "erasure, whenever it arrives), in_flight (ingested before it), suppressed (after it, "
    "but no new sign-up or consent)",
    ["reason"],
)
ERASURES_PENDING = Gauge(
    "touchstream_erasures_pending",
    "Erasures applied to the tables whose Redis deletion is not confirmed yet (no receipt)",
)
ERASURE_PENDING_AGE = Gauge(
    "touchstream_erasure_pending_age_seconds",
    "Time since the oldest erasure still waiting for Redis was requested (0: none waiting)",
)
ERASURE_LATENCY = Histogram(
    "touchstream_erasure_latency_seconds",
    "From the erasure request reaching ingest to its receipt on privacy.receipts",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)
ACCESS_EXPORTS = Counter(
    "touchstream_access_exports_total", "Access requests answered on privacy.exports"
)
TRIGGERS_EMITTED = Counter(
    "touchstream_triggers_emitted_total", "Triggers delivered to their topic", ["type"]
)
TRIGGERS_SUPPRESSED = Counter(
    "touchstream_triggers_suppressed_total",
    "Triggers stopped by the guard chain (sent to triggers.audit; reason duplicate: counted only)",
    ["type", "reason"],
)

LOYALTY_OUTCOMES = Counter(
    "touchstream_loyalty_outcomes_total",
    "Ledger outcomes published on loyalty.outcomes (earned, reversed, redeemed, rejected, ...)",
    ["outcome"],
)
STATE_CAPPED = Counter(
    "touchstream_state_capped_total",
    "A per-customer state cap reached (README, State bounds): oldest history folded into the "
    "lifetime aggregates or ids forgotten (orders, returns, *_ids: also a state_capped outcome "
    "on loyalty.outcomes), or input not kept (cart_lines, open_carts, session_added, deferred)",
    ["capped"],
)
TIMERS_FIRED = Counter(
    "touchstream_timers_fired_total",
    "Customers whose event-time timers fired (cart reminders, session ends, expiry, deferred)",
)
IDLE_TICKS = Counter(
    "touchstream_idle_ticks_total",
    "Ticks sent to idle customer-stage partitions to move their event-time clock on",
)
SESSIONS_CLOSED = Counter(
    "touchstream_sessions_closed_total", "Sessions closed and summarised", ["channel"]
)
TRIGGERS_DEFERRED = Counter(
    "touchstream_triggers_deferred_total", "Triggers held back to the end of quiet hours", ["type"]
)
TIMERS_PENDING = Gauge(
    "touchstream_timers_pending",
    "Timer entries held in the local index: about one per customer with a timer pending "
    "(cart, session, ...), at its earliest due time",
)
CONSUMER_LAG = Gauge(
    "touchstream_consumer_lag",
    "Records behind the end of each partition this worker consumes (removed on revoke)",
    ["topic", "partition"],
)
PARTITION_CLOCK = Gauge(
    "touchstream_partition_clock_seconds",
    "Event-time clock of each customer-stage partition this worker owns (timers fire when it "
    "passes their due time; it stands still when neither events nor idle ticks arrive)",
    ["partition"],
)
EVENT_TIME_SKEW = Gauge(
    "touchstream_event_time_skew_seconds",
    "Largest amount by which an event's claimed time (occurred_at) was ahead of the time its "
    "record reached the broker, per customer-stage partition this worker owns, over the last "
    "one to two minutes (0 when none was ahead); the partition clock moves at most "
    "TOUCHSTREAM_MAX_CLOCK_SKEW_S past the broker time",
    ["partition"],
)
EVENT_TIME_CAPPED = Counter(
    "touchstream_event_time_capped_total",
    "Events dated more than TOUCHSTREAM_MAX_CLOCK_SKEW_S after their record reached the broker: "
    "the partition clock (for a privileged command, its own customer's timers) moved only that "
    "far (the event itself keeps its claimed time)",
)
REBALANCES = Counter("touchstream_rebalances_total", "Partition assignments this worker received")
STALE_FETCHES_DROPPED = Counter(
    "touchstream_stale_fetches_dropped_total",
    "Partitions' fetched records dropped because a rebalance came between fetch and handling",
)
RECOVERY_SECONDS = Histogram(
    "touchstream_recovery_seconds",
    "Seconds from a partition assignment to its tables being recovered (ready again)",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
EVENT_TIME_LAG = Histogram(
    "touchstream_event_time_lag_seconds",
    "Wall time from an event's occurred_at (event time) to its decision: late and backfilled events",
    buckets=(0.1, 0.5, 1, 5, 30, 60, 300, 3600, 21600, 86400, 604800, 2592000),
)
KAFKA_ACCESS_DENIED = Gauge(
    "touchstream_kafka_access_denied",
    "Permissions the broker denies this worker's principal (1 while denied): operation READ, "
    "WRITE or CREATE of a topic or group, or LOGIN of the broker (docs/security.md)",
    ["operation", "resource"],
)
KAFKA_AUTH_FAILURES = Counter(
    "touchstream_kafka_auth_failures_total",
    "Logins the broker refused to this worker's credentials (the access check's, every "
    "kafka_access_check_s)",
)
KAFKA_AUTHORIZATION_ERRORS = Counter(
    "touchstream_kafka_authorization_errors_total",
    "Authorization errors the worker's consumer met and backed off from instead of crashing",
    ["request"],
)


class Tally:
    """One batch's metric updates, applied to the registry once at its end.

    Each prometheus_client update takes a lock, and each ``labels`` call builds and looks up a
    key: done per record that was about 5% of a worker's CPU (py-spy, issue 10). A batch
    counts in plain dicts and hands each series its total once.
    """

    __slots__ = ("_counts", "_observed")

    def __init__(self) -> None:
        self._counts: defaultdict[tuple[Counter, tuple[str, ...]], int] = defaultdict(int)
        self._observed: defaultdict[Histogram, list[float]] = defaultdict(list)

    def inc(self, counter: Counter, *labels: str) -> None:
        self._counts[(counter, labels)] += 1

    def observe(self, histogram: Histogram, value: float) -> None:
        self._observed[histogram].append(value)

    def apply(self) -> None:
        for (counter, labels), count in self._counts.items():
            (counter.labels(*labels) if labels else counter).inc(count)
        for histogram, values in self._observed.items():
            _observe_all(histogram, values)
        self._counts.clear()
        self._observed.clear()


def _observe_all(histogram: Histogram, values: list[float]) -> None:
    """``histogram.observe`` of each value, as one increment per bucket (prometheus_client
    has no batch observe; its bucket and sum values are what ``observe`` itself updates)."""
    histogram._raise_if_not_observable()  # raises for a parent of labelled series
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(sum(values))


OUTPUT_RETRIES = Counter(
    "touchstream_output_retries_total",
    "Output batches the broker refused and the worker is sending again, by error",
    ["error"],
)
OUTPUT_REFUSED = Counter(
    "touchstream_output_refused_total",
    "Output records the broker refused for good (over its size limit...), dead-lettered instead",
    ["topic", "error"],
)
OUTPUT_BLOCKED = Gauge(
    "touchstream_output_blocked",
    "1 while output is refused and retried (the worker is not ready meanwhile)",
)
OUTPUT_SIZE_LIMIT = Gauge(
    "touchstream_output_size_limit_bytes",
    "Largest record batch the worker sends to a topic: the smallest of the producer's"
    " max_request_size, the broker's message.max.bytes and the topic's max.message.bytes",
    ["topic"],
)
QUARANTINED = Counter(
    "touchstream_quarantined_total",
    "Inbound records whose processing raised, parked on the quarantine topic with their error",
    ["stage", "reason"],
)
PARTITION_HALTED = Gauge(
    "touchstream_partition_halted",
    "1 while a partition is stopped on an internal record that failed (never parked)",
    ["topic", "partition"],
)
