"""What every owned topic must be, and which differences of an existing topic stop a worker
(docs/topics.md): the pure half of streams/topic_admin.py."""

from __future__ import annotations

from touchstream.config.settings import load_settings
from touchstream.streams import topics
from touchstream.streams.topic_specs import (
    Changelog,
    TopicSpec,
    compare,
    missing_problem,
    topic_specs,
)

DAY_MS = 86_400_000
APP = "shop1.touchstream"
CHANGELOGS = [
    Changelog(f"{APP}-customers-changelog"),
    Changelog(f"{APP}-activity-hourly-changelog", window_retention_ms=2 * DAY_MS),
]


def specs(**env: str) -> dict[str, TopicSpec]:
    settings = load_settings(
        {"TOUCHSTREAM_ENV": "development", "TOUCHSTREAM_TOPIC_PREFIX": "shop1.", **env}
    )
    found = topic_specs(settings, CHANGELOGS, f"{APP}-__assignor-__leader")
    return {s.name: s for s in found}


def test_every_topic_of_the_worker_is_declared_with_the_prefix() -> None:
    declared = specs()
    expected = {"shop1." + t for t in (*topics.INPUTS, topics.CUSTOMER_EVENTS, *topics.OUTPUTS)}
    expected |= {c.name for c in CHANGELOGS} | {f"{APP}-__assignor-__leader"}
    assert set(declared) == expected
    assert "shop1.triggers.abandoned_cart" in declared
    assert declared[f"{APP}-__assignor-__leader"].partitions == 1
    assert {s.partitions for n, s in declared.items() if "__leader" not in n} == {8}


def test_the_dlq_keeps_rejected_events_seven_days_and_outputs_a_week() -> None:
    declared = specs()
    assert declared["shop1.touchpoints.dlq"].config == {
        "cleanup.policy": "delete",
        "retention.ms": str(7 * DAY_MS),
    }
    for name in ("shop1.profiles.updates", "shop1.triggers.vip_status"):
        assert declared[name].config["retention.ms"] == str(7 * DAY_MS)
    short = specs(TOUCHSTREAM_DLQ_RETENTION_HOURS="24", TOUCHSTREAM_INPUT_RETENTION_HOURS="72")
    assert short["shop1.touchpoints.dlq"].config["retention.ms"] == str(DAY_MS)
    assert short["shop1.touchstream.customer-events"].config["retention.ms"] == str(3 * DAY_MS)


def test_changelogs_compact_within_the_configured_bound_and_windows_also_expire() -> None:
    declared = specs(TOUCHSTREAM_CHANGELOG_COMPACTION_LAG_HOURS="12")
    customers = declared[f"{APP}-customers-changelog"].config
    assert customers["cleanup.policy"] == "compact"
    assert customers["max.compaction.lag.ms"] == str(DAY_MS // 2)
    # Kafka compacts closed segments only: one must close well within the bound
    assert int(customers["segment.ms"]) < int(customers["max.compaction.lag.ms"])
    assert "retention.ms" not in customers
    hourly = declared[f"{APP}-activity-hourly-changelog"].config
    assert hourly["cleanup.policy"] == "compact,delete"
    assert hourly["retention.ms"] == str(2 * DAY_MS)
    assert hourly["max.compaction.lag.ms"] == str(DAY_MS // 2)


def changelog() -> TopicSpec:
    return specs()[f"{APP}-customers-changelog"]


def test_a_changelog_as_declared_has_no_difference() -> None:
    spec = changelog()
    assert compare(spec, 8, 1, dict(spec.config)) == []
    # a broker that reports fewer settings (the embedded Tansu) is compared on what it reports
    assert compare(spec, 8, 1, {}) == []


def test_a_delete_only_changelog_is_fatal_and_names_both_policies() -> None:
    spec = changelog()
    (difference,) = compare(spec, 8, 1, {**spec.config, "cleanup.policy": "delete"})
    assert difference.fatal
    assert difference.line().startswith(
        f"topic {APP}-customers-changelog: cleanup.policy is 'delete', must be 'compact'"
    )


def test_compaction_later_than_promised_is_fatal_sooner_is_fine() -> None:
    spec = changelog()
    never = {**spec.config, "max.compaction.lag.ms": "9223372036854775807"}
    (difference,) = compare(spec, 8, 1, never)
    assert difference.fatal and "TOUCHSTREAM_CHANGELOG_COMPACTION_LAG_HOURS" in difference.line()
    assert compare(spec, 8, 1, {**spec.config, "max.compaction.lag.ms": "3600000"}) == []


def test_co_partitioned_topics_must_have_the_deployments_partitions_outputs_need_not() -> None:
    declared = specs()
    (events,) = compare(declared["shop1.touchstream.customer-events"], 4, 1, {})
    assert events.fatal
    assert events.line().startswith(
        "topic shop1.touchstream.customer-events: the partition count is 4, must be 8"
        " (TOUCHSTREAM_PARTITIONS)"
    )
    (updates,) = compare(declared["shop1.profiles.updates"], 4, 1, {})
    assert not updates.fatal
    assert compare(declared["shop1.touchpoints"], 4, 1, {})[0].fatal is False


def test_lesser_differences_are_warnings_listed_after_the_fatal_ones() -> None:
    spec = specs(TOUCHSTREAM_REPLICATION_FACTOR="3")[f"{APP}-activity-hourly-changelog"]
    config = {**spec.config, "retention.ms": "1000", "cleanup.policy": "compact"}
    found = compare(spec, 6, 2, config)
    assert [d.fatal for d in found] == [True, False, False, False]
    assert {d.setting for d in found[1:]} == {
        "the replication factor",
        "cleanup.policy",
        "retention.ms",
    }
    # the order of a policy list is not a difference
    assert compare(spec, 8, 3, {**spec.config, "cleanup.policy": "delete,compact"}) == []


def test_a_topic_the_worker_may_not_create_is_named_with_its_settings() -> None:
    spec = specs()["shop1.touchpoints.dlq"]
    line = missing_problem(spec, ["shop1.sessions"])
    assert "\n" not in line
    assert "partitions=8 replication.factor=1" in line
    assert f"retention.ms={7 * DAY_MS}" in line and "cleanup.policy=delete" in line
    assert "also missing: shop1.sessions" in line
