"""The customer API of a real worker on Apache Kafka and a real Redis (issue 28): bearer
tokens with scopes, revocation, POST lookups, the rate limit, the audit log, TLS and mutual
TLS, the separate operations listener and the start-up refusal."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis

from tests.integration.conftest import Pki
from touchstream.runtime.kafka_io import produce
from touchstream.runtime.processes import free_port
from touchstream.runtime.stack import Stack, WorkerProcess, clean_env, issue_token, worker_env
from touchstream.simulator.factory import purchase

pytestmark = pytest.mark.integration

STRONG_SECRET = "an-hmac-secret-of-at-least-32-characters"
EMAIL = "Ann.Shopper@Example.com"
CUSTOMER_PATHS = ("/customers/crm-api-1", "/customers/lookup?kind=email&value=a%40b.com")


def redis_of(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis.url(stack.redis_db))


def token(stack: Stack, *scopes: str) -> str:
    client = redis_of(stack)
    try:
        return issue_token(client, f"test {' '.join(scopes)}", *scopes)
    finally:
        client.close()


def serve_one_customer(stack: Stack, worker: WorkerProcess) -> str:
    """One purchase by a shopper known by EMAIL through Kafka; their customer id once the API
    serves their profile (read with the stack's admin token)."""
    produce(
        stack.broker.bootstrap,
        stack.settings["topic_prefix"] + "touchpoints",
        [(b"ann", purchase({"email": EMAIL}, "o-1", 12_550))],
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = worker.lookup("email", EMAIL, token=stack.token)
        if status == 200:
            customer: str = orjson.loads(body)["customer_id"]
            return customer
        time.sleep(0.2)
    raise AssertionError(f"no profile for the email after 30s: {status} {body[:200]!r}")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``touchstream ARGS`` run to its exit."""
    argv = [sys.executable, "-m", "touchstream", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return run({**clean_env(), "TOUCHSTREAM_REDIS_URL": stack.redis.url(stack.redis_db)}, *args)


def test_every_customer_endpoint_needs_a_token_with_its_scope(stack: Stack) -> None:
    lookup_only = token(stack, "lookup")
    profile_only = token(stack, "profile:read")
    worker = stack.start_worker()
    worker.wait_ready()
    customer = serve_one_customer(stack, worker)

    for path in (
        f"/customers/{customer}",
        CUSTOMER_PATHS[1],
    ):  # no token: 401 with a Bearer challenge
        status, body, headers = worker.request("GET", path, token="")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
        assert "token" in orjson.loads(body)["error"]
    assert worker.lookup("email", EMAIL, token="")[0] == 401
    assert worker.request("GET", CUSTOMER_PATHS[0], token="ts_000000000000_forged")[0] == 401

    assert worker.request("GET", f"/customers/{customer}", token=lookup_only)[0] == 403
    assert worker.lookup("email", EMAIL, token=profile_only)[0] == 403
    status, body, headers = worker.request("GET", CUSTOMER_PATHS[1], token=profile_only)
    assert status == 403 and "insufficient_scope" in headers["WWW-Authenticate"]

    status, body, _ = worker.request("GET", f"/customers/{customer}", token=profile_only)
    assert status == 200 and orjson.loads(body)["points"] == 125
    status, body = worker.lookup("email", EMAIL, token=lookup_only)
    assert status == 200 and orjson.loads(body)["customer_id"] == customer


def test_tokens_issued_listed_and_revoked_with_the_cli_refused_within_the_cache_time(
    stack: Stack,
) -> None:
    worker = stack.start_worker(api_token_cache_s="1")
    worker.wait_ready()
    issued = cli(stack, "tokens", "issue", "--scope", "profile:read", "--name", "crm-export")
    assert issued.returncode == 0, issued.stderr
    secret = issued.stdout.strip()
    token_id = next(
        line.split(": ", 1)[1] for line in issued.stderr.splitlines() if line.startswith("id: ")
    )
    listed = cli(stack, "tokens", "list", "--json")
    entry = next(e for e in json.loads(listed.stdout) if e["id"] == token_id)
    assert entry["name"] == "crm-export" and entry["scopes"] == ["profile:read"]
    assert secret not in listed.stdout and "sha256" not in listed.stdout
    stored = redis_of(stack).hgetall("ts:api:tokens")
    assert all(secret.encode() not in v for v in stored.values())  # only its hash is kept

    assert worker.request("GET", "/customers/nobody", token=secret)[0] == 404  # accepted

    revoked = cli(stack, "tokens", "revoke", token_id)
    assert revoked.returncode == 0 and "within" in revoked.stdout
    time.sleep(1.0)  # TOUCHSTREAM_API_TOKEN_CACHE_S: the stated bound
    assert worker.request("GET", "/customers/nobody", token=secret)[0] == 401
    assert cli(stack, "tokens", "revoke", token_id).returncode == 1  # no such token any more


def test_lookup_by_post_and_the_get_form_refused_outside_development(stack: Stack) -> None:
    worker = stack.start_worker(env="production", allow_plaintext="true", hmac_secret=STRONG_SECRET)
    worker.wait_ready()
    customer = serve_one_customer(stack, worker)  # by POST

    status, body = worker.lookup("email", EMAIL.upper())  # normalised on the server
    assert status == 200 and orjson.loads(body)["customer_id"] == customer
    assert worker.lookup("email", "nobody@example.com")[0] == 404
    assert worker.lookup("shoe_size", "42")[0] == 400
    assert worker.request("POST", "/customers/lookup", body=["email"])[0] == 400

    status, body, headers = worker.request("GET", "/customers/lookup?kind=email&value=a%40b.com")
    assert status == 405 and headers["Allow"] == "POST"
    assert "POST /customers/lookup" in orjson.loads(body)["error"]


def test_a_token_over_its_rate_limit_gets_429_with_retry_after(stack: Stack) -> None:
    worker = stack.start_worker(api_rate_per_s="0.01", api_rate_burst="2")
    worker.wait_ready()
    other = token(stack, "admin")

    answers = [worker.request("GET", "/customers/nobody")[0] for _ in range(2)]
    status, body, headers = worker.request("GET", "/customers/nobody")

    assert answers == [404, 404]
    assert status == 429 and "rate limit" in orjson.loads(body)["error"]
    assert int(headers["Retry-After"]) >= 1
    assert worker.request("GET", "/customers/nobody", token=other)[0] == 404  # per token


def test_the_audit_log_has_every_read_and_no_identifier(stack: Stack, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    reader = token(stack, "profile:read", "lookup")
    lookup_only = token(stack, "lookup")
    worker = stack.start_worker(api_audit_log=str(audit))
    worker.wait_ready()
    customer = serve_one_customer(stack, worker)
    token_id = reader.split("_")[1]

    assert worker.request("GET", f"/customers/{customer}", token=reader)[0] == 200
    assert worker.lookup("email", EMAIL, token=reader)[0] == 200
    assert worker.lookup("phone", "+44 7700 900123", token=reader)[0] == 404
    assert worker.request("GET", "/customers/someone@example.org", token=reader)[0] == 404
    assert worker.request("GET", f"/customers/{customer}", token=lookup_only)[0] == 403
    assert worker.request("GET", f"/customers/{customer}", token="")[0] == 401

    text = audit.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    mine = [e for e in entries if e["token_id"] == token_id]
    assert [(e["endpoint"], e["customer_id"], e["status"]) for e in mine] == [
        ("GET /customers/{customer_id}", customer, 200),
        ("POST /customers/lookup", customer, 200),
        ("POST /customers/lookup", None, 404),
        ("GET /customers/{customer_id}", None, 404),
    ]
    assert all(e["token_name"] == "test profile:read lookup" and e["at"] for e in mine)
    assert mine[1]["kind"] == "email"
    refused = entries[-2]  # who was refused is named, the customer is not
    assert (refused["token_id"], refused["status"], refused["customer_id"]) == (
        lookup_only.split("_")[1],
        403,
        None,
    )
    assert entries[-1]["token_id"] is None and entries[-1]["status"] == 401
    for identifier in ("ann.shopper", "Ann.Shopper", "example.com", "7700", "someone", "@"):
        assert identifier not in text


def test_the_ops_listener_serves_health_and_metrics_without_a_token_and_no_customer_data(
    stack: Stack,
) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    customer = serve_one_customer(stack, worker)

    def ops(path: str) -> int:
        return worker.request("GET", path, token="")[0]

    assert ops("/metrics") == 200 and ops("/healthz") == 200 and ops("/readyz") == 200
    assert b"touchstream_events_applied_total" in worker.get("/metrics")[1]
    for path in (f"/customers/{customer}", "/table/customers", f"/table/customers/{customer}"):
        try:
            with urllib.request.urlopen(worker.ops + path, timeout=2) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 404, path
    # and the customer listener serves no operations endpoint
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(worker.http + "/metrics", timeout=2)
    assert missing.value.code == 404


def test_https_and_mutual_tls_on_the_customer_listener(stack: Stack, pki: Pki) -> None:
    worker = stack.start_worker(
        api_ssl_certfile=str(pki.cert),
        api_ssl_keyfile=str(pki.key),
        api_ssl_cafile=str(pki.ca),
    )
    worker.wait_ready()
    url = f"https://127.0.0.1:{worker.web_port}/customers/nobody"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {worker.token}"})

    with_cert = ssl.create_default_context(cafile=str(pki.ca))
    with_cert.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, context=with_cert, timeout=5)
    assert answer.value.code == 404  # through TLS, certificate and token accepted

    without_cert = ssl.create_default_context(cafile=str(pki.ca))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(request, context=without_cert, timeout=5).read()
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/customers/x", timeout=5)


def test_a_worker_whose_customer_api_cannot_listen_is_not_ready(stack: Stack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = stack.start_worker(web_port=str(port))
        worker.wait_for("/healthz")
        deadline = time.monotonic() + 60
        checks: dict[str, bool] = {}
        while time.monotonic() < deadline and not checks.get("partitions_recovered"):
            status, body = worker.get("/readyz")
            checks = orjson.loads(body)["checks"]
            time.sleep(0.2)
        assert status == 503 and checks["partitions_recovered"] is True
        assert checks["customer_api"] is False
        assert (
            worker.child.log_path
            and "the customer API cannot listen" in worker.child.log_path.read_text()
        )


def test_production_refuses_customer_data_on_a_public_address_without_auth(
    tmp_path: Path,
) -> None:
    env = worker_env(
        "kafka://127.0.0.1:9",
        "redis://127.0.0.1:9/0",
        free_port(),
        str(tmp_path / "data"),
        embedded_broker=False,
        env="production",
        hmac_secret=STRONG_SECRET,
        allow_plaintext="true",
        web_host="0.0.0.0",
        api_auth="none",
    )
    result = run(env, "worker")

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TOUCHSTREAM_API_AUTH" in lines[0]
    assert "without authentication" in lines[0]
