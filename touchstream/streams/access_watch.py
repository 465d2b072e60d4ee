"""A running worker's Kafka access: not ready, with a metric, while the broker refuses its
login or a permission, and ready again once they are back; never a crash or restart loop.

What the clients do on their own (aiokafka 0.14, faust-streaming 0.15.3):
- a revoked READ on a topic: the fetcher hands ``TopicAuthorizationFailedError`` to whoever
  reads records, Faust's fetcher task dies with it (``streams.delivery.drain`` backs off).
- a revoked READ on the group: the heartbeat gets GROUP_AUTHORIZATION_FAILED and aiokafka
  parks the error until the consumer's ``getmany``/``commit`` raises it; Faust reads records
  past ``getmany`` (``fetched_records``), so only its commit raises it, and Faust crashes the
  worker on any commit error (``AIOKafkaConsumerThread._commit``). The transport
  (``streams.transport``) takes the error, requests a rejoin and backs off.
- a revoked WRITE: the producer's batches fail; ``streams.outbox`` retries them.
- a rotated password: connections already authenticated stay up until the broker's
  ``connections.max.reauth.ms`` ends their session (aiokafka does not re-authenticate,
  KIP-368); reconnecting then fails, and aiokafka retries quietly for ever.

None of these shows on /readyz by itself, so the watch asks the broker every
``kafka_access_check_s`` with a fresh login (``kafka_access.check_access``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from touchstream import metrics
from touchstream.config.settings import Settings
from touchstream.streams.kafka_access import (
    BrokerUnreachable,
    Denied,
    LoginRefused,
    Need,
    check_access,
)

log = logging.getLogger(__name__)


class AccessWatch:
    def __init__(self, settings: Settings, needs: Callable[[], Sequence[Need]]) -> None:
        self._settings = settings
        self._needs = needs
        self._check_problem: str | None = None
        self._consumer_problem: str | None = None
        self._consumer_at = 0.0
        self._shown: set[tuple[str, str]] = set()

    @property
    def problem(self) -> str | None:
        """Why the worker may not work now (None: nothing refused)."""
        return self._check_problem or self._consumer_problem

    def refused(self, request: str, exc: BaseException) -> None:
        """The consumer met an authorization error and backs off (may run in its thread)."""
        metrics.KAFKA_AUTHORIZATION_ERRORS.labels(request).inc()
        self._consumer_problem = f"the broker refused {request}: {exc}"
        self._consumer_at = time.monotonic()

    async def check(self) -> None:
        if self._settings.kafka_security_protocol == "PLAINTEXT":
            return
        try:
            denied = await check_access(self._settings, self._needs())
        except LoginRefused as exc:
            metrics.KAFKA_AUTH_FAILURES.inc()
            self._show({("LOGIN", "broker")})
            self._set(str(exc))
            return
        except BrokerUnreachable:
            return  # Faust's own retries and the lag tell this story
        except Exception as exc:  # a check that cannot run must not stop the worker
            log.warning("Kafka access check failed: %r", exc)
            return
        self._show({(d.need.operation, d.need.resource) for d in denied})
        self._set(self._describe(denied))
        # a consumer error older than a whole check is over once the check passes
        if time.monotonic() - self._consumer_at > self._settings.kafka_access_check_s:
            self._consumer_problem = None

    def _describe(self, denied: Sequence[Denied]) -> str | None:
        if not denied:
            return None
        more = f" ({len(denied) - 1} more denied)" if len(denied) > 1 else ""
        return denied[0].line(self._settings.bootstrap_servers()) + more

    def _set(self, problem: str | None) -> None:
        if problem != self._check_problem:
            if problem:
                log.error("Kafka access refused, not ready until it is back: %s", problem)
            else:
                log.info("Kafka access is back")
        self._check_problem = problem

    def _show(self, labels: set[tuple[str, str]]) -> None:
        for gone in self._shown - labels:
            metrics.KAFKA_ACCESS_DENIED.labels(*gone).set(0)
        for label in labels:
            metrics.KAFKA_ACCESS_DENIED.labels(*label).set(1)
        self._shown |= labels
