"""Runtime settings from TOUCHSTREAM_* variables: parsed, validated at start-up naming the
variable, insecure production set-ups refused, and secrets never shown."""

import pytest

from touchstream.config.settings import DEV_HMAC_SECRET, Settings, load_settings
from touchstream.errors import ConfigError

SECRET = "prod-hmac-secret-0123456789abcdef-XYZ"
SASL_PASSWORD = "sasl-pa55word-QWERTY"
REDIS_PASSWORD = "redis-pa55word-ASDFGH"
DEV = {"TOUCHSTREAM_ENV": "development"}
SECURE_PRODUCTION = {
    "TOUCHSTREAM_ENV": "production",
    "TOUCHSTREAM_HMAC_SECRET": SECRET,
    "TOUCHSTREAM_BROKER": "kafka://kafka-1.internal:9093,kafka://kafka-2.internal:9093",
    "TOUCHSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "TOUCHSTREAM_KAFKA_SASL_USERNAME": "touchstream",
    "TOUCHSTREAM_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
    "TOUCHSTREAM_REDIS_URL": "rediss://redis.internal:6380/0",
}


def refused(environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    return error.value


def test_development_runs_with_no_other_setting():
    settings = load_settings(DEV)

    assert settings.development
    assert settings.hmac_secret == DEV_HMAC_SECRET
    assert settings.broker == "kafka://127.0.0.1:9092"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.partitions == 8
    assert settings.max_event_bytes == 64 * 1024
    # a fresh consumer group on the dev broker waits half the session timeout before assignment
    assert settings.session_timeout_s == 6.0
    assert settings.heartbeat_interval_s < settings.session_timeout_s


def test_explicit_values_beat_development_defaults():
    settings = load_settings({**DEV, "TOUCHSTREAM_SESSION_TIMEOUT_S": "10"})

    assert settings.session_timeout_s == 10.0


def test_ints_floats_bools_and_strings_are_parsed():
    settings = load_settings(
        {
            **DEV,
            "TOUCHSTREAM_PARTITIONS": " 12 ",
            "TOUCHSTREAM_WEB_PORT": "8080",
            "TOUCHSTREAM_IDLE_FALLBACK_S": "2.5",
            "TOUCHSTREAM_ALLOW_PLAINTEXT": "true",
            "TOUCHSTREAM_TOPIC_PREFIX": "shop1.",
            "TOUCHSTREAM_STORE": "rocksdb",
        }
    )

    assert settings.partitions == 12
    assert settings.web_port == 8080
    assert settings.idle_fallback_s == 2.5
    assert settings.allow_plaintext is True
    assert settings.topic("touchpoints") == "shop1.touchpoints"
    assert settings.store == "rocksdb"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("1", True),
        ("YES", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("No", False),
        ("off", False),
    ],
)
def test_bool_spellings(raw, expected):
    settings = load_settings({**DEV, "TOUCHSTREAM_ALLOW_PLAINTEXT": raw})

    assert settings.allow_plaintext is expected


def test_bootstrap_servers_drop_the_scheme():
    settings = load_settings({**DEV, "TOUCHSTREAM_BROKER": "kafka://a:9092,kafka://b:9093"})

    assert settings.bootstrap_servers() == "a:9092,b:9093"


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TOUCHSTREAM_PARTITIONS", "eight"),
        ("TOUCHSTREAM_PARTITIONS", "8.5"),
        ("TOUCHSTREAM_PARTITIONS", "0"),
        ("TOUCHSTREAM_WEB_PORT", "70000"),
        ("TOUCHSTREAM_SESSION_TIMEOUT_S", "soon"),
        ("TOUCHSTREAM_IDLE_FALLBACK_S", "0"),
        ("TOUCHSTREAM_ALLOW_PLAINTEXT", "maybe"),
        ("TOUCHSTREAM_ENV", "staging"),
        ("TOUCHSTREAM_STORE", "postgres"),
        ("TOUCHSTREAM_LOG_LEVEL", "verbose"),
        ("TOUCHSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("TOUCHSTREAM_MAX_EVENT_BYTES", "10"),
        ("TOUCHSTREAM_ROCKSDB_MEMORY_MB", "16"),
        ("TOUCHSTREAM_STATE_CACHE_ENTRIES", "-1"),
    ],
)
def test_bad_value_names_its_variable(name, raw):
    assert refused({**DEV, name: raw}).key == name


def test_topic_retentions_default_to_a_week_and_erasure_to_a_day():
    settings = load_settings(DEV)

    assert settings.dlq_retention_hours == 7 * 24
    assert settings.input_retention_hours == 7 * 24
    assert settings.output_retention_hours == 7 * 24
    assert settings.changelog_compaction_lag_hours == 24


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        # the privacy promise: rejected events' raw identifiers and erased state go within 30 days
        ("TOUCHSTREAM_DLQ_RETENTION_HOURS", str(31 * 24)),
        ("TOUCHSTREAM_CHANGELOG_COMPACTION_LAG_HOURS", str(31 * 24)),
        ("TOUCHSTREAM_DLQ_RETENTION_HOURS", "0"),
        ("TOUCHSTREAM_OUTPUT_RETENTION_HOURS", "0"),
        ("TOUCHSTREAM_INPUT_RETENTION_HOURS", "a week"),
    ],
)
def test_topic_retention_out_of_bounds_is_refused_naming_it(name, raw):
    assert refused({**DEV, name: raw}).key == name


def test_heartbeat_must_be_below_session_timeout():
    error = refused({**DEV, "TOUCHSTREAM_HEARTBEAT_INTERVAL_S": "6"})

    assert error.key == "TOUCHSTREAM_HEARTBEAT_INTERVAL_S"


def test_the_broker_request_timeout_may_not_be_below_the_session_timeout():
    """Faust refuses it at start-up with its own wording: named here instead."""
    error = refused({**DEV, "TOUCHSTREAM_BROKER_REQUEST_TIMEOUT_S": "5"})  # dev session: 6 s
    assert error.key == "TOUCHSTREAM_BROKER_REQUEST_TIMEOUT_S"
    assert "session_timeout_s" in str(error)
    assert load_settings({**DEV, "TOUCHSTREAM_BROKER_REQUEST_TIMEOUT_S": "6"})


@pytest.mark.parametrize(
    "broker",
    [
        "kafka://localhost",
        "http://localhost:9092",
        "kafka://:9092",
        "kafka://localhost:port",
        "kafka://a:9092,",
    ],
)
def test_malformed_broker_is_refused(broker):
    error = refused({**DEV, "TOUCHSTREAM_BROKER": broker})

    assert error.key == "TOUCHSTREAM_BROKER"


@pytest.mark.parametrize("broker", ["localhost:9092", "kafka://a:9092, kafka://b:9092"])
def test_broker_without_scheme_or_with_spaces_is_accepted(broker):
    assert load_settings({**DEV, "TOUCHSTREAM_BROKER": broker}).broker == broker


@pytest.mark.parametrize(
    "url",
    ["http://localhost:6379/0", "localhost:6379", "redis://", "redis://localhost:abc/0"],
)
def test_bad_redis_url_is_refused(url):
    assert refused({**DEV, "TOUCHSTREAM_REDIS_URL": url}).key == "TOUCHSTREAM_REDIS_URL"


def test_secure_production_is_accepted():
    settings = load_settings(SECURE_PRODUCTION)

    assert not settings.development
    assert settings.secure_kafka and settings.secure_redis


def test_production_is_the_default_environment_and_needs_a_secret():
    assert refused({}).key == "TOUCHSTREAM_HMAC_SECRET"


def test_production_without_hmac_secret_is_refused():
    environ = {k: v for k, v in SECURE_PRODUCTION.items() if k != "TOUCHSTREAM_HMAC_SECRET"}

    assert refused(environ).key == "TOUCHSTREAM_HMAC_SECRET"


def test_production_with_the_development_secret_is_refused():
    error = refused({**SECURE_PRODUCTION, "TOUCHSTREAM_HMAC_SECRET": DEV_HMAC_SECRET})

    assert error.key == "TOUCHSTREAM_HMAC_SECRET"


def test_short_hmac_secret_is_refused():
    error = refused({**SECURE_PRODUCTION, "TOUCHSTREAM_HMAC_SECRET": "short-secret"})

    assert error.key == "TOUCHSTREAM_HMAC_SECRET"


def test_production_plaintext_kafka_is_refused():
    environ = {
        **SECURE_PRODUCTION,
        "TOUCHSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    }

    error = refused(environ)

    assert error.key == "TOUCHSTREAM_KAFKA_SECURITY_PROTOCOL"
    assert "TOUCHSTREAM_ALLOW_PLAINTEXT" in error.problem


def test_production_plaintext_redis_is_refused_naming_the_redis_url():
    error = refused({**SECURE_PRODUCTION, "TOUCHSTREAM_REDIS_URL": "redis://redis.internal:6379/0"})

    assert error.key == "TOUCHSTREAM_REDIS_URL"


def test_production_plaintext_allowed_on_explicit_opt_in():
    environ = {
        "TOUCHSTREAM_ENV": "production",
        "TOUCHSTREAM_HMAC_SECRET": SECRET,
        "TOUCHSTREAM_ALLOW_PLAINTEXT": "true",
    }

    settings = load_settings(environ)

    assert settings.allow_plaintext
    assert not settings.secure_kafka


def test_production_plaintext_opt_in_must_be_true():
    environ = {
        "TOUCHSTREAM_ENV": "production",
        "TOUCHSTREAM_HMAC_SECRET": SECRET,
        "TOUCHSTREAM_ALLOW_PLAINTEXT": "false",
    }

    assert refused(environ).key == "TOUCHSTREAM_KAFKA_SECURITY_PROTOCOL"


def test_sasl_without_password_names_the_password():
    environ = {k: v for k, v in SECURE_PRODUCTION.items() if k != "TOUCHSTREAM_KAFKA_SASL_PASSWORD"}

    assert refused(environ).key == "TOUCHSTREAM_KAFKA_SASL_PASSWORD"


def test_sasl_without_username_names_the_username():
    environ = {k: v for k, v in SECURE_PRODUCTION.items() if k != "TOUCHSTREAM_KAFKA_SASL_USERNAME"}

    assert refused(environ).key == "TOUCHSTREAM_KAFKA_SASL_USERNAME"


def test_unknown_sasl_mechanism_is_refused():
    error = refused({**SECURE_PRODUCTION, "TOUCHSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI"})

    assert error.key == "TOUCHSTREAM_KAFKA_SASL_MECHANISM"


def test_config_error_message_starts_with_the_variable():
    with pytest.raises(ConfigError) as error:
        load_settings({**DEV, "TOUCHSTREAM_PARTITIONS": "many"})

    assert str(error.value).startswith("TOUCHSTREAM_PARTITIONS: ")
    assert "'many'" in str(error.value)


@pytest.mark.parametrize("show", [repr, str, lambda s: f"{s}", lambda s: repr([s])])
def test_secrets_never_appear_when_settings_are_printed(show):
    settings = load_settings(
        {
            **SECURE_PRODUCTION,
            "TOUCHSTREAM_REDIS_URL": f"rediss://touchstream:{REDIS_PASSWORD}@redis.internal:6380/0",
            "TOUCHSTREAM_REDIS_PASSWORD": REDIS_PASSWORD + "-acl",
        }
    )

    text = show(settings)

    for secret in (SECRET, SASL_PASSWORD, REDIS_PASSWORD):
        assert secret not in text
    assert "redis.internal:6380" in text  # the rest stays readable for debugging


def test_printed_settings_still_show_non_secret_values():
    text = repr(load_settings({**DEV, "TOUCHSTREAM_PARTITIONS": "3"}))

    assert "partitions=3" in text
    assert DEV_HMAC_SECRET not in text


def test_empty_secrets_are_shown_as_empty():
    # an operator debugging a missing password must see that it is missing
    text = repr(Settings(env="development"))

    assert "kafka_sasl_password=''" in text


def test_the_clock_skew_defaults_to_five_minutes_and_is_bounded_naming_it():
    assert load_settings(DEV).max_clock_skew_s == 300
    assert load_settings({**DEV, "TOUCHSTREAM_MAX_CLOCK_SKEW_S": "0"}).max_clock_skew_s == 0
    for raw in ("-1", "86401"):
        error = refused({**DEV, "TOUCHSTREAM_MAX_CLOCK_SKEW_S": raw})
        assert "TOUCHSTREAM_MAX_CLOCK_SKEW_S" in str(error)


# -- the customer API (issue 28) ---------------------------------------------------------------


def test_production_refuses_customer_data_on_a_public_address_without_authentication():
    error = refused(
        {**SECURE_PRODUCTION, "TOUCHSTREAM_WEB_HOST": "0.0.0.0", "TOUCHSTREAM_API_AUTH": "none"}
    )

    assert error.key == "TOUCHSTREAM_API_AUTH"
    assert "without authentication" in error.problem and "0.0.0.0" in error.problem


@pytest.mark.parametrize(
    ("env", "host", "auth"),
    [
        ("production", "127.0.0.1", "none"),  # loopback: a sidecar in front of it
        ("production", "0.0.0.0", "token"),  # the default
        ("development", "0.0.0.0", "none"),
    ],
)
def test_customer_api_without_tokens_only_on_loopback_or_in_development(env, host, auth):
    environ = {
        **SECURE_PRODUCTION,
        "TOUCHSTREAM_ENV": env,
        "TOUCHSTREAM_WEB_HOST": host,
        "TOUCHSTREAM_API_AUTH": auth,
    }

    settings = load_settings(environ)

    assert (settings.web_host, settings.api_auth) == (host, auth)


def test_the_customer_api_defaults_to_tokens_on_its_own_port():
    settings = Settings()

    assert settings.api_auth == "token"
    assert settings.web_port != settings.ops_port
    assert refused({**SECURE_PRODUCTION, "TOUCHSTREAM_OPS_PORT": "6066"}).key == (
        "TOUCHSTREAM_OPS_PORT"
    )


def test_mutual_tls_needs_the_server_certificate():
    error = refused({**SECURE_PRODUCTION, "TOUCHSTREAM_API_SSL_CAFILE": "/etc/ts/clients-ca.pem"})

    assert error.key == "TOUCHSTREAM_API_SSL_CAFILE"
