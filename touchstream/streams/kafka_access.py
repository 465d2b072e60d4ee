"""May this login still do what a worker needs? Asked of the broker with the worker's own
credentials: at start-up (``runtime.worker``, one line and exit 2 when not) and every
``kafka_access_check_s`` while running (``streams.access_watch``: not ready, metric).

A fresh connection each time, so a rotated password is noticed even while the worker's own
connections stay authenticated. Permissions come from KIP-430's authorized operations:
Metadata v8 per topic, DescribeGroups v3 for the consumer group. aiokafka 0.14 stops at
Metadata v5, so the v8 request and response are declared in ``streams.metadata_request``. A
topic that does not exist yet needs CREATE, asked with CreateTopics ``validate_only`` (nothing
is created).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.admin import (
    CreateTopicsRequest,
    DescribeGroupsRequest_v3,
    DescribeGroupsResponse_v3,
)
from aiokafka.protocol.api import Request, RequestStruct
from aiokafka.protocol.coordination import FindCoordinatorRequest

from touchstream.config.settings import Settings, key
from touchstream.errors import ConfigError, TouchstreamError
from touchstream.streams.kafka_client import kafka_ssl_context, security_kwargs
from touchstream.streams.metadata_request import MetadataRequest, MetadataRequest_v8

TIMEOUT_MS = 10_000
# org.apache.kafka.common.acl.AclOperation codes: bit ``code`` of authorized_operations
OPERATIONS = {"READ": 3, "WRITE": 4, "CREATE": 5, "DESCRIBE": 8}
NO_ERROR, UNKNOWN_TOPIC, TOPIC_DENIED, GROUP_DENIED = 0, 3, 29, 30


class LoginRefused(TouchstreamError):
    """The broker refused the worker's login; the message names the settings, not the secret."""


class BrokerUnreachable(TouchstreamError):
    """No bootstrap broker answered: nothing could be checked."""


@dataclass(frozen=True)
class Need:
    operation: str  # a key of OPERATIONS
    resource: str  # "topic" or "group"
    name: str


@dataclass(frozen=True)
class Denied:
    principal: str
    need: Need

    def line(self, bootstrap: str) -> str:
        """One line: who may not do what, and the ``kafka-acls`` command that allows it."""
        n = self.need
        return (
            f"{self.principal} may not {n.operation} {n.resource} {n.name}:"
            f" kafka-acls --bootstrap-server {bootstrap} --add --allow-principal {self.principal}"
            f" --operation {n.operation.capitalize()} --{n.resource} {n.name}"
        )


def worker_needs(
    group: str, reads: Iterable[str], writes: Iterable[str], created: Iterable[str]
) -> list[Need]:
    """READ on the group, READ on what it consumes, WRITE on what it produces; CREATE is only
    asked of ``created`` topics that do not exist yet."""
    needs = [Need("READ", "group", group)]
    needs += [Need("READ", "topic", t) for t in dict.fromkeys(reads)]
    needs += [Need("WRITE", "topic", t) for t in dict.fromkeys(writes)]
    needs += [Need("CREATE", "topic", t) for t in dict.fromkeys(created)]
    return needs


def principal(settings: Settings) -> str:
    """The principal the broker sees: the SASL user, or the client certificate's CN (what
    ``ssl.principal.mapping.rules`` maps it to in docs/security.md)."""
    if settings.kafka_security_protocol.startswith("SASL"):
        return f"User:{settings.kafka_sasl_username}"
    if settings.kafka_ssl_certfile:
        try:  # the stdlib's only certificate parser; no extra dependency for one field
            decoded = ssl._ssl._test_decode_cert(settings.kafka_ssl_certfile)  # type: ignore[attr-defined]
            for rdn in decoded.get("subject", ()):
                for name, value in rdn:
                    if name == "commonName":
                        return f"User:{value}"
        except (OSError, ssl.SSLError):
            pass
        return "User:<CN of TOUCHSTREAM_KAFKA_SSL_CERTFILE>"
    return "User:ANONYMOUS"


async def check_access(settings: Settings, needs: Sequence[Need]) -> list[Denied]:
    """What of ``needs`` the broker denies this login (empty: everything allowed).

    Raises LoginRefused, BrokerUnreachable, or ConfigError for a TLS setting the broker
    refuses."""
    conn = await _connect(settings)
    opened = [conn]
    try:
        who = principal(settings)
        denied: list[Denied] = []
        topics = [n for n in needs if n.resource == "topic"]
        if topics:
            denied += await _topic_denials(conn, settings, who, topics, opened)
        for need in (n for n in needs if n.resource == "group"):
            if not await _group_allows(conn, settings, need, opened):
                denied.append(Denied(who, need))
        return denied
    finally:
        for c in opened:
            c.close()


async def _connect(settings: Settings, hosts: Sequence[str] | None = None) -> AIOKafkaConnection:
    sasl = settings.kafka_security_protocol.startswith("SASL")
    kwargs = security_kwargs(settings)
    kwargs["ssl_context"] = kafka_ssl_context(settings)
    for host_port in hosts or settings.bootstrap_servers().split(","):
        host, _, port = host_port.rpartition(":")
        try:
            return await create_conn(host, int(port), request_timeout_ms=TIMEOUT_MS, **kwargs)
        except ssl.SSLError as exc:
            raise ConfigError(
                key("kafka_ssl_cafile"), f"TLS with the broker at {host_port} failed: {exc}"
            ) from None
        except (TimeoutError, OSError, KafkaConnectionError):
            continue
        except Exception as exc:
            if not sasl:
                raise
            # SCRAM and PLAIN failures arrive as SaslAuthenticationFailed; a broken SCRAM
            # exchange as whatever the SASL code raised (KeyError('v') against some brokers)
            raise LoginRefused(
                f"{key('kafka_sasl_password')}: the broker at {host_port} refused"
                f" {settings.kafka_sasl_mechanism} login of"
                f" {key('kafka_sasl_username')}={settings.kafka_sasl_username!r}"
                f" ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
    raise BrokerUnreachable(f"no broker of {settings.bootstrap_servers()} answered")


class TopicOperationsRequest(MetadataRequest[MetadataRequest_v8]):
    """Metadata of named topics with this login's authorized operations on each."""

    TOPIC_AUTHORIZED_OPERATIONS = True


class _DescribeGroupsRequest_v3(RequestStruct):
    # aiokafka 0.14's DescribeGroupsRequest_v3 reads its answer with the v2 schema, which
    # drops authorized_operations: the same request, read with the v3 response
    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = DescribeGroupsResponse_v3
    SCHEMA = DescribeGroupsRequest_v3.SCHEMA


class GroupOperationsRequest(Request[_DescribeGroupsRequest_v3]):
    API_KEY = 15

    def __init__(self, group: str) -> None:
        self._group = group

    def build(
        self, request_struct_class: type[_DescribeGroupsRequest_v3]
    ) -> _DescribeGroupsRequest_v3:
        return request_struct_class([self._group], True)


def allows(operations: int, operation: str) -> bool:
    return operations >= 0 and bool(operations & (1 << OPERATIONS[operation]))


async def _topic_denials(
    conn: AIOKafkaConnection,
    settings: Settings,
    who: str,
    needs: Sequence[Need],
    opened: list[AIOKafkaConnection],
) -> list[Denied]:
    names = list(dict.fromkeys(n.name for n in needs))
    response: Any = await conn.send(TopicOperationsRequest(names))
    found = {t[1]: (t[0], t[4]) for t in response.topics}
    denied = []
    missing = []
    for need in needs:
        error, operations = found.get(need.name, (UNKNOWN_TOPIC, -1))
        if need.operation == "CREATE":
            if error == UNKNOWN_TOPIC:
                missing.append(need)
        elif error == TOPIC_DENIED or (
            error == NO_ERROR and not allows(operations, need.operation)
        ):
            denied.append(Denied(who, need))
    if missing:
        # CreateTopics goes to the controller (KRaft brokers forward it)
        brokers = {b[0]: f"{b[1]}:{b[2]}" for b in response.brokers}
        controller = brokers.get(response.controller_id)
        target = conn
        if controller and controller != f"{conn.host}:{conn.port}":
            target = await _connect(settings, [controller])
            opened.append(target)
        request = CreateTopicsRequest(
            [(n.name, settings.partitions, settings.replication_factor, [], []) for n in missing],
            TIMEOUT_MS,
            True,
        )
        created: Any = await target.send(request)
        refused = {t[0] for t in created.topic_errors if t[1] == TOPIC_DENIED}
        denied += [Denied(who, n) for n in missing if n.name in refused]
    return denied


async def _group_allows(
    conn: AIOKafkaConnection, settings: Settings, need: Need, opened: list[AIOKafkaConnection]
) -> bool:
    found: Any = await conn.send(FindCoordinatorRequest(need.name, 0))
    if found.error_code == GROUP_DENIED:
        return False
    target = conn
    coordinator = f"{found.host}:{found.port}"
    if found.error_code == NO_ERROR and coordinator != f"{conn.host}:{conn.port}":
        target = await _connect(settings, [coordinator])
        opened.append(target)
    described: Any = await target.send(GroupOperationsRequest(need.name))
    (group,) = described.groups
    if group[0] == GROUP_DENIED:
        return False
    return group[0] != NO_ERROR or allows(group[-1], need.operation)
