"""Runtime settings from ``TOUCHSTREAM_*`` environment variables, validated once at start-up."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit

from touchstream.config.rules import Rules, load_rules
from touchstream.errors import ConfigError

PREFIX = "TOUCHSTREAM_"
DEV_HMAC_SECRET = "touchstream-development-only-hmac-secret"
# every secret setting X may instead be read from the file X_FILE names (docs/security.md,
# "Secrets from files"); a setting holding a password inside a URL counts as a secret
SECRET_FIELDS = (
    "hmac_secret",
    "hmac_keys",
    "kafka_sasl_password",
    "kafka_ssl_key_password",
    "redis_password",
)
FILE_FIELDS = (*SECRET_FIELDS, "redis_url")
FILE_SUFFIX = "_FILE"
# a secret file bigger than this is not a secret (a wrong path to a log or a dump)
MAX_SECRET_FILE_BYTES = 65536
MIN_HMAC_KEY_CHARS = 32
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
    # the password of an encrypted kafka_ssl_keyfile; empty: the key file is not encrypted
    kafka_ssl_key_password: str = ""
    allow_plaintext: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_username: str = ""
    redis_password: str = ""
    redis_ssl_cafile: str = ""
    hmac_secret: str = ""
    # the versioned key set: "v2:<key>,v1:<key>" (commas or new lines between entries);
    # hmac_secret alone is version 1 (docs/operations.md, "Rotating the HMAC key")
    hmac_keys: str = ""
    app_id: str = "touchstream"
    topic_prefix: str = ""
    partitions: int = 8
    replication_factor: int = 1
    standby_replicas: int = 1
    # the customer API listener (GET /customers/{id}, POST /customers/lookup): bearer tokens
    # with scopes (serving/tokens.py), optional TLS and mutual TLS (docs/security.md)
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # the operations listener: /metrics, /healthz, /readyz, no customer data, no token
    ops_host: str = "127.0.0.1"
    ops_port: int = 6068
    # "token" (default): every customer endpoint needs a bearer token with the right scope;
    # "none": no token (development, loopback, or behind mutual TLS only)
    api_auth: str = "token"
    # how long a worker trusts its copy of the token set read from Redis: a revoked token is
    # refused by every worker at most this many seconds after `touchstream tokens revoke`
    api_token_cache_s: float = 5.0
    # per token and per worker: a token bucket refilled at this rate, holding at most burst
    api_rate_per_s: float = 20.0
    api_rate_burst: int = 40
    # the audit log of profile reads (JSON lines, no identifiers); empty: the worker's stderr
    api_audit_log: str = ""
    # TLS of the customer API listener: certificate and key (PEM) turn HTTPS on; a CA file
    # adds mutual TLS (a client certificate signed by that CA is required)
    api_ssl_certfile: str = ""
    api_ssl_keyfile: str = ""
    api_ssl_cafile: str = ""
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
    # how long the worker waits for a broker request (Faust's ``broker_request_timeout``, its
    # default); table recovery waits for each step at most this long, and a step that takes
    # longer stops the worker for its supervisor to restart it (streams/recovery.py)
    broker_request_timeout_s: float = 90.0
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
    # tests can exercise each path of the quarantine and the halt (streams.isolation);
    # seek:<generation>: recovery's seek of that consumer generation never ends, as with a
    # broker that stopped answering (streams.recovery)
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

    def hmac_key_set(self) -> dict[int, str]:
        """The HMAC keys by version: TOUCHSTREAM_HMAC_KEYS, with TOUCHSTREAM_HMAC_SECRET as
        version 1 (the key of every release before key versions)."""
        keys: dict[int, str] = {}
        for entry in self.hmac_keys.replace("\n", ",").split(","):
            entry = entry.strip()
            if not entry:
                continue
            head, sep, secret = entry.partition(":")
            version = head[1:] if head[:1] in ("v", "V") else ""
            if not sep or not version.isdigit() or int(version) < 1:
                raise ConfigError(
                    key("hmac_keys"), "expected v<version>:<key>[,v<version>:<key>...]"
                )
            if int(version) in keys:
                raise ConfigError(key("hmac_keys"), f"version {int(version)} is given twice")
            keys[int(version)] = secret
        if self.hmac_secret:
            if 1 in keys:
                raise ConfigError(
                    key("hmac_keys"),
                    "names version 1 while TOUCHSTREAM_HMAC_SECRET (version 1) is set: keep one",
                )
            keys[1] = self.hmac_secret
        versions = sorted(keys)
        if versions and versions != list(range(1, len(versions) + 1)):
            raise ConfigError(
                key("hmac_keys"),
                f"versions must run 1..n without gaps (every digest is a chain through all of "
                f"them), got {versions}",
            )
        return keys

    def check(self) -> None:
        if self.env not in ("development", "production"):
            raise ConfigError(key("env"), "must be 'development' or 'production'")
        self.check_kafka()
        self._check_worker()

    def _check_api(self) -> None:
        if self.api_auth not in ("token", "none"):
            raise ConfigError(key("api_auth"), "must be 'token' or 'none'")
        if self.web_port and self.web_port == self.ops_port:
            raise ConfigError(
                key("ops_port"), "the operations listener needs its own port (not WEB_PORT)"
            )
        if not 0 <= self.api_token_cache_s <= 300:
            raise ConfigError(key("api_token_cache_s"), "must be between 0 and 300 seconds")
        if not 0 < self.api_rate_per_s <= 1_000_000:
            raise ConfigError(key("api_rate_per_s"), "must be > 0 (and at most 1000000)")
        if bool(self.api_ssl_certfile) != bool(self.api_ssl_keyfile):
            raise ConfigError(
                key("api_ssl_keyfile" if self.api_ssl_certfile else "api_ssl_certfile"),
                "HTTPS needs both the certificate and its key file",
            )
        if self.api_ssl_cafile and not self.api_ssl_certfile:
            raise ConfigError(
                key("api_ssl_cafile"),
                "mutual TLS needs HTTPS: set TOUCHSTREAM_API_SSL_CERTFILE and _KEYFILE too",
            )

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
        keys = self.hmac_key_set()
        if not self.development:
            if not keys or DEV_HMAC_SECRET in keys.values():
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
            if self.api_auth == "none" and not self.api_ssl_cafile and not _loopback(self.web_host):
                raise ConfigError(
                    key("api_auth"),
                    f"customer data on {self.web_host} without authentication outside"
                    " development: set TOUCHSTREAM_API_AUTH=token (the default) or"
                    " TOUCHSTREAM_API_SSL_CAFILE for mutual TLS, or bind TOUCHSTREAM_WEB_HOST"
                    " to 127.0.0.1",
                )
            if not self.allow_plaintext and not self.secure_redis:
                raise ConfigError(
                    key("redis_url"),
                    "plaintext Redis outside development: use rediss://,"
                    " or set TOUCHSTREAM_ALLOW_PLAINTEXT=true on a trusted network",
                )
        self._check_api()
        if not keys:
            raise ConfigError(key("hmac_secret"), "must be at least 32 characters long")
        for version, secret in keys.items():
            if len(secret) < MIN_HMAC_KEY_CHARS:
                name = "hmac_secret" if secret == self.hmac_secret else "hmac_keys"
                which = "" if name == "hmac_secret" else f"version {version}: "
                raise ConfigError(key(name), f"{which}must be at least 32 characters long")
        for name, low, high in (
            ("partitions", 1, 10_000),
            ("replication_factor", 1, 10),
            ("standby_replicas", 0, 10),
            ("web_port", 0, 65535),
            ("ops_port", 0, 65535),
            ("api_rate_burst", 1, 1_000_000),
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
        if self.broker_request_timeout_s < self.session_timeout_s:  # Faust refuses it so
            raise ConfigError(key("broker_request_timeout_s"), "must be >= session_timeout_s")
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


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
            if name == "hmac_secret" and _names_version_1(values.get("hmac_keys", "")):
                continue  # the key set names its own version 1
            values.setdefault(name, value)
    settings = replace(Settings(), **values)
    settings.check()
    return settings


def _values(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = environ.get(key(f.name))
        if f.name in FILE_FIELDS and environ.get(key(f.name) + FILE_SUFFIX) is not None:
            if raw is not None:
                raise ConfigError(
                    key(f.name) + FILE_SUFFIX, f"set {key(f.name)} or {key(f.name)}_FILE, not both"
                )
            raw = read_secret_file(key(f.name) + FILE_SUFFIX, environ[key(f.name) + FILE_SUFFIX])
            values[f.name] = raw  # verbatim: a secret's spaces are part of it
            continue
        if raw is not None:
            values[f.name] = _parse(f.name, str(f.type), raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def _names_version_1(hmac_keys: str) -> bool:
    entries = hmac_keys.replace("\n", ",").split(",")
    return any(e.strip().lower().startswith("v1:") for e in entries)


def read_secret_file(setting: str, path: str) -> str:
    """A secret from a file (a Docker or Kubernetes secret): its text without one trailing
    newline; a file that cannot be read stops start-up naming the setting."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(setting, f"{path!r} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(setting, f"{path!r} is not UTF-8 text") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def load_client_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings of a Kafka client tool (simulate, dlq replay): the worker's TOUCHSTREAM_KAFKA_*
    settings, checked as a client needs them; worker-only settings (the HMAC secret, Redis)
    are neither required nor checked."""
    environ = os.environ if environ is None else environ
    settings = replace(Settings(), **_values(environ, overrides))
    settings.check_kafka()
    return settings


def load_redis_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings of a Redis client tool (``touchstream tokens``): the worker's
    TOUCHSTREAM_REDIS_* settings; the HMAC secret and Kafka are neither required nor checked."""
    environ = os.environ if environ is None else environ
    settings = replace(Settings(), **_values(environ, overrides))
    parts = urlsplit(settings.redis_url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(key("redis_url"), "expected redis://HOST:PORT/DB or rediss://...")
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
