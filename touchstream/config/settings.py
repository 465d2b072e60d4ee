"""Runtime settings from ``TOUCHSTREAM_*`` environment variables, validated once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit

from touchstream.config.rules import Rules, load_rules
from touchstream.errors import ConfigError

PREFIX = "TOUCHSTREAM_"
DEV_HMAC_SECRET = "touchstream-development-only-hmac-secret"
SECRET_FIELDS = ("hmac_secret", "kafka_sasl_password", "redis_password")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
# the privacy promise (docs/topics.md): raw identifiers of rejected events and erased state
# leave Kafka within 30 days at the most, whatever an operator sets
MAX_DLQ_RETENTION_HOURS = 30 * 24
MAX_COMPACTION_LAG_HOURS = 30 * 24


@dataclass(frozen=True)
class Settings:
    env: str = "production"
    broker: str = "kafka://127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    allow_plaintext: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_username: str = ""
    redis_password: str = ""
    redis_ssl_cafile: str = ""
    hmac_secret: str = ""
    app_id: str = "touchstream"
    topic_prefix: str = ""
    partitions: int = 8
    replication_factor: int = 1
    standby_replicas: int = 1
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: str = "var/touchstream"
    store: str = "memory"
    rocksdb_memory_mb: int = 1024
    # decoded states of the customers written last, kept to skip decoding them again (about
    # 4 KiB each at the bench's mean; 0 turns the cache off)
    state_cache_entries: int = 20_000
    rules: str = ""
    log_level: str = "info"
    session_timeout_s: float = 30.0
    heartbeat_interval_s: float = 3.0
    max_event_bytes: int = 65536
    future_tolerance_s: int = 86400
    # how far past the time its record reached the broker an event may move its partition's
    # event-time clock (the timers of the partition fire by that clock): an event dated
    # further ahead is applied at its claimed time, but the clock waits
    max_clock_skew_s: int = 300
    redis_flush_interval_ms: int = 20
    # profiles waiting for Redis (an outage) before they are dropped for a re-sync from the
    # table once Redis is back: the bound on the sync's memory (docs/operations.md)
    redis_max_pending: int = 50_000
    # how long Redis keeps the versioned tombstone of an erased profile (docs/security.md,
    # "Erasure"): a stale or queued write numbered at or below it is refused while it lasts
    redis_tombstone_ttl_s: int = 7 * 24 * 3600
    idle_fallback_s: float = 5.0
    # aiokafka keeps one produce request in flight per broker, holding one batch per
    # partition: a flush bigger than a batch waits a broker round trip per batch (issue 10).
    # 512 KiB stays under Kafka's default message.max.bytes (1 MiB).
    producer_max_batch_bytes: int = 524288
    fetch_max_wait_ms: int = 100
    probe_end_offsets: bool = False
    # topic retention (docs/topics.md). Rejected events keep their original bytes, raw emails
    # and phones among them: the DLQ keeps them 7 days (a weekend to look and replay) and the
    # privacy promise caps it at 30.
    dlq_retention_hours: int = 168
    # TEST ONLY, empty (off) in every deployment: "stage:event_id,..." makes the named stage
    # raise for those events (stages: ingest, codec, core, projection, output; internal: the
    # identity messages an event causes; timer:<customer_id>: that customer's due timers), so
    # tests can exercise each path of the quarantine
    # and the halt (streams.isolation)
    faults: str = ""
    # touchpoints and touchstream.customer-events: records are needed until the stages read
    # them, seconds in normal operation; 7 days outlives any outage we plan to recover from
    input_retention_hours: int = 168
    # profiles.updates, triggers.* and the other outputs: downstream connectors' outage budget
    output_retention_hours: int = 168
    # a changelog record an erasure overwrote is compacted away within this bound
    changelog_compaction_lag_hours: int = 24
    # how often a running worker checks, with its own credentials, that it may still log in
    # and read, write and join what it needs (docs/security.md); not ready while it may not
    kafka_access_check_s: float = 15.0
    # how often a running worker reads its brokers' message.max.bytes and its topics'
    # max.message.bytes again (every output record is checked against them when added); a
    # send refused as too large reads them again at once
    output_limits_refresh_s: float = 300.0

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            elif f.name == "redis_url":
                value = mask_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def secure_kafka(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def secure_redis(self) -> bool:
        return urlsplit(self.redis_url).scheme == "rediss"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def bootstrap_servers(self) -> str:
        return bootstrap_servers(self.broker)

    def check(self) -> None:
        if self.env not in ("development", "production"):
            raise ConfigError(key("env"), "must be 'development' or 'production'")
        self.check_kafka()
        self._check_worker()

    def check_kafka(self) -> None:
        """What a Kafka client needs: the broker list and a complete security setting."""
        for url in self.broker.split(","):
            scheme, _, hostport = url.strip().rpartition("://")
            if scheme not in ("", "kafka") or not _host_port_ok(hostport):
                raise ConfigError(key("broker"), f"expected kafka://HOST:PORT[,...], got {url!r}")
        if self.kafka_security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                key("kafka_security_protocol"), f"must be one of {SECURITY_PROTOCOLS}"
            )
        if self.kafka_security_protocol.startswith("SASL"):
            if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(key("kafka_sasl_mechanism"), f"must be one of {SASL_MECHANISMS}")
            for name in ("kafka_sasl_username", "kafka_sasl_password"):
                if not getattr(self, name):
                    raise ConfigError(key(name), "SASL needs a username and a password")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ConfigError(
                key("kafka_ssl_keyfile" if self.kafka_ssl_certfile else "kafka_ssl_certfile"),
                "a client certificate needs both its certificate and its key file",
            )

    def _check_worker(self) -> None:
        if self.faults:
            from touchstream.streams.isolation import Faults  # test only, off by default

            try:
                Faults(self.faults)
            except ValueError as exc:
                raise ConfigError(key("faults"), str(exc)) from None
        parts = urlsplit(self.redis_url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigError(key("redis_url"), "expected redis://HOST:PORT/DB or rediss://...")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ConfigError(key("redis_url"), "the port is not a number") from exc
        if not self.development:
            if not self.hmac_secret or self.hmac_secret == DEV_HMAC_SECRET:
                raise ConfigError(
                    key("hmac_secret"),
                    "set a secret of at least 32 characters (the development default is refused)",
                )
            if not self.allow_plaintext and not self.secure_kafka:
                raise ConfigError(
                    key("kafka_security_protocol"),
                    "plaintext Kafka outside development: use SSL or SASL_SSL,"
                    " or set TOUCHSTREAM_ALLOW_PLAINTEXT=true on a trusted network",
                )
            if not self.allow_plaintext and not self.secure_redis:
                raise ConfigError(
                    key("redis_url"),
                    "plaintext Redis outside development: use rediss://,"
                    " or set TOUCHSTREAM_ALLOW_PLAINTEXT=true on a trusted network",
                )
        if len(self.hmac_secret) < 32:
            raise ConfigError(key("hmac_secret"), "must be at least 32 characters long")
        for name, low, high in (
            ("partitions", 1, 10_000),
            ("replication_factor", 1, 10),
            ("standby_replicas", 0, 10),
            ("web_port", 0, 65535),
            ("max_event_bytes", 1024, 16 * 1024 * 1024),
            ("redis_flush_interval_ms", 1, 10_000),
            ("redis_max_pending", 1, 10_000_000),
            ("redis_tombstone_ttl_s", 3600, 365 * 24 * 3600),
            ("producer_max_batch_bytes", 1, 64 * 1024 * 1024),
            ("fetch_max_wait_ms", 1, 30_000),
            ("rocksdb_memory_mb", 64, 1024 * 1024),
            ("state_cache_entries", 0, 100_000_000),
            ("dlq_retention_hours", 1, MAX_DLQ_RETENTION_HOURS),
            ("input_retention_hours", 1, 87_600),
            ("output_retention_hours", 1, 87_600),
            ("changelog_compaction_lag_hours", 1, MAX_COMPACTION_LAG_HOURS),
            ("max_clock_skew_s", 0, 86_400),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(key(name), f"must be between {low} and {high}, got {value}")
        for name in (
            "session_timeout_s",
            "heartbeat_interval_s",
            "idle_fallback_s",
            "kafka_access_check_s",
            "output_limits_refresh_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(key(name), "must be > 0")
        if self.heartbeat_interval_s >= self.session_timeout_s:
            raise ConfigError(key("heartbeat_interval_s"), "must be below session_timeout_s")
        if self.store not in ("memory", "rocksdb"):
            raise ConfigError(key("store"), "must be 'memory' or 'rocksdb'")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(key("log_level"), "must be debug, info, warning or error")


def bootstrap_servers(broker: str) -> str:
    """``kafka://h1:9092,kafka://h2:9092`` (or bare ``h1:9092,...``) as Kafka clients take it."""
    return ",".join(h.strip().split("://", 1)[-1] for h in broker.split(","))


def key(name: str) -> str:
    return PREFIX + name.upper()


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _host_port_ok(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    return bool(host) and port.isdigit()


DEVELOPMENT_DEFAULTS: dict[str, Any] = {
    "hmac_secret": DEV_HMAC_SECRET,
    "session_timeout_s": 6.0,
    "heartbeat_interval_s": 1.0,
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment; any invalid value raises ConfigError naming its key."""
    environ = os.environ if environ is None else environ
    values = _values(environ, overrides)
    env = values.get("env", Settings.env)
    if env == "development":
        for name, value in DEVELOPMENT_DEFAULTS.items():
            values.setdefault(name, value)
    settings = replace(Settings(), **values)
    settings.check()
    return settings


def _values(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = environ.get(key(f.name))
        if raw is not None:
            values[f.name] = _parse(f.name, str(f.type), raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def load_client_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings of a Kafka client tool (simulate, dlq replay): the worker's TOUCHSTREAM_KAFKA_*
    settings, checked as a client needs them; worker-only settings (the HMAC secret, Redis)
    are neither required nor checked."""
    environ = os.environ if environ is None else environ
    settings = replace(Settings(), **_values(environ, overrides))
    settings.check_kafka()
    return settings


def load_all(environ: Mapping[str, str] | None = None, **overrides: Any) -> tuple[Settings, Rules]:
    settings = load_settings(environ, **overrides)
    return settings, load_rules(settings.rules or None)


def _parse(name: str, tp: str, raw: str) -> Any:
    raw = raw.strip()
    if tp == "bool":
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key(name), f"expected true or false, got {raw!r}")
    if tp == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(key(name), f"expected an integer, got {raw!r}") from None
    if tp == "float":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(key(name), f"expected a number, got {raw!r}") from None
    return raw
