"""The production entry point: one Faust worker configured from env + rules file."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import sys
from pathlib import Path

import faust

from touchstream.config.rules import Rules
from touchstream.config.settings import Settings, key
from touchstream.errors import AccessDenied, ConfigError
from touchstream.streams.kafka_access import BrokerUnreachable, LoginRefused, check_access
from touchstream.streams.topic_admin import prepare_topics, read_size_limits_now
from touchstream.streams.topology import Topology

# CPython collects its youngest generation every 700 allocations; a worker allocates a few
# hundred objects per event (decoded records, states, output), most of them freed by reference
# counting within the batch. Collecting every 50,000 instead leaves those to reference counting
# and scans the survivors far less often (issue 10: the collector was about a quarter of the
# pure core's time replayed offline).
GC_THRESHOLDS = (50_000, 20, 100)
# present in the data directory while a worker runs; removed when it stops cleanly
RUNNING_MARKER = "touchstream.running"

log = logging.getLogger(__name__)


def run_worker(settings: Settings, rules: Rules) -> None:
    logging.getLogger("touchstream").info("starting worker with %r", settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    topology = Topology(settings, rules)
    preflight(settings, topology)
    # before Faust declares its topics with the broker's defaults (streams/topic_admin.py)
    prepare_topics(settings, topology.topic_specs())
    limits = topology.outbox.limits  # every output record is checked against them
    limits.update(read_size_limits_now(settings, limits.watched))
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
    marker = discard_unclean_state(settings, Path(topology.app.conf.tabledir))
    clean = False
    try:
        worker.execute_from_commandline()
        clean = True
    except SystemExit as exc:
        clean = not exc.code
        raise
    finally:
        if clean:
            marker.unlink(missing_ok=True)


def discard_unclean_state(settings: Settings, tabledir: Path) -> Path:
    """RocksDB's local tables are written when a batch's states are stored, their changelog
    records only with the outbox's next flush: a worker killed in between leaves local state
    ahead of its changelog (and of its committed input offsets, so the records replayed would
    then be skipped as duplicates and never reach the changelog). A worker that did not stop
    cleanly (its marker is still there) reads its tables from the changelog again instead,
    as Kafka Streams wipes a store after an unclean shutdown. Returns the marker, now set."""
    marker = Path(settings.data_dir) / RUNNING_MARKER
    if settings.store == "rocksdb" and marker.exists() and tabledir.exists():
        log.warning(
            "unclean shutdown found (%s): local tables discarded, recovering from the changelogs",
            marker,
        )
        shutil.rmtree(tabledir)
    marker.touch()
    return marker


def tune_gc() -> None:
    """Fewer collections, and none of what start-up built (modules, the app, its services),
    which lives as long as the process and would be scanned by every full collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def preflight(settings: Settings, topology: Topology) -> None:
    """Refuse to start, in one line, when the broker refuses the worker's login or a
    permission it needs (docs/security.md lists them as ``kafka-acls`` commands).

    Without it Faust retries a refused login for ever or dies with the SASL library's
    internals (a SCRAM server error surfaces as ``KeyError('v')``), and a missing ACL crashes
    it mid-start with a traceback naming neither the principal nor the resource. An
    unreachable broker is left to Faust's own retries: it may come up later. PLAINTEXT is
    not checked: a broker without authentication normally has no authorizer either.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    # a missing topic this worker may not create is the topic step's to report, with the
    # settings an operator must create it with (streams/topic_admin.py)
    needs = [n for n in topology.access_needs() if n.operation != "CREATE"]
    loop = asyncio.new_event_loop()  # not set as current: Faust makes its own loop afterwards
    try:
        denied = loop.run_until_complete(check_access(settings, needs))
    except LoginRefused as exc:
        raise ConfigError(key("kafka_sasl_password"), str(exc).split(": ", 1)[1]) from None
    except BrokerUnreachable:
        return
    finally:
        loop.close()
    if denied:
        more = f" ({len(denied) - 1} more denied)" if len(denied) > 1 else ""
        raise AccessDenied(denied[0].line(settings.bootstrap_servers()) + more)
