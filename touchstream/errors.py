"""One exception root for Touchstream.

Poison errors describe an input that can never succeed: it goes to the DLQ with its reason.
Retryable errors describe a dependency that may recover: the caller retries with backoff.
"""

from __future__ import annotations


class TouchstreamError(Exception):
    """Root of every error Touchstream raises on purpose."""


class ConfigError(TouchstreamError):
    """A setting or rule is invalid; start-up stops naming the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class TopicError(ConfigError):
    """A topic the worker owns is missing or set up so that the worker would be wrong
    (streams/topic_specs.py says which differences); start-up stops naming the topic."""

    def __init__(self, topic: str, problem: str) -> None:
        super().__init__(f"topic {topic}", problem)
        self.topic = topic


class TriggerCatalogError(TouchstreamError):
    """A trigger type is undeclared, declared twice or declared without a resolvable check
    (domain/trigger_catalog.py); raised at start-up, or by a capability proposing it."""


class AccessDenied(TouchstreamError):
    """The broker denies the worker a permission it needs; the message names the principal,
    the operation, the resource and the ``kafka-acls`` command granting it."""


class PoisonEvent(TouchstreamError):
    """An inbound record that no retry can fix; it goes to the DLQ."""

    reason = "poison"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidUtf8(PoisonEvent):
    reason = "invalid_utf8"


class InvalidJson(PoisonEvent):
    reason = "invalid_json"


class TooLarge(PoisonEvent):
    reason = "too_large"


class UnknownType(PoisonEvent):
    reason = "unknown_type"


class UnsupportedVersion(PoisonEvent):
    reason = "unsupported_version"


class SchemaViolation(PoisonEvent):
    reason = "schema_violation"


class UnsupportedCurrency(PoisonEvent):
    reason = "unsupported_currency"


class PrivilegedOnPublicInput(PoisonEvent):
    """An erasure, access, redemption or consent grant on the ordinary input topic."""

    reason = "privileged_command_on_public_input"


class RetryableError(TouchstreamError):
    """A transient failure of a dependency; retried with backoff, never dropped."""


class RedisUnavailable(RetryableError):
    pass


class OutputLost(TouchstreamError):
    """The broker refused a batch of output records: their input must be processed again."""
