"""The worker creates every topic it owns with explicit settings, read back through the admin
API, and refuses to start on a topic that would make it wrong (docs/topics.md)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.commands import run_touchstream
from touchstream.config.rules import TRIGGER_TYPES
from touchstream.runtime.apache_kafka import KafkaBroker, Security, client_security, start_kafka
from touchstream.runtime.processes import free_port
from touchstream.runtime.stack import Stack, worker_env

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
OUTPUTS = [
    "profiles.updates",
    "profiles.merges",
    "identity.refusals",
    "sessions",
    "loyalty.outcomes",
    "triggers.audit",
    "privacy.receipts",
    "privacy.exports",
    *(f"triggers.{kind}" for kind in TRIGGER_TYPES),
]
# Faust names changelogs {app_id}-{table}-changelog; windowed ones keep their window's expiry
WINDOWED = {
    "activity-hourly": 48 * HOUR_MS,
    "activity-daily": 35 * DAY_MS,
    "loyalty-daily": 400 * DAY_MS,
}
COMPACTED = ("customers", "loyalty-monthly")


def admin_call(bootstrap: str, call: Any) -> Any:
    async def run() -> Any:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return await call(admin)
        finally:
            await admin.close()

    return asyncio.run(run())


def described(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """(partitions, settings) of each topic, as the broker reports them."""

    async def call(admin: AIOKafkaAdminClient) -> Any:
        shapes = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        out = {}
        for response in await admin.describe_configs(resources):
            for code, _msg, _type, name, entries in response.resources:
                assert code == 0, name
                out[name] = (shapes[name], {e[0]: e[1] for e in entries})
        return out

    result: dict[str, tuple[int, dict[str, str]]] = admin_call(bootstrap, call)
    return result


def create(bootstrap: str, name: str, partitions: int, config: dict[str, str]) -> None:
    async def call(admin: AIOKafkaAdminClient) -> Any:
        response = await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
        assert response.topic_errors[0][1] == 0, response

    admin_call(bootstrap, call)


def test_the_worker_creates_every_topic_it_owns_with_explicit_settings(stack: Stack) -> None:
    worker = stack.start_worker(dlq_retention_hours="48")
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    app = stack.settings["app_id"]
    changelogs = [f"{app}-{t}-changelog" for t in (*COMPACTED, *WINDOWED)]
    leader = f"{app}-__assignor-__leader"
    inputs = [prefix + "touchpoints", prefix + "touchpoints.privileged"]
    inputs.append(prefix + "touchstream.customer-events")
    parked = [prefix + "touchpoints.dlq", prefix + "touchstream.quarantine"]
    owned = [*inputs, *parked, *(prefix + o for o in OUTPUTS), *changelogs]

    # nothing of this deployment was left to the broker's defaults or its auto-creation
    cluster = admin_call(stack.broker.bootstrap, lambda admin: admin.list_topics())
    assert {t for t in cluster if t.startswith(prefix)} == {*owned, leader}

    topics = described(stack.broker.bootstrap, [*owned, leader])
    for name in owned:
        partitions, _ = topics[name]
        assert partitions == 4, name  # TOUCHSTREAM_PARTITIONS of the stack
    assert topics[leader][0] == 1

    for name in parked:  # original bytes: the quarantine keeps them as long as the DLQ
        config = topics[name][1]
        assert (config["cleanup.policy"], config["retention.ms"]) == ("delete", str(2 * DAY_MS))
    for name in [*inputs, *(prefix + o for o in OUTPUTS)]:
        config = topics[name][1]
        assert (config["cleanup.policy"], config["retention.ms"]) == ("delete", str(7 * DAY_MS))

    for table in (*COMPACTED, *WINDOWED):
        config = topics[f"{app}-{table}-changelog"][1]
        # an erased customer's overwritten state is compacted away within a day: segments
        # roll in half of it, and the cleaner must compact them once the day is past
        assert config["max.compaction.lag.ms"] == str(DAY_MS), table
        assert int(config["segment.ms"]) <= DAY_MS // 2, table
        assert config["min.compaction.lag.ms"] == "0", table
        assert config["delete.retention.ms"] == str(DAY_MS), table
        if table in WINDOWED:
            assert set(config["cleanup.policy"].split(",")) == {"compact", "delete"}, table
            assert config["retention.ms"] == str(WINDOWED[table]), table
        else:
            assert config["cleanup.policy"] == "compact", table


def exited(stack: Stack, worker: Any) -> tuple[int, list[str]]:
    try:
        code = worker.child.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker kept running:\n{worker.child.tail()}")
    worker.stop()
    return code, worker.child.log_path.read_text().splitlines()


def test_a_changelog_that_is_not_compacted_stops_the_worker_naming_it(stack: Stack) -> None:
    changelog = f"{stack.settings['app_id']}-customers-changelog"
    create(stack.broker.bootstrap, changelog, 4, {"cleanup.policy": "delete"})

    worker = stack.start_worker()
    code, lines = exited(stack, worker)

    assert code == 2
    errors = [line for line in lines if "configuration error" in line]
    assert len(errors) == 1, lines[-20:]
    assert f"topic {changelog}: cleanup.policy is 'delete', must be 'compact'" in errors[0]
    assert not any("Traceback" in line for line in lines)
    # the topic is the operator's: the worker did not change it
    assert described(stack.broker.bootstrap, [changelog])[changelog][1]["cleanup.policy"] == (
        "delete"
    )


def test_a_changelog_with_other_partitions_than_the_deployment_stops_the_worker(
    stack: Stack,
) -> None:
    events = stack.settings["topic_prefix"] + "touchstream.customer-events"
    create(stack.broker.bootstrap, events, 2, {"cleanup.policy": "delete"})

    code, lines = exited(stack, stack.start_worker())

    assert code == 2
    (error,) = [line for line in lines if "configuration error" in line]
    assert f"topic {events}: the partition count is 2, must be 4 (TOUCHSTREAM_PARTITIONS)" in error


def test_another_retention_is_the_operators_choice_left_alone_with_a_warning(
    stack: Stack,
) -> None:
    updates = stack.settings["topic_prefix"] + "profiles.updates"
    create(stack.broker.bootstrap, updates, 4, {"retention.ms": str(HOUR_MS)})

    worker = stack.start_worker()
    worker.wait_ready()

    assert described(stack.broker.bootstrap, [updates])[updates][1]["retention.ms"] == str(HOUR_MS)
    log = worker.child.log_path.read_text()
    assert f"topic {updates}: retention.ms is {HOUR_MS}, must be {7 * DAY_MS}; left as it is" in log


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """Apache Kafka with an authorizer (whatever broker the rest of the suite runs on): SCRAM
    user ``touchstream`` may read, write and describe its topics and join its group, but not
    create topics."""
    security = Security(users=(("SCRAM-SHA-512", "touchstream", "pw-touchstream"),), acls=True)
    broker = start_kafka(tmp_path_factory.mktemp("acl-kafka"), security=security)
    user = ("--allow-principal", "User:touchstream", "--resource-pattern-type", "prefixed")
    broker.acl("--add", *user, "--group", "denied.", "--operation", "Read")
    for operation in ("Read", "Write", "Describe", "DescribeConfigs"):
        broker.acl("--add", *user, "--topic", "denied.", "--operation", operation)
    try:
        yield broker
    finally:
        broker.stop()


def test_a_worker_that_may_not_create_topics_names_a_missing_one_with_its_settings(
    acl_broker: KafkaBroker, tmp_path: Path
) -> None:
    env = worker_env(
        "kafka://" + acl_broker.listener("SASL_PLAINTEXT"),
        f"redis://127.0.0.1:{free_port()}/0",
        free_port(),
        str(tmp_path / "data"),
        embedded_broker=False,
        topic_prefix="denied.",
        app_id="denied.touchstream",
        partitions="4",
        **client_security(
            "SASL_PLAINTEXT",
            mechanism="SCRAM-SHA-512",
            username="touchstream",
            password="pw-touchstream",
        ),
    )
    result = run_touchstream("worker", env=env)

    assert result.returncode == 2, result.stderr[-2000:]
    (error,) = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert "does not exist and this worker may not create topics: create it with" in error
    assert "partitions=4 replication.factor=1" in error and "cleanup.policy=" in error
    assert "also missing: " in error and "denied.touchpoints.dlq" in error
    assert "Traceback" not in result.stderr
    cluster = admin_call(acl_broker.bootstrap, lambda admin: admin.list_topics())
    assert not [t for t in cluster if t.startswith("denied.")]
