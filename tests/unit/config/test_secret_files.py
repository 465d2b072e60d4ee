"""Secrets from files and the versioned HMAC key set (issue 28): every secret setting X can be
read from the file X_FILE names (a Docker or Kubernetes secret), never both; the key set names
each key's version and the old single secret keeps working as version 1."""

import pytest

from tests.commands import run_touchstream
from touchstream.config.settings import load_settings
from touchstream.errors import ConfigError

SECRET = "prod-hmac-secret-0123456789abcdef-XYZ"
NEW_KEY = "new-hmac-key-after-rotation-0123456789"
PRODUCTION = {
    "TOUCHSTREAM_ENV": "production",
    "TOUCHSTREAM_BROKER": "kafka://kafka-1.internal:9093",
    "TOUCHSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "TOUCHSTREAM_KAFKA_SASL_USERNAME": "touchstream",
    "TOUCHSTREAM_KAFKA_SASL_PASSWORD": "sasl-pa55word-QWERTY",
    "TOUCHSTREAM_REDIS_URL": "rediss://redis.internal:6380/0",
    "TOUCHSTREAM_HMAC_SECRET": SECRET,
}
SECRETS = [
    ("TOUCHSTREAM_HMAC_SECRET", "hmac_secret", SECRET),
    ("TOUCHSTREAM_HMAC_KEYS", "hmac_keys", f"v2:{NEW_KEY}"),
    ("TOUCHSTREAM_KAFKA_SASL_PASSWORD", "kafka_sasl_password", "pa55 with spaces "),
    ("TOUCHSTREAM_KAFKA_SSL_KEY_PASSWORD", "kafka_ssl_key_password", "key-pa55"),
    ("TOUCHSTREAM_REDIS_PASSWORD", "redis_password", "redis-pa55"),
    ("TOUCHSTREAM_REDIS_URL", "redis_url", "rediss://:pw@redis.internal:6380/0"),
]


@pytest.mark.parametrize(("name", "field", "value"), SECRETS)
def test_every_secret_is_read_from_its_file_without_the_trailing_newline(
    tmp_path, name, field, value
):
    path = tmp_path / "secret"
    path.write_text(value + "\n")
    environ = {k: v for k, v in PRODUCTION.items() if k != name}

    settings = load_settings({**environ, f"{name}_FILE": str(path)})

    assert getattr(settings, field) == value


def test_only_one_trailing_newline_is_stripped(tmp_path):
    path = tmp_path / "password"
    path.write_text("pa55\n\n")

    settings = load_settings({**PRODUCTION, "TOUCHSTREAM_REDIS_PASSWORD_FILE": str(path)})

    assert settings.redis_password == "pa55\n"


@pytest.mark.parametrize(("name", "field", "value"), SECRETS)
def test_a_secret_and_its_file_together_are_refused(tmp_path, name, field, value):
    path = tmp_path / "secret"
    path.write_text(value)

    with pytest.raises(ConfigError) as error:
        load_settings({**PRODUCTION, name: value, f"{name}_FILE": str(path)})

    assert error.value.key == f"{name}_FILE"
    assert "not both" in str(error.value)


def test_a_secret_file_that_cannot_be_read_names_the_setting(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_settings({**PRODUCTION, "TOUCHSTREAM_REDIS_PASSWORD_FILE": str(tmp_path / "missing")})

    assert error.value.key == "TOUCHSTREAM_REDIS_PASSWORD_FILE"


def test_a_secret_read_from_a_file_is_not_shown(tmp_path):
    path = tmp_path / "password"
    path.write_text("do-not-print-me\n")

    settings = load_settings({**PRODUCTION, "TOUCHSTREAM_REDIS_PASSWORD_FILE": str(path)})

    assert settings.redis_password == "do-not-print-me"
    assert "do-not-print-me" not in repr(settings)


def test_the_worker_stops_with_one_line_when_both_are_set(tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET)
    env = {**PRODUCTION, "TOUCHSTREAM_HMAC_SECRET_FILE": str(path), "PATH": "/usr/bin:/bin"}

    result = run_touchstream("worker", env=env, timeout_s=60)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "TOUCHSTREAM_HMAC_SECRET_FILE" in lines[0] and "not both" in lines[0]


def test_the_single_secret_is_version_1_of_the_key_set():
    assert load_settings(PRODUCTION).hmac_key_set() == {1: SECRET}


def test_a_key_set_names_each_key_with_its_version():
    environ = {k: v for k, v in PRODUCTION.items() if k != "TOUCHSTREAM_HMAC_SECRET"}

    settings = load_settings({**environ, "TOUCHSTREAM_HMAC_KEYS": f"v2:{NEW_KEY},v1:{SECRET}"})

    assert settings.hmac_key_set() == {1: SECRET, 2: NEW_KEY}
    assert NEW_KEY not in repr(settings)


def test_a_new_key_is_added_beside_the_single_secret():
    settings = load_settings({**PRODUCTION, "TOUCHSTREAM_HMAC_KEYS": f"v2:{NEW_KEY}"})

    assert settings.hmac_key_set() == {1: SECRET, 2: NEW_KEY}


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (f"v3:{NEW_KEY}", "without gaps"),
        (f"v1:{NEW_KEY}", "version 1"),
        (f"2:{NEW_KEY}", "expected v<version>"),
        ("v2:short", "at least 32"),
        (f"v2:{NEW_KEY},v2:{NEW_KEY}", "twice"),
    ],
)
def test_a_wrong_key_set_is_refused_naming_it(keys, problem):
    with pytest.raises(ConfigError) as error:
        load_settings({**PRODUCTION, "TOUCHSTREAM_HMAC_KEYS": keys})

    assert error.value.key == "TOUCHSTREAM_HMAC_KEYS"
    assert problem in str(error.value)
