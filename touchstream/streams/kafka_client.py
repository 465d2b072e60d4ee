"""aiokafka connection settings from one Settings: the worker, its checks and the CLI tools
(simulate, dlq replay, kafka_io) log in the same way with the same TOUCHSTREAM_KAFKA_* keys."""

from __future__ import annotations

import ssl
from typing import Any

from touchstream.config.settings import Settings, key
from touchstream.errors import ConfigError


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL; a file that cannot be read stops start-up naming
    its key rather than with a traceback from deep inside the ssl module."""
    if not settings.secure_kafka:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(key("kafka_ssl_cafile"), f"cannot load the CA file: {exc}") from None
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(
                settings.kafka_ssl_certfile,
                settings.kafka_ssl_keyfile or None,
                settings.kafka_ssl_key_password or None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                key("kafka_ssl_certfile"), f"cannot load the client certificate and key: {exc}"
            ) from None
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient for
    the brokers and the login the settings name."""
    return {"bootstrap_servers": settings.bootstrap_servers(), **security_kwargs(settings)}


def security_kwargs(settings: Settings | None) -> dict[str, Any]:
    """The login part of ``client_kwargs`` (also what ``aiokafka.conn.create_conn`` takes);
    None: plaintext, for the tests' and the demo's unsecured brokers."""
    if settings is None:
        return {}
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if settings.secure_kafka:
        kwargs["ssl_context"] = kafka_ssl_context(settings)
    if protocol.startswith("SASL"):
        kwargs |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    return kwargs
