"""Secure Kafka for real (Apache Kafka, tests/integration/conftest.py): workers, the simulator
and ``dlq replay`` over SASL_SSL and client certificates with the ACLs of docs/security.md;
a refused login or ACL stops a starting worker in one line and makes a running one not ready,
backing off, until it is back."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import orjson
import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from touchstream.config.settings import load_client_settings
from touchstream.domain.identity import home_of
from touchstream.runtime.apache_kafka import KafkaBroker
from touchstream.runtime.kafka_io import produce, read_topic
from touchstream.runtime.processes import free_port
from touchstream.runtime.stack import Stack, WorkerProcess, clean_env, worker_env
from touchstream.simulator.factory import event, purchase

from .conftest import (
    PASSWORDS,
    REAUTH_MS,
    Pki,
    certificate_settings,
    grant_privileged_producer,
    grant_producer,
    grant_replay,
    grant_worker,
    sasl_settings,
)

pytestmark = pytest.mark.integration

STRONG_SECRET = "a-production-hmac-secret-of-48-characters-000000"


def buy(stack: Stack, order: str, total_minor: int) -> str:
    """A purchase of the test's customer, produced as a super user on the plaintext listener."""
    customer = f"crm-{stack.settings['topic_prefix'].rstrip('.')}"
    topic = stack.settings["topic_prefix"] + "touchpoints"
    produce(
        stack.broker.bootstrap,
        topic,
        [(customer.encode(), purchase({"customer_id": customer}, order, total_minor))],
    )
    return customer


def profile(worker: WorkerProcess, customer: str, orders: int) -> dict[str, object]:
    return worker.poll(f"/customers/{customer}", lambda v: v.get("orders") == orders, timeout_s=60)


def wait_until(what: str, done: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.25)
    raise AssertionError(f"never: {what}")


def not_ready(worker: WorkerProcess) -> bool:
    assert worker.child.alive(), worker.child.tail()
    return worker.get("/readyz")[0] == 503


def run_cli(
    args: list[str], env: dict[str, str], timeout_s: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "touchstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def start_once(stack: Stack, **settings: str) -> subprocess.CompletedProcess[str]:
    """A worker process run to its exit, with the stack's settings and ``settings``."""
    merged = {**stack.settings, **settings}
    env = worker_env(
        merged.pop("broker"),
        f"redis://127.0.0.1:{free_port()}/0",
        free_port(),
        str(stack.workdir / "data"),
        embedded_broker=False,
        **merged,
    )
    return run_cli(["worker"], env)


def serving_first_order(
    stack: Stack, broker: KafkaBroker, pki: Pki, user: str
) -> tuple[WorkerProcess, str]:
    """A ready worker logged in as ``user`` with the documented ACLs, one order processed."""
    prefix, app_id = stack.settings["topic_prefix"], stack.settings["app_id"]
    grant_worker(broker, f"User:{user}", prefix, app_id)
    worker = stack.start_worker(**sasl_settings(broker, pki, user))
    worker.wait_ready()
    customer = buy(stack, "o-1", 10_000)
    profile(worker, customer, 1)
    return worker, customer


def back_with_each_order_once(worker: WorkerProcess, customer: str) -> None:
    worker.wait_ready(timeout_s=90)
    view = profile(worker, customer, 2)
    assert view["points"] == 150  # 100 + 50: the order read twice is counted once
    assert worker.child.alive()


def cli_env(**settings: str) -> dict[str, str]:
    """A production environment with only the Kafka settings: no HMAC secret, no Redis."""
    env = clean_env()
    env.update({f"TOUCHSTREAM_{k.upper()}": v for k, v in settings.items()})
    env["TOUCHSTREAM_ENV"] = "production"
    return env


@pytest.mark.parametrize("login", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "certificate"])
def test_a_worker_processes_events_over_each_secure_login(
    secure_stack: Stack, secure_kafka: KafkaBroker, pki: Pki, login: str
) -> None:
    if login == "certificate":
        settings = certificate_settings(secure_kafka, pki)
        principal = "User:touchstream"  # CN=touchstream, by ssl.principal.mapping.rules
    else:
        user = {"SCRAM-SHA-512": "touchstream", "SCRAM-SHA-256": "touchstream-256"}.get(
            login, "touchstream-plain"
        )
        settings = sasl_settings(secure_kafka, pki, user)
        principal = f"User:{user}"
    prefix, app_id = secure_stack.settings["topic_prefix"], secure_stack.settings["app_id"]
    grant_worker(secure_kafka, principal, prefix, app_id)
    worker = secure_stack.start_worker(**settings)
    worker.wait_ready()
    customer = buy(secure_stack, "o-1", 12_550)
    view = profile(worker, customer, 1)
    assert view["points"] == 125
    # what the worker produced went over the same login: its updates are on the broker
    updates = read_topic(secure_kafka.bootstrap, prefix + "profiles.updates", expect=1)
    assert customer in {u.json()["customer_id"] for u in updates}


def test_a_wrong_password_stops_the_worker_at_start_up_naming_the_setting(
    secure_stack: Stack, secure_kafka: KafkaBroker, pki: Pki
) -> None:
    login = sasl_settings(secure_kafka, pki, "touchstream")
    result = start_once(secure_stack, **{**login, "kafka_sasl_password": "not-the-password"})
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert "TOUCHSTREAM_KAFKA_SASL_PASSWORD" in line
    assert "TOUCHSTREAM_KAFKA_SASL_USERNAME='touchstream'" in line
    assert "not-the-password" not in result.stderr + result.stdout
    # the right password passes the same check: the worker starts and serves
    prefix, app_id = secure_stack.settings["topic_prefix"], secure_stack.settings["app_id"]
    grant_worker(secure_kafka, "User:touchstream", prefix, app_id)
    secure_stack.start_worker(**login).wait_ready()


def test_a_missing_acl_stops_the_worker_at_start_up_naming_principal_operation_and_resource(
    secure_stack: Stack, secure_kafka: KafkaBroker, pki: Pki
) -> None:
    prefix, app_id = secure_stack.settings["topic_prefix"], secure_stack.settings["app_id"]
    # the topic ACLs of docs/security.md, but not the group's
    secure_kafka.acl(
        *("--add", "--allow-principal", "User:touchstream-256"),
        *("--operation", "Read", "--operation", "Write", "--operation", "Create"),
        *("--topic", prefix, "--topic", f"{app_id}-", "--resource-pattern-type", "prefixed"),
    )
    result = start_once(secure_stack, **sasl_settings(secure_kafka, pki, "touchstream-256"))
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert f"User:touchstream-256 may not READ group {app_id}: kafka-acls" in line
    assert f"--operation Read --group {app_id}" in line
    assert "Traceback" not in result.stderr


REVOKES = {
    # what is taken away: (kafka-acls arguments, the denied operation and resource shown)
    "topic read": (
        "--operation",
        "Read",
        "--topic",
        "{prefix}",
        "--resource-pattern-type",
        "prefixed",
    ),
    "group read": ("--operation", "Read", "--group", "{app_id}"),
    "topic write": (
        "--operation",
        "Write",
        "--topic",
        "{prefix}",
        "--resource-pattern-type",
        "prefixed",
    ),
}


@pytest.mark.parametrize("revoked", list(REVOKES))
def test_a_revoked_acl_leaves_the_worker_up_and_not_ready_until_it_is_back(
    secure_stack: Stack, secure_kafka: KafkaBroker, pki: Pki, revoked: str
) -> None:
    prefix, app_id = secure_stack.settings["topic_prefix"], secure_stack.settings["app_id"]
    worker, customer = serving_first_order(secure_stack, secure_kafka, pki, "touchstream")
    acl = [a.format(prefix=prefix, app_id=app_id) for a in REVOKES[revoked]]
    secure_kafka.acl("--remove", "--force", "--allow-principal", "User:touchstream", *acl)
    wait_until("the worker is not ready", lambda: not_ready(worker))
    buy(secure_stack, "o-2", 5_000)  # arrives while the worker may not read it
    time.sleep(3)  # several backoffs and access checks: the worker must stay up
    assert not_ready(worker)
    body = orjson.loads(worker.get("/readyz")[1])
    assert body["checks"]["kafka_access"] is False
    operation = revoked.split()[1].upper()
    assert f"User:touchstream may not {operation}" in body["kafka_access"]
    assert worker.metrics()["touchstream_kafka_access_denied"] >= 1
    if revoked == "topic write":  # the order was read; its output is held, not dropped
        wait_until("output refused", lambda: "output" in orjson.loads(worker.get("/readyz")[1]))
        body = orjson.loads(worker.get("/readyz")[1])
        assert "TopicAuthorizationFailedError" in body["output"]
        assert body["checks"]["output_delivered"] is False
        assert worker.metrics()["touchstream_output_retries_total"] >= 1

    secure_kafka.acl("--add", "--allow-principal", "User:touchstream", *acl)
    back_with_each_order_once(worker, customer)
    assert worker.metrics()["touchstream_kafka_access_denied"] == 0


def test_a_rotated_password_leaves_the_worker_up_and_not_ready_until_it_is_back(
    secure_stack: Stack, secure_kafka: KafkaBroker, pki: Pki
) -> None:
    worker, customer = serving_first_order(secure_stack, secure_kafka, pki, "rotated")
    secure_kafka.set_scram_password("rotated", "SCRAM-SHA-512", "after-rotation")
    wait_until(
        "the worker is not ready", lambda: not_ready(worker), timeout_s=REAUTH_MS / 1000 + 30
    )
    buy(secure_stack, "o-2", 5_000)
    # past the broker's re-authentication deadline: its old sessions are over too
    time.sleep(REAUTH_MS / 1000 + 1)
    assert not_ready(worker)
    assert worker.metrics()["touchstream_kafka_auth_failures_total"] >= 1
    body = orjson.loads(worker.get("/readyz")[1])
    assert "TOUCHSTREAM_KAFKA_SASL_PASSWORD" in body["kafka_access"]
    assert "before-rotation" not in body["kafka_access"]

    secure_kafka.set_scram_password("rotated", "SCRAM-SHA-512", PASSWORDS["rotated"])
    back_with_each_order_once(worker, customer)


def test_the_simulator_and_dlq_replay_log_in_with_the_worker_settings(
    secure_stack: Stack, secure_kafka: KafkaBroker, pki: Pki
) -> None:
    prefix, app_id = secure_stack.settings["topic_prefix"], secure_stack.settings["app_id"]
    grant_worker(secure_kafka, "User:touchstream", prefix, app_id)
    grant_producer(secure_kafka, "User:producer", prefix + "touchpoints")
    # the simulator plays the loyalty service too: its consent grants go to the privileged input
    grant_privileged_producer(secure_kafka, "User:producer", prefix)
    grant_replay(secure_kafka, "User:replayer", prefix, app_id)
    worker = secure_stack.start_worker(**sasl_settings(secure_kafka, pki, "touchstream"))
    worker.wait_ready()

    simulate = ["simulate", "--topic", prefix + "touchpoints", "--rate", "0"]
    simulate += ["--events", "40", "--malformed", "0.25", "--malformed-kind", "invalid_json"]
    result = run_cli(simulate, cli_env(**sasl_settings(secure_kafka, pki, "producer")))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"produced 40 events to {prefix}touchpoints (")
    malformed = int(result.stdout.split("(", 1)[1].split()[0])
    assert malformed > 0
    dlq = read_topic(secure_kafka.bootstrap, prefix + "touchpoints.dlq", expect=malformed)
    assert len(dlq) == malformed

    replayer = cli_env(
        **sasl_settings(secure_kafka, pki, "replayer"), topic_prefix=prefix, app_id=app_id
    )
    result = run_cli(["dlq", "replay"], replayer)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"replayed {malformed} DLQ records to {prefix}touchpoints")
    # still malformed: dead-lettered again by the worker
    again = read_topic(secure_kafka.bootstrap, prefix + "touchpoints.dlq", expect=2 * malformed)
    assert len(again) == 2 * malformed
    # the replayer's settings are client settings: the broker list and login suffice
    assert load_client_settings(replayer).hmac_secret == ""


def test_only_the_loyalty_service_may_write_privileged_commands(
    secure_stack: Stack, secure_kafka: KafkaBroker, pki: Pki
) -> None:
    """A till (an ordinary producer) cannot write the privileged input, and its redemption on
    the ordinary input is dead-lettered; the loyalty service's redemption is applied."""
    prefix, app_id = secure_stack.settings["topic_prefix"], secure_stack.settings["app_id"]
    grant_worker(secure_kafka, "User:touchstream", prefix, app_id)
    grant_producer(secure_kafka, "User:producer", prefix + "touchpoints")
    grant_privileged_producer(secure_kafka, "User:loyalty-service", prefix)
    worker = secure_stack.start_worker(**sasl_settings(secure_kafka, pki, "touchstream"))
    worker.wait_ready()
    till = load_client_settings(cli_env(**sasl_settings(secure_kafka, pki, "producer")))
    loyalty = load_client_settings(cli_env(**sasl_settings(secure_kafka, pki, "loyalty-service")))
    bootstrap = secure_kafka.listener("SASL_SSL")
    card = {"loyalty_id": f"LC-{prefix.rstrip('.')}"}
    produce(
        bootstrap, prefix + "touchpoints", [(b"c", purchase(card, "o-1", 50_000))], settings=till
    )

    def spend(points: int) -> dict[str, object]:
        return event("redemption", card, {"redemption_id": f"R-{points}", "points": points})

    with pytest.raises(TopicAuthorizationFailedError):
        produce(bootstrap, prefix + "touchpoints.privileged", [(b"c", spend(100))], settings=till)
    produce(bootstrap, prefix + "touchpoints", [(b"c", spend(200))], settings=till)
    (letter,) = read_topic(secure_kafka.bootstrap, prefix + "touchpoints.dlq", expect=1)
    assert letter.json()["reason"] == "privileged_command_on_public_input"
    assert "privileged input" in letter.json()["message"]

    produce(bootstrap, prefix + "touchpoints.privileged", [(b"c", spend(300))], settings=loyalty)
    customer = home_of("loyalty_id", card["loyalty_id"])
    view = worker.poll(f"/customers/{customer}", lambda v: v.get("points") == 200, timeout_s=60)
    assert view["points"] == 500 - 300  # the loyalty service's redemption only
