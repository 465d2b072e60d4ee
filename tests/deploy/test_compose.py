"""deploy/docker-compose.yml: real settings, a valid production configuration, real commands."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from touchstream.config.settings import PREFIX, Settings, load_settings
from touchstream.runtime.apache_kafka import PINNED_VERSION
from touchstream.runtime.cli import build_parser

SETTINGS = {PREFIX + f.name.upper() for f in fields(Settings)}
WORKERS = ("worker-1", "worker-2")
# ${NAME}, ${NAME:-default}, ${NAME:?error}, as docker compose interpolates them
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, environ: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if environ.get(name):
            return environ[name]
        if op == ":?":
            raise LookupError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return INTERPOLATION.sub(one, value)


def service_env(compose: dict[str, Any], name: str) -> dict[str, str]:
    env = compose["services"][name].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    # short syntax SOURCE:TARGET[:MODE]
    return {v.split(":")[0]: v.split(":")[1] for v in service.get("volumes", [])}


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "kafka-acls",
        "redis",
        *WORKERS,
        "simulator",
        "prometheus",
        "grafana",
    }
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"


def test_compose_runs_the_apache_kafka_the_tests_run(compose: dict[str, Any]) -> None:
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{PINNED_VERSION}"


def test_every_touchstream_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    for name in compose["services"]:
        unknown = {k for k in service_env(compose, name) if k.startswith(PREFIX)} - SETTINGS
        assert unknown == set(), f"{name} sets variables Touchstream does not read"


def test_workers_are_configured_only_through_touchstream_variables(
    compose: dict[str, Any],
) -> None:
    # Faust reads unprefixed variables such as WEB_PORT or BROKER_URL itself, and they win
    # over Touchstream's validated settings
    for name in WORKERS:
        assert all(k.startswith(PREFIX) for k in service_env(compose, name)), name


def test_worker_environment_is_a_valid_production_configuration(
    compose: dict[str, Any],
) -> None:
    operator = {"TOUCHSTREAM_HMAC_SECRET": "s" * 32}
    loaded = []
    for name in WORKERS:
        raw = service_env(compose, name)
        env = {k: interpolate(v, operator) for k, v in raw.items()}
        settings = load_settings(env)
        assert settings.env == "production"
        loaded.append(settings)
    # one deployment: one consumer group, the same topics and partitions
    assert len({(s.app_id, s.topic_prefix, s.partitions) for s in loaded}) == 1
    assert {s.redis_username for s in loaded} == {"touchstream"}


def test_the_hmac_secret_comes_from_the_operator_not_the_file(compose: dict[str, Any]) -> None:
    for name in WORKERS:
        raw = service_env(compose, name)["TOUCHSTREAM_HMAC_SECRET"]
        with pytest.raises(LookupError, match="TOUCHSTREAM_HMAC_SECRET"):
            interpolate(raw, {})


def test_workers_wait_for_healthy_kafka_and_redis_and_keep_their_state(
    compose: dict[str, Any],
) -> None:
    data_dirs = set()
    for name in WORKERS:
        service = compose["services"][name]
        assert service["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "kafka-acls": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"},
        }
        env = service_env(compose, name)
        broker = env["TOUCHSTREAM_BROKER"].removeprefix("kafka://")
        assert broker.split(":")[0] in compose["services"]
        assert env["TOUCHSTREAM_REDIS_URL"].startswith("redis://redis:")
        volume, target = next(iter(mounts(service).items()))
        assert target == env["TOUCHSTREAM_DATA_DIR"]
        assert volume in compose["volumes"]
        data_dirs.add(volume)
    assert len(data_dirs) == len(WORKERS), "each worker needs its own state volume"


def test_prometheus_scrapes_every_worker_on_its_operations_port(
    compose: dict[str, Any], deploy: Path
) -> None:
    config = yaml.safe_load((deploy / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "touchstream"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    expected = {f"{name}:{service_env(compose, name)['TOUCHSTREAM_OPS_PORT']}" for name in WORKERS}
    assert targets == expected
    for name in WORKERS:
        env = service_env(compose, name)
        assert env["TOUCHSTREAM_OPS_HOST"] == "0.0.0.0"
        assert env["TOUCHSTREAM_OPS_PORT"] != env["TOUCHSTREAM_WEB_PORT"]


def test_prometheus_and_grafana_mount_the_shipped_files(
    compose: dict[str, Any], deploy: Path
) -> None:
    prometheus = mounts(compose["services"]["prometheus"])
    assert prometheus["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    # rule_files: [alerts.yml] is relative to the config file's directory
    assert prometheus["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    for service in compose["services"].values():
        for source in mounts(service):
            if source.startswith("."):
                assert (deploy / source).exists(), source


def test_simulator_runs_a_real_cli_command_against_the_compose_kafka(
    compose: dict[str, Any],
) -> None:
    simulator = compose["services"]["simulator"]
    argv = [*simulator["entrypoint"], *simulator["command"]]
    assert argv[0] == "touchstream"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "simulate"
    host, _, port = args.broker.partition(":")
    kafka = service_env(compose, "kafka")
    assert host == "kafka" and f"SASL://kafka:{port}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    # it logs in as the loyalty service, the one principal of the stack that may write both
    # touchpoints and touchpoints.privileged (its consent grants go there)
    env = service_env(compose, "simulator")
    assert env["TOUCHSTREAM_KAFKA_SASL_USERNAME"] == "loyalty"
    # the image's health check probes the worker's HTTP port, which the simulator has not
    assert simulator["healthcheck"] == {"disable": True}


def test_kafka_is_a_single_kraft_node(compose: dict[str, Any]) -> None:
    kafka = service_env(compose, "kafka")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:9093"
    assert kafka["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    listeners = dict(
        item.split(":", 1) for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    for listener in kafka["KAFKA_LISTENERS"].split(","):
        assert listener.split("://")[0] in listeners


def test_published_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_only_the_loyalty_and_data_request_services_may_write_the_privileged_input(
    compose: dict[str, Any],
) -> None:
    kafka = service_env(compose, "kafka")
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    protocols = dict(
        item.split(":", 1) for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    # every listener a client on the network or the host reaches requires a login
    for listener in kafka["KAFKA_LISTENERS"].split(","):
        name, address = listener.split("://")
        if name not in ("CONTROLLER",) and not address.startswith("localhost:"):
            assert protocols[name].startswith("SASL_"), listener
    script = compose["services"]["kafka-acls"]["command"][0]
    grants = [line for line in script.splitlines() if "--allow-principal" in line]
    privileged = [g for g in grants if "touchpoints.privileged" in g or "prefixed" in g]
    writers = {
        word.removeprefix("User:")
        for g in privileged
        if "Write" in g and ("touchpoints.privileged" in g or "--topic touchpoints " in g)
        for word in g.split()
        if word.startswith("User:")
    }
    assert writers == {"loyalty", "data-requests"}, writers
