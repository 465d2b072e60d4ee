"""Creates the topics a worker owns, with their settings, before Faust starts; checks those
that exist. ``streams.topic_specs`` says what each must be and which differences stop the
worker.

Faust would otherwise create its topics with the broker's defaults (a changelog compacted
whenever the cleaner gets to it, outputs kept for the broker's retention), and output topics
it never declares would be auto-created by the broker on the first record. Faust's own
declaration at start-up then finds every topic there and leaves it alone.

Several workers starting at once race to create the same topics: the loser gets
TopicAlreadyExists and checks the winner's topic like any other. A worker whose principal
may not create topics only checks: all present is fine, a missing one stops start-up naming
it with the settings to create it with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    LeaderNotAvailableError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    for_code,
)

from touchstream.config.settings import Settings
from touchstream.errors import TopicError
from touchstream.streams.kafka_client import security_kwargs
from touchstream.streams.size_limits import Limits
from touchstream.streams.topic_specs import Difference, TopicSpec, compare, missing_problem

log = logging.getLogger(__name__)
LISTED_TIMEOUT_S = 30.0

DENIED = (TopicAuthorizationFailedError.errno, ClusterAuthorizationFailedError.errno)
# a topic another worker has just created may take a moment to reach this broker's metadata
NOT_YET = (UnknownTopicOrPartitionError.errno, LeaderNotAvailableError.errno)
METADATA_WAIT_S = 15.0
CONNECT_BACKOFF_MAX_S = 5.0
MAX_MESSAGE_BYTES = "max.message.bytes"  # a topic's limit
MESSAGE_MAX_BYTES = "message.max.bytes"  # the broker's


def prepare_topics(settings: Settings, specs: Sequence[TopicSpec]) -> list[Difference]:
    """Create what is missing and check the rest; raises TopicError on a fatal difference.
    Returns the differences left alone (logged as warnings)."""
    loop = asyncio.new_event_loop()  # not set as current: Faust makes its own loop afterwards
    try:
        return loop.run_until_complete(ensure_topics(settings, specs))
    finally:
        loop.close()


async def ensure_topics(settings: Settings, specs: Sequence[TopicSpec]) -> list[Difference]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers(),
        client_id=f"{settings.app_id}-topics",
        **security_kwargs(settings),
    )
    await _start(admin, settings)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = await _create(admin, missing) if missing else set()
        await _listed(admin, {s.name for s in missing})
        checked = [s for s in specs if s.name not in created]
        differences = await _check(admin, checked)
    finally:
        await admin.close()
    if created:
        log.info("created %d topics: %s", len(created), ", ".join(sorted(created)))
    fatal = [d for d in differences if d.fatal]
    if fatal:
        raise TopicError(fatal[0].topic, fatal[0].problem())
    for difference in differences:
        log.warning("%s; left as it is", difference.line())
    return differences


async def _listed(admin: AIOKafkaAdminClient, names: set[str]) -> None:
    """Waits until the broker's metadata lists ``names``. A KRaft broker answers CreateTopics
    once the controller committed them, and may list them a moment later: a consumer that
    joins its group in between gets no partition of such a topic ("Ignoring missing topic")
    until its next metadata refresh, five minutes later."""
    deadline = time.monotonic() + LISTED_TIMEOUT_S
    while names - set(await admin.list_topics()):
        if time.monotonic() > deadline:
            log.warning("topics created but not yet listed: %s", sorted(names))
            return
        await asyncio.sleep(0.1)


async def _start(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    """Waits for the broker as Faust would: it may come up after the worker."""
    backoff = 0.2
    while True:
        try:
            await admin.start()
            return
        except KafkaConnectionError as exc:
            log.warning("broker %s not reachable (%s); retrying", settings.broker, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, CONNECT_BACKOFF_MAX_S)


async def _create(admin: AIOKafkaAdminClient, missing: Sequence[TopicSpec]) -> set[str]:
    """Creates ``missing``; the names this call created (not those another worker did)."""
    new = [
        NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config)) for s in missing
    ]
    response = await admin.create_topics(new)
    by_name = {s.name: s for s in missing}
    created: set[str] = set()
    denied: list[TopicSpec] = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == 0:
            created.add(name)
        elif code in DENIED:
            denied.append(by_name[name])
        elif code != TopicAlreadyExistsError.errno:
            raise TopicError(
                name,
                f"the broker refused to create it ({for_code(code).__name__}: {message});"
                f" it needs {by_name[name].creation()}",
            )
    if denied:
        first, *rest = denied  # in declaration order: touchpoints first
        raise TopicError(first.name, missing_problem(first, [s.name for s in rest]))
    return created


async def _check(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> list[Difference]:
    if not specs:
        return []
    shapes = await _shapes(admin, [s.name for s in specs])
    configs = await _configs(admin, [s.name for s in specs])
    differences: list[Difference] = []
    for spec in specs:
        shape = shapes.get(spec.name)
        if shape is None:
            continue  # _shapes said why
        differences += compare(spec, shape[0], shape[1], configs.get(spec.name, {}))
    return sorted(differences, key=lambda d: not d.fatal)


async def _shapes(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, tuple[int, int]]:
    """(partitions, fewest replicas of a partition) of each topic."""
    shapes: dict[str, tuple[int, int]] = {}
    pending = list(names)
    deadline = time.monotonic() + METADATA_WAIT_S
    while pending:
        retry = []
        for topic in await admin.describe_topics(pending):
            name, code, partitions = topic["topic"], topic["error_code"], topic["partitions"]
            if code == 0 and partitions:
                replicas = min(len(p["replicas"]) for p in partitions)
                shapes[name] = (len(partitions), replicas)
            elif code in NOT_YET or (code == 0 and not partitions):
                retry.append(name)
            else:
                log.warning("topic %s not checked: %s", name, for_code(code).__name__)
        if retry and time.monotonic() > deadline:
            log.warning("topics not checked, no metadata yet: %s", ", ".join(retry))
            break
        pending = retry
        if pending:
            await asyncio.sleep(0.2)
    return shapes


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """What the broker reports of each topic's settings; none where it may not say (a
    principal without DescribeConfigs, a broker without the request): then only the
    partitions are checked."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    try:
        responses: list[Any] = await admin.describe_configs(resources)
    except KafkaError as exc:
        log.warning("topic settings not checked: the broker did not describe them (%r)", exc)
        return {}
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for code, message, _type, name, entries in response.resources:
            if code != 0:
                log.warning(
                    "topic %s: settings not checked (%s: %s)",
                    name,
                    for_code(code).__name__,
                    message,
                )
                continue
            configs[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    return configs


def read_size_limits_now(settings: Settings, names: Sequence[str]) -> Limits:
    """``read_size_limits`` before Faust starts (its own loop, as ``prepare_topics``)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(read_size_limits(settings, names))
    finally:
        loop.close()


async def read_size_limits(settings: Settings, names: Sequence[str]) -> Limits:
    """The broker's ``message.max.bytes`` (the smallest of the brokers') and each topic's
    ``max.message.bytes``, by DescribeConfigs; what the broker will not say is left out."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers(),
        client_id=f"{settings.app_id}-limits",
        **security_kwargs(settings),
    )
    await _start(admin, settings)
    try:
        limits = Limits()
        configs = await _configs(admin, list(names))
        for name, config in configs.items():
            if MAX_MESSAGE_BYTES in config:
                limits.topics[name] = int(config[MAX_MESSAGE_BYTES])
        brokers = [
            ConfigResource(ConfigResourceType.BROKER, str(b.nodeId), {MESSAGE_MAX_BYTES: None})
            for b in admin._client.cluster.brokers()
        ]
        try:
            responses: list[Any] = await admin.describe_configs(brokers) if brokers else []
        except KafkaError as exc:
            log.warning("broker message.max.bytes not read (%r)", exc)
            responses = []
        values = [
            int(entry[1])
            for response in responses
            for code, _msg, _type, _name, entries in response.resources
            if code == 0
            for entry in entries
            if entry[0] == MESSAGE_MAX_BYTES and entry[1] is not None
        ]
        limits.broker = min(values) if values else None
        return limits
    finally:
        await admin.close()
