"""Builds the Faust app: topics, tables and agents, wired from one Settings and one Rules.

touchpoints ──ingest──┬──> touchpoints.dlq                (poison, with reason; privileged
touchpoints.privileged┘                                     commands on touchpoints too)
                      └──> touchstream.customer-events    (keyed by the home of the event's
                               │      ^                    strongest identifier)
                               │      └── merge / absorb / fold / forwarded records
                           customer stage  (customers table, domain.linking + domain.apply)
                               ├──> profiles.updates, profiles.merges, identity.refusals, ...
                               └──> Redis ts:profile:{customer_id}, ts:alias:{kind}:{value}
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from typing import Any

import faust
import orjson
from mode.utils.times import want_seconds
from redis.exceptions import RedisError

from touchstream import metrics
from touchstream.agents.customer import bury, make_customer_handler
from touchstream.agents.ingest import make_ingest_handler
from touchstream.agents.ports import CustomerPorts, IngestPorts, Output, Publishing
from touchstream.config.rules import Rules
from touchstream.config.settings import Settings
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.domain.profile import aliases, view
from touchstream.domain.records import Erased
from touchstream.domain.state import Stored
from touchstream.schemas.decode import load_validators
from touchstream.serving.api import CustomerApi
from touchstream.serving.http import Readiness, register_views
from touchstream.serving.keys import SYNC_MARKER
from touchstream.serving.redis_client import redis_client
from touchstream.serving.redis_sync import RedisSync
from touchstream.streams import topics
from touchstream.streams.access_watch import AccessWatch
from touchstream.streams.delivery import Routes, stream_agent
from touchstream.streams.isolation import Faults
from touchstream.streams.kafka_access import Need, worker_needs
from touchstream.streams.kafka_client import kafka_ssl_context
from touchstream.streams.outbox import Outbox
from touchstream.streams.recovery import TableManager
from touchstream.streams.size_limits import SizeLimits
from touchstream.streams.timer_index import TimerIndex, partition_for
from touchstream.streams.topic_admin import read_size_limits
from touchstream.streams.topic_identity import TopicIdentities
from touchstream.streams.topic_specs import Changelog, TopicSpec, topic_specs
from touchstream.streams.transport import transport_for
from touchstream.tables.activity import Activity
from touchstream.tables.changelog import OutboxTable
from touchstream.tables.customers import LiveStates, customers_table, decode_state
from touchstream.tables.ledger import Ledger

RESYNC_CHECK_S = 2.0
TICK_CHECK_S = 1.0
CONFIRM_CHECK_S = 0.2  # erasures Redis confirmed, sent on to the customer stage
MARKER_TTL_S = 7 * 24 * 3600  # a worker long gone leaves no marker behind
RECOVERY_CHECK_S = 0.5
# how often a refused heartbeat or join is taken from aiokafka, letting it try again
GROUP_ERRORS_CHECK_S = 1.0
LAG_CHECK_S = 0.25  # the gauge the bench waits on to call a worker settled
RESYNC_CHUNK = 1000  # profiles re-synced between two looks at the stages and the sync queue
TICK_KEY = b"~tick"  # not a customer id: ticks carry no customer
# How often the consumer refreshes its metadata (aiokafka's default: 5 minutes). An input topic
# deleted and created again leaves the group's assignment until the consumer's metadata lists
# it again: 30 s bounds that pause for one small request per worker (docs/operations.md).
CONSUMER_METADATA_MAX_AGE_MS = 30_000

log = logging.getLogger(__name__)


def broker_credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = kafka_ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )


def rocksdb_options(settings: Settings, tables: int) -> dict[str, int] | None:
    """RocksDB sizes keeping a worker's databases (one per table and partition) within
    ``rocksdb_memory_mb``: Faust's defaults give each database a 2 GiB block cache and three
    64 MiB write buffers, with no bound on their sum."""
    if settings.store != "rocksdb":
        return None
    per_db = settings.rocksdb_memory_mb * 2**20 // (tables * settings.partitions)
    return {
        "block_cache_size": per_db // 2,
        "block_cache_compressed_size": 0,
        "write_buffer_size": per_db // 4,
        "max_write_buffer_number": 2,
    }


class Topology:
    """Everything one worker runs, and the one module that wires it: each agent receives its
    ports (``agents.ports``), built here from the app's topics, tables, outbox and services."""

    def __init__(self, settings: Settings, rules: Rules) -> None:
        load_validators()
        self.settings = settings
        self.rules = rules
        normaliser = IdentityNormaliser(
            settings.hmac_key_set(),
            rules.identity.blocked_values,
            rules.identity.default_country_code,
        )
        self.normaliser = normaliser
        self.ingest = Ingest(rules.program, normaliser, settings.future_tolerance_s * 1000)
        store = "memory://" if settings.store == "memory" else "rocksdb://"
        self.app = faust.App(
            settings.app_id,
            broker=settings.broker,
            broker_credentials=broker_credentials(settings),
            store=store,
            datadir=settings.data_dir,
            autodiscover=False,
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            table_standby_replicas=settings.standby_replicas,
            broker_session_timeout=settings.session_timeout_s,
            broker_heartbeat_interval=settings.heartbeat_interval_s,
            broker_request_timeout=settings.broker_request_timeout_s,
            TableManager=TableManager,  # a recovery that times out stops the worker
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            # Faust's web server is the operations listener: /metrics, /healthz, /readyz only.
            # Its built-in /table views would serve customer state to anyone, /router and the
            # statistics the cluster's layout: all off (serving/http.py, serving/api.py)
            web_host=settings.ops_host,
            web_port=settings.ops_port,
            web_bind=settings.ops_host,
            web_enabled=True,
            web_tables_enabled=False,
            web_router_enabled=False,
            web_stats_enabled=False,
            web_graph_enabled=False,
            producer_acks=-1,
            producer_max_batch_size=settings.producer_max_batch_bytes,
            stream_buffer_maxsize=8192,
            broker_max_poll_records=2000,
            consumer_metadata_max_age_ms=CONSUMER_METADATA_MAX_AGE_MS,
            Table=OutboxTable,
        )
        self.routes = Routes()
        # input topics' identities for the per-customer stage's offset memory (domain.customer)
        self.topic_identities = TopicIdentities(settings)
        self.routes.restarted = self._input_restarted
        self.faults = Faults.parse(settings.faults)  # test only: None in a deployment
        self.app.transport = transport_for(
            self.app,
            settings.fetch_max_wait_ms,
            settings.bootstrap_servers(),
            settings.probe_end_offsets,
            self.routes,
            self.faults,
        )
        # every record is checked against its topic's limit when added (streams/size_limits.py)
        limits = SizeLimits(
            self.app.conf.producer_max_request_size,
            lambda names: read_size_limits(settings, names),
            prefix=settings.topic_prefix,
        )
        self.outbox = self.routes.outbox = Outbox(
            self.app, settings.topic(topics.DLQ), settings.topic_prefix, limits
        )
        self.access = AccessWatch(settings, self.access_needs)
        self.routes.refused = self.access.refused
        self.touchpoints = self._topic(topics.TOUCHPOINTS)
        self.privileged = self._topic(topics.PRIVILEGED)
        self.customer_events = self._topic(topics.CUSTOMER_EVENTS)
        self.dlq = self._topic(topics.DLQ)
        self.profiles_updates = self._topic(topics.PROFILES_UPDATES)
        self.outputs = {name: self._topic(name) for name in topics.OUTPUTS}
        self.profiles_merges = self.outputs[topics.PROFILES_MERGES]
        self.identity_refusals = self.outputs[topics.IDENTITY_REFUSALS]
        self.customers = customers_table(self.app, settings.partitions)
        self.live_states = LiveStates(settings.state_cache_entries)
        self.redis = redis_client(settings)
        self.activity = Activity(self.app, settings.partitions)
        self.ledger = Ledger(self.app, settings.partitions, self.rules.program.timezone)
        self.timers = TimerIndex(settings.max_clock_skew_s * 1000)
        self.timers.undo = self.outbox.undo  # one journal for a batch's side effects
        rocksdb = rocksdb_options(settings, len(self.app.tables))
        for table in self.app.tables.values():
            table.use_outbox(self.outbox)
            if rocksdb is not None:
                table.options = rocksdb  # read when the store opens, after start-up
        self.redis_sync = RedisSync(
            self.redis,
            settings.redis_flush_interval_ms / 1000,
            settings.redis_max_pending,
            settings.redis_tombstone_ttl_s,
        )
        self.redis_sync.undo = self.outbox.undo
        # a topic's full name made once (the settings are frozen): not a new string to build
        # and hash for every record sent
        self.output = Output(self.outbox.add, functools.cache(settings.topic))
        for topic, name, handler in (
            (self.touchpoints, "ingest", make_ingest_handler(self._ingest_ports(False))),
            (self.privileged, "ingest-privileged", make_ingest_handler(self._ingest_ports(True))),
            (self.customer_events, "customer", make_customer_handler(self._customer_ports())),
        ):
            self.routes.add(topic.get_topic_name(), handler)
            self.app.agent(topic, name=name)(stream_agent(handler, self.routes))
        limits.watched = self.written_topics()
        self.api = CustomerApi(settings, self.redis, normaliser)
        register_views(
            self.app,
            Readiness(
                recovered=self.recovered,
                output_problem=lambda: self.outbox.health,
                access_problem=lambda: self.access.problem,
                halted=lambda: self.routes.halted,
                api_serving=lambda: self.api.serving,
                ping_redis=self.redis.ping,
            ),
        )
        self._sync_task: asyncio.Task[None] | None = None
        self.app.task(self._start_services)
        self.app.timer(5.0)(self._observe_tables)
        self.app.timer(LAG_CHECK_S)(self._observe_lag)
        self.app.timer(RESYNC_CHECK_S)(self._resync_redis_if_needed)
        self.app.timer(TICK_CHECK_S)(self._tick_idle_partitions)
        self.app.timer(CONFIRM_CHECK_S)(self._send_erasure_confirmations)
        self.app.timer(RECOVERY_CHECK_S)(self._observe_recovery)
        self.app.timer(settings.kafka_access_check_s)(self.access.check)
        self.app.timer(GROUP_ERRORS_CHECK_S)(self._take_group_errors)
        self.app.timer(settings.output_limits_refresh_s)(self._refresh_limits)
        self._assigned_at: float | None = None
        self._lag_labels: set[tuple[str, str]] = set()
        self._resync_due = True
        # one marker per worker process: when Redis comes back empty, every worker must find
        # its own marker gone and rewrite its profiles, not only the first one to look
        self._marker = f"{SYNC_MARKER}:{socket.gethostname()}:{os.getpid()}"

        @self.app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _assigned(consumer: Any, assigned: Any, **kwargs: Any) -> None:
            self._resync_due = True
            self.timers.stale = True
            self.topic_identities.forget()  # a topic created again comes back as an assignment
            self.routes.resume_all(self.app.consumer)
            metrics.REBALANCES.inc()
            self._assigned_at = time.monotonic()

        @self.app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(consumer: Any, revoked: Any, **kwargs: Any) -> None:
            # profile writes still queued for partitions that may go to another worker: its
            # owner writes them from its table (and the re-sync after the assignment writes
            # those this worker keeps); a late write of ours must never land after theirs
            topic = self.customer_events.get_topic_name()
            gone = {tp.partition for tp in revoked if tp.topic == topic}
            if gone:
                self.redis_sync.drop_revoked(gone, self.settings.partitions)

        @self.app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _stop_services(app: faust.App, **kwargs: Any) -> None:
            await self.api.stop()
            await self.redis_sync.stop()
            await self.topic_identities.close()

    def _ingest_ports(self, privileged: bool) -> IngestPorts:
        source = self.privileged if privileged else self.touchpoints
        return IngestPorts(
            source=source.get_topic_name(),
            privileged=privileged,
            max_event_bytes=self.settings.max_event_bytes,
            ingest=self.ingest,
            identities=self.topic_identities,
            output=self.output,
            faults=self.faults,
        )

    def _customer_ports(self) -> CustomerPorts:
        settings, outbox = self.settings, self.outbox
        exports = settings.topic(topics.PRIVACY_EXPORTS)

        def export_budget(key: bytes) -> int:
            return outbox.limits.value_budget(exports, key, settings.producer_max_batch_bytes)

        return CustomerPorts(
            customers=self.customers,
            live_states=self.live_states,
            rules=self.rules,
            partitions=settings.partitions,
            owned_partitions=self._owned_partitions,
            profile_of=self.profile_of,
            source=self.customer_events.get_topic_name(),
            faults=self.faults,
            timers=self.timers,
            output=self.output,
            fits=outbox.fits,
            publishing=Publishing(self.output, self.activity, self.ledger, export_budget),
            redis=self.redis_sync,
            halt=self.routes.halt,
            journal=outbox.undo,
            mark=outbox.mark,
            take_back=outbox.take_back,
        )

    async def _input_restarted(self, tp: Any) -> bool:
        # only the input topic: the internal topics are this deployment's own
        inputs = (self.touchpoints.get_topic_name(), self.privileged.get_topic_name())
        if tp.topic not in inputs:
            return False
        return await self.topic_identities.restarted(tp)

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic this worker owns and the settings it must have: the changelogs as
        Faust names them, one per table of the app (streams/topic_specs.py)."""
        changelogs = []
        for table in self.app.tables.values():
            window = table.window
            retention = None if window is None else int(want_seconds(window.expires) * 1000)
            changelogs.append(Changelog(table.changelog_topic.get_topic_name(), retention))
        leader = self.app._leader_assignor._leader_topic_name  # type: ignore[attr-defined]
        return topic_specs(self.settings, changelogs, leader)

    def access_needs(self) -> list[Need]:
        """What this worker's principal must be allowed (docs/security.md): READ on its
        group, on what it consumes (its inputs, its tables' changelogs, Faust's leader topic,
        whose refusal otherwise crashes Faust at start: robinhood/faust#443) and WRITE on
        what it produces; CREATE on those that do not exist yet."""
        changelogs = [t.changelog_topic.get_topic_name() for t in self.app.tables.values()]
        leader = self.app._leader_assignor._leader_topic_name  # type: ignore[attr-defined]
        reads = [*self.routes.handlers, *changelogs, leader]
        writes = self.written_topics()
        return worker_needs(self.settings.app_id, reads, writes, [*reads, *writes])

    def written_topics(self) -> list[str]:
        """Every topic this worker produces to (outputs, internal topic, changelogs)."""
        changelogs = [t.changelog_topic.get_topic_name() for t in self.app.tables.values()]
        return list(
            dict.fromkeys(
                [
                    self.customer_events.get_topic_name(),
                    *(t.get_topic_name() for t in self.outputs.values()),
                    self.profiles_updates.get_topic_name(),
                    *changelogs,
                ]
            )
        )

    async def _refresh_limits(self) -> None:
        """The brokers' and topics' size limits read again: an operator may change them."""
        await self.outbox.limits.refresh()

    def _topic(self, name: str) -> faust.TopicT:
        # streams/topic_admin.py creates every topic with its settings before Faust starts;
        # internal=True leaves Faust's own declaration in place, which then finds them there
        return self.app.topic(
            self.settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.settings.partitions,
            internal=True,
        )

    async def _start_services(self) -> None:
        self._sync_task = asyncio.ensure_future(self.redis_sync.run())
        await self.api.start()

    def profile_of(self, state: Stored) -> dict[str, Any] | None:
        """The served profile of a table value, with today's activity and this month's points
        and spend (event time) added."""
        profile = view(state, self.rules)
        if profile is None or not isinstance(state, dict) or state["last_event_at"] is None:
            return profile
        customer_id, at = state["customer_id"], state["last_event_at"]
        self.activity.add_today(profile, customer_id, at)
        if state["orders"] or state["signup_bonus_at"] is not None:
            profile.update(self.ledger.totals(customer_id, at))
        return profile

    async def _take_group_errors(self) -> None:
        take = getattr(self.app.consumer, "take_group_errors", None)
        if take is not None:
            await take()

    async def _observe_tables(self) -> None:
        metrics.TABLE_KEYS.labels("customers").set(len(self.customers))
        metrics.TIMERS_PENDING.set(len(self.timers))

    async def _observe_lag(self) -> None:
        """Records behind each assigned input partition's end: the fetched high-water mark
        minus the next offset the stages will read. Table changelogs are left out: an active
        table only writes its changelog, so their read position never moves."""
        consumer: Any = self.app.consumer
        labels = set()
        inputs = self.routes.handlers
        for tp in self.app.assignor.assigned_actives():
            if tp.topic not in inputs:
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not fetched yet, or revoked mid-rebalance: next time
                continue
            if highwater is None:
                continue
            read = consumer._read_offset.get(tp)  # faust keeps no public accessor for it
            position = read + 1 if read is not None else consumer._committed_offset.get(tp) or 0
            label = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*label).set(max(highwater - position, 0))
            labels.add(label)
        for gone in self._lag_labels - labels:
            metrics.CONSUMER_LAG.remove(*gone)
        self._lag_labels = labels

    async def _observe_recovery(self) -> None:
        if self._assigned_at is not None and self.ready():
            metrics.RECOVERY_SECONDS.observe(time.monotonic() - self._assigned_at)
            self._assigned_at = None
        metrics.READY.set(1 if self.ready() else 0)

    async def _tick_idle_partitions(self) -> None:
        """The idle fallback (docs/domain.md, "Idle fallback"): a partition of the customer stage that
        has seen no event for ``idle_fallback_s`` gets a tick record moving its event-time
        clock on by the wall time elapsed, so timers fire when traffic stops. Ticks go through
        the topic because Faust tables may only change inside stream iteration."""
        if not self.ready():
            return
        topic = self.customer_events.get_topic_name()
        now = int(time.time() * 1000)
        idle_ms = int(self.settings.idle_fallback_s * 1000)
        metrics.PARTITION_CLOCK.clear()  # a revoked partition's clock is its new owner's now
        metrics.EVENT_TIME_SKEW.clear()
        ticks = []
        for tp in self.app.assignor.assigned_actives():
            if tp.topic != topic:
                continue
            if self.timers.stale or not self.timers.built(tp.partition):
                # not rebuilt since the assignment: a partition without traffic gets no batch,
                # so its clock and timers would wait for its next event. A wake tick is a
                # batch (it rebuilds the partition's timers); its time of 0 moves no clock.
                ticks.append((tp.partition, {"k": "tick", "at": 0, "ts": now}))
                continue
            clock = self.timers.clock(tp.partition)
            if clock is not None:
                metrics.PARTITION_CLOCK.labels(partition=str(tp.partition)).set(clock / 1000)
            skew = self.timers.skew(tp.partition, now)
            metrics.EVENT_TIME_SKEW.labels(partition=str(tp.partition)).set(
                max(skew or 0, 0) / 1000
            )
            at = self.timers.idle_tick(tp.partition, now, idle_ms)
            if at is not None:
                ticks.append((tp.partition, {"k": "tick", "at": at, "ts": now}))
        # sent once every clock is set again: a scrape during a send sees them all
        for partition, tick in ticks:
            await self.customer_events.send(
                key=TICK_KEY, value=orjson.dumps(tick), partition=partition
            )
            metrics.IDLE_TICKS.inc()

    async def _send_erasure_confirmations(self) -> None:
        """Tell the customer stage which erasures Redis confirmed (privacy.confirm): the
        receipt goes out from there, with the marker's change, through the outbox. A
        confirmation lost (a crash) is asked again: the marker still waits, and the
        partition's next owner queues its deletion again (agents.customer)."""
        confirmed, self.redis_sync.confirmed = self.redis_sync.confirmed, []
        now = int(time.time() * 1000)
        partitions = self.settings.partitions
        for customer_id, version, _ in confirmed:
            key = customer_id.encode()
            confirm = {"k": "confirm", "version": version, "ts": now}
            await self.customer_events.send(
                key=key, value=orjson.dumps(confirm), partition=partition_for(key, partitions)
            )

    async def _resync_redis_if_needed(self) -> None:
        """Rewrite every local profile to Redis after a recovery or when Redis lost its data.

        Redis is a projection of the table: a crash can lose writes still pending, a Redis
        restarted empty loses everything, and a long outage makes the sync drop its waiting
        profiles at its cap (``redis_max_pending``). The versioned write keeps newer profiles
        untouched.
        """
        if not self.ready():
            return
        try:
            lost = not await self.redis.exists(self._marker)
        except (RedisError, OSError):
            return  # the sync loop reports and retries; check again on the next tick
        overflowed = self.redis_sync.resync_needed
        if not (self._resync_due or lost or overflowed):
            return
        if not await self._settled_and_ready():
            return
        self._resync_due = False
        # every profile dropped so far is in the settled table; the ones changed from here on
        # are queued again
        self.redis_sync.begin_resync()
        chunk = max(1, min(RESYNC_CHUNK, self.settings.redis_max_pending // 2))
        count = 0
        owned = self._owned_partitions()
        partitions = self.settings.partitions
        # a standby copy may lag its changelog: its owner writes those profiles
        keys = [k for k in self.customers if partition_for(k, partitions) in owned]
        for start in range(0, len(keys), chunk):
            # in chunks: queued profiles are dicts of several KiB (a million of them took 6 GiB
            # at once in bench/restart.py), and the stages run between chunks
            while self.redis_sync.pending > chunk and not self.redis_sync.resync_needed:
                await asyncio.sleep(0.01)
            if self.redis_sync.resync_needed:
                return  # Redis went away again and the cap was hit: the next tick starts over
            if not await self._settled_and_ready():
                self._resync_due = True  # a rebalance began: the next assignment starts again
                return
            for key in keys[start : start + chunk]:
                state = decode_state(self.customers.get(key))
                profile = self.profile_of(state) if state is not None else None
                if state is not None and profile is not None:
                    self.redis_sync.submit(profile["customer_id"], profile, aliases(state))
                    count += 1
                elif isinstance(state, Erased) and state.unconfirmed is not None:  # unconfirmed
                    bury(self.redis_sync, key.decode(), state)
        try:
            await self.redis.set(self._marker, self.settings.app_id, ex=MARKER_TTL_S)
        except (RedisError, OSError):
            self._resync_due = True
        metrics.REDIS_RESYNCS.inc()
        why = "data lost" if lost else "dropped at the cap" if overflowed else "recovery"
        log.info("re-synced %d profiles to Redis (%s)", count, why)

    async def _settled_and_ready(self) -> bool:
        """Waits until no batch is in flight; then, until the next await, the table is settled.

        A batch in flight has sent its Redis writes (an erasure's removal among them) but not
        yet stored its states: re-syncing from the table then would write them back older."""
        while (batch := self.routes.in_flight) is not None and not batch.done():
            await self.routes.settled()
        return self.ready()

    def _owned_partitions(self) -> set[int]:
        topic = self.customer_events.get_topic_name()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def recovered(self) -> bool:
        app = self.app
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        return bool(
            not app.rebalancing and recovery.completed.is_set() and not recovery.in_recovery
        )

    def ready(self) -> bool:
        """Partitions assigned, tables recovered, the broker allowing what the worker needs,
        and output reaching it."""
        return (
            self.recovered()
            and self.access.problem is None
            and self.outbox.health is None
            and not self.routes.halted
            and self.api.serving
        )
