"""The production entry point: one Faust worker configured from env + rules file."""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import sys
from pathlib import Path

import faust
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError

from touchstream.config.rules import Rules
from touchstream.config.settings import Settings, key
from touchstream.errors import ConfigError
from touchstream.streams.topic_admin import prepare_topics
from touchstream.streams.topology import Topology, kafka_ssl_context

BROKER_CHECK_TIMEOUT_MS = 10_000
# CPython collects its youngest generation every 700 allocations; a worker allocates a few
# hundred objects per event (decoded records, states, output), most of them freed by reference
# counting within the batch. Collecting every 50,000 instead leaves those to reference counting
# and scans the survivors far less often (issue 10: the collector was about a quarter of the
# pure core's time replayed offline).
GC_THRESHOLDS = (50_000, 20, 100)


def run_worker(settings: Settings, rules: Rules) -> None:
    logging.getLogger("touchstream").info("starting worker with %r", settings)
    check_broker_login(settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    topology = Topology(settings, rules)
    # before Faust declares its topics with the broker's defaults (streams/topic_admin.py)
    prepare_topics(settings, topology.topic_specs())
    worker = faust.Worker(
        topology.app,
        loglevel=settings.log_level.upper(),
        stdout=sys.stdout,
        stderr=sys.stderr,
    )
    # Faust's terminal spinner, kept at WARNING and above, sets the root logger to DEBUG, so
    # every debug call of aiokafka and Faust builds a log record: ~10% of a busy worker's CPU
    # (py-spy, issue 10). The worker is a service; nothing watches a spinner.
    worker.spinner = None
    tune_gc()
    worker.execute_from_commandline()


def tune_gc() -> None:
    """Fewer collections, and none of what start-up built (modules, the app, its services),
    which lives as long as the process and would be scanned by every full collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def check_broker_login(settings: Settings) -> None:
    """Refuse to start, naming the setting, when the broker rejects our TLS or SASL login.

    Faust retries a refused login forever or dies with the SASL library's internals (a SCRAM
    server error surfaces as ``KeyError('v')``), so the operator never learns which setting is
    wrong. An unreachable broker is left to Faust's own retries: it may come up later.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    loop = asyncio.new_event_loop()  # not set as current: Faust makes its own loop afterwards
    try:
        loop.run_until_complete(_login_once(settings))
    finally:
        loop.close()


async def _login_once(settings: Settings) -> None:
    sasl = settings.kafka_security_protocol.startswith("SASL")
    for host_port in settings.bootstrap_servers().split(","):
        host, _, port = host_port.rpartition(":")
        try:
            conn = await create_conn(
                host,
                int(port),
                request_timeout_ms=BROKER_CHECK_TIMEOUT_MS,
                ssl_context=kafka_ssl_context(settings),
                security_protocol=settings.kafka_security_protocol,
                sasl_mechanism=settings.kafka_sasl_mechanism if sasl else None,
                sasl_plain_username=settings.kafka_sasl_username or None,
                sasl_plain_password=settings.kafka_sasl_password or None,
            )
        except ssl.SSLError as exc:
            raise ConfigError(
                key("kafka_ssl_cafile"), f"TLS with the broker at {host_port} failed: {exc}"
            ) from None
        except (TimeoutError, OSError, KafkaConnectionError):
            continue
        except Exception as exc:
            if not sasl:
                raise
            raise ConfigError(
                key("kafka_sasl_password"),
                f"the broker at {host_port} refused {settings.kafka_sasl_mechanism} login"
                f" of {key('kafka_sasl_username')}={settings.kafka_sasl_username!r}"
                f" ({type(exc).__name__}: {exc})",
            ) from None
        conn.close()
        return
