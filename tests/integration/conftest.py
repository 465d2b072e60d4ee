"""Fixtures of the secure-transport tests: a throwaway PKI made with the openssl CLI and one
Apache Kafka broker with TLS, SASL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN), client
certificates and StandardAuthorizer ACLs, shared by every test that asks for it (a JVM:
about 4 s to start and 280 MB).

The ACLs the tests grant are the ones docs/security.md lists, through ``grant_worker`` and
friends, so the documented commands are what the tests prove sufficient.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import start_test_kafka
from touchstream.domain.privileged import requires_privilege
from touchstream.runtime.apache_kafka import HOST, KafkaBroker, Security, Tls, client_security
from touchstream.runtime.embedded import EmbeddedRedis
from touchstream.runtime.kafka_io import produce_inputs
from touchstream.runtime.stack import Stack, WorkerProcess
from touchstream.streams.topics import privileged_input

# SCRAM users exist from format time; PLAIN users live in the broker's JAAS configuration
USERS = (
    ("SCRAM-SHA-512", "touchstream", "scram-512-secret"),
    ("SCRAM-SHA-256", "touchstream-256", "scram-256-secret"),
    ("PLAIN", "touchstream-plain", "plain-secret"),
    ("SCRAM-SHA-512", "rotated", "before-rotation"),
    ("SCRAM-SHA-512", "producer", "producer-secret"),
    ("SCRAM-SHA-512", "replayer", "replayer-secret"),
    ("SCRAM-SHA-512", "loyalty-service", "loyalty-secret"),
)
PASSWORDS = {user: password for _, user, password in USERS}
MECHANISMS = {user: mechanism for mechanism, user, _ in USERS}
# the broker ends a SASL session after this long unless the client re-authenticates
# (KIP-368): aiokafka does not, so it logs in again and a rotated password takes effect
REAUTH_MS = 8000


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path  # CN=touchstream, the principal User:touchstream
    client_key: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate with
    CN=touchstream, made with the openssl CLI (its keys are PKCS#8, as Kafka's PEM
    keystores require)."""
    if not shutil.which("openssl"):
        pytest.fail("no openssl CLI to make test certificates (Debian's openssl package)")
    d = tmp_path_factory.mktemp("pki")
    (d / "san.ext").write_text(f"subjectAltName=IP:{HOST},DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    new_key = ("-newkey", "rsa:2048", "-nodes", "-days", "1")
    openssl(
        "req", "-x509", *new_key, "-subj", "/CN=ts-test-ca", "-keyout", "ca.key", "-out", "ca.pem"
    )
    for name, subject, ext in (
        ("server", HOST, ("-extfile", "san.ext")),
        ("client", "touchstream", ()),
    ):
        openssl(
            "req",
            *new_key,
            "-subj",
            f"/CN={subject}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        openssl(
            *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
            *("-CAcreateserial", "-days", "1", *ext, "-out", f"{name}.pem"),
        )
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


@pytest.fixture(scope="session")
def secure_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    security = Security(tls=Tls(pki.ca, pki.cert, pki.key), users=USERS, acls=True)
    broker = start_test_kafka(
        tmp_path_factory.mktemp("secure-kafka"),
        security=security,
        properties={"connections.max.reauth.ms": str(REAUTH_MS)},
    )
    try:
        yield broker
    finally:
        broker.stop()


def sasl_settings(broker: KafkaBroker, pki: Pki, user: str, **extra: str) -> dict[str, str]:
    """Worker settings (lower-case TOUCHSTREAM_* names) logging in as ``user`` over SASL_SSL."""
    login = client_security(
        "SASL_SSL",
        mechanism=MECHANISMS[user],
        username=user,
        password=PASSWORDS[user],
        ca=pki.ca,
    )
    return {"broker": f"kafka://{broker.listener('SASL_SSL')}", **login, **extra}


def certificate_settings(broker: KafkaBroker, pki: Pki) -> dict[str, str]:
    login = client_security("SSL", ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    return {"broker": f"kafka://{broker.listener('SSL')}", **login}


# the ACLs of docs/security.md, run against the broker's plaintext listener (a super user)
def grant_worker(broker: KafkaBroker, principal: str, prefix: str, app_id: str) -> None:
    allow = ("--add", "--allow-principal", principal)
    broker.acl(
        *allow,
        *("--operation", "Read", "--operation", "Write", "--operation", "Create"),
        *("--topic", prefix, "--topic", f"{app_id}-", "--resource-pattern-type", "prefixed"),
    )
    broker.acl(*allow, "--operation", "Read", "--group", app_id)


def grant_producer(broker: KafkaBroker, principal: str, topic: str) -> None:
    broker.acl("--add", "--allow-principal", principal, "--operation", "Write", "--topic", topic)


def feed_in_order(
    worker: WorkerProcess, bootstrap: str, topic: str, records: list[tuple[bytes | None, Any]]
) -> None:
    """Produce ``records`` to the worker's inputs (``topic``, its ``touchpoints``; privileged
    commands to ``touchpoints.privileged``: ``kafka_io.produce_inputs``), each run of records
    bound for one input applied before the next run is produced. The two inputs are read
    side by side: without waiting, a consent grant on the privileged input may be applied
    after the ordinary events produced behind it."""
    start = 0
    while start < len(records):
        first = _input_of(topic, records[start][1])
        end = start
        while end < len(records) and _input_of(topic, records[end][1]) == first:
            end += 1
        before = worker.metrics().get("touchstream_events_applied_total", 0.0)
        produce_inputs(bootstrap, topic, records[start:end])
        deadline = time.monotonic() + 60
        while worker.metrics().get("touchstream_events_applied_total", 0.0) < before + end - start:
            assert time.monotonic() < deadline, f"records {start}..{end} never applied"
            time.sleep(0.1)
        start = end


def _input_of(topic: str, value: Any) -> str:
    decoded = orjson.loads(value) if isinstance(value, bytes) else value
    return privileged_input(topic) if requires_privilege(decoded) else topic


def grant_privileged_producer(broker: KafkaBroker, principal: str, prefix: str) -> None:
    """Write on the privileged input, for the data-request and loyalty services only."""
    broker.acl(
        *("--add", "--allow-principal", principal, "--operation", "Write"),
        *("--topic", f"{prefix}touchpoints.privileged"),
    )


def grant_replay(broker: KafkaBroker, principal: str, prefix: str, app_id: str) -> None:
    allow = ("--add", "--allow-principal", principal)
    broker.acl(*allow, "--operation", "Read", "--topic", f"{prefix}touchpoints.dlq")
    broker.acl(*allow, "--operation", "Write", "--topic", f"{prefix}touchpoints")
    broker.acl(
        *allow,
        *("--operation", "Read", "--group", f"{app_id}-dlq-replay-"),
        *("--resource-pattern-type", "prefixed"),
    )


@pytest.fixture
def secure_stack(
    secure_kafka: KafkaBroker, redis_server: EmbeddedRedis, tmp_path: Path
) -> Iterator[Stack]:
    """A stack on the secure broker: its own topic prefix, group and Redis DB (15, apart from
    the ``stack`` fixture's cycle). Workers log in with the settings each test passes."""
    prefix = f"s{uuid.uuid4().hex[:8]}."
    s = Stack(
        workdir=tmp_path,
        broker=secure_kafka,
        redis=redis_server,
        redis_db=0,
        owns_servers=False,
        settings={
            "topic_prefix": prefix,
            "app_id": f"{prefix}touchstream",
            "partitions": "2",
            "kafka_access_check_s": "1",
        },
    )
    try:
        yield s
    finally:
        s.stop()
