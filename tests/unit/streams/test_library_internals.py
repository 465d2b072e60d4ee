"""The faust-streaming, mode-streaming and aiokafka internals Touchstream reads, sets, calls or
overrides are still there, with the signatures it relies on.

The batch delivery path (``streams/delivery.py``, ``streams/transport.py``), the outbox
(``streams/outbox.py``, ``tables/changelog.py``) and the topology reach past these libraries'
public APIs for speed and for failure handling the public APIs do not offer. An upgrade that
renames one of these would not fail loudly: an attribute set on an object that no longer reads
it does nothing (a fetch wait back at 1.5 s), a method Faust no longer calls is never run
(records handled one by one again, or commits crashing the worker), an App setting Faust no
longer knows is silently ignored (Faust's /table views serving customer state). So these
versions are pinned to the minor release tested (pyproject.toml) and this test lists every
such internal.

When it fails (after changing a pin in pyproject.toml, or an install that ignored it), follow
docs/operations.md, "Upgrading faust-streaming, mode-streaming and aiokafka": the message names
each internal and the Touchstream module that relies on it; read the library's change for it
and port the module (for a method listed in ``REPLACED``, Touchstream carries its own copy:
port the upstream change into the copy, then record the new digest here); run the unit tests,
``tests/integration`` and ``make chaos`` on Apache Kafka; then move the pin.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import aiokafka
import faust
import faust.utils.json
import mode.utils.times
import pytest
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import (
    Assignment,
    Subscription,
    SubscriptionState,
    TopicPartitionState,
)
from aiokafka.protocol import api as kafka_api
from faust.tables import TableManager as FaustTableManager
from faust.tables.base import Collection
from faust.tables.recovery import Recovery as FaustRecovery
from faust.tables.table import Table
from faust.transport import base as faust_transport
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.settings.settings import Settings as FaustSettings
from packaging.requirements import Requirement
from packaging.version import Version

import touchstream
import touchstream.streams.topology
from touchstream.streams.kafka_access import GroupOperationsRequest, TopicOperationsRequest
from touchstream.streams.metadata_request import MetadataRequest_v10, MetadataRequest_v12
from touchstream.streams.topic_identity import TopicIdRequest

PINNED = ("faust-streaming", "mode-streaming", "aiokafka")


@pytest.fixture
async def live() -> Any:
    """Real instances, never started (no broker is contacted): instance attributes set in
    constructors are only visible on objects."""
    app = faust.App(
        "internals", broker="kafka://127.0.0.1:9", store="memory://", autodiscover=False
    )
    table = app.Table("plain", default=None)
    windowed = app.Table("windowed", default=dict).tumbling(3600, expires=7200)
    consumer = app.consumer
    # made by the consumer's constructor (_new_consumer_thread); None reports it gone
    thread = getattr(consumer, "_thread", None)
    kafka_consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    kafka_producer = aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    yield {
        "faust App": app,
        "faust Consumer": consumer,
        "faust AIOKafkaConsumerThread": thread,
        "faust Table": table,
        "faust Table store": table.data,
        "faust windowed table": windowed,
        "faust windowed table's table": windowed.table,
        "faust Producer": app.producer,
        "faust TableManager": app.tables,
        "aiokafka AIOKafkaConsumer": kafka_consumer,
        "aiokafka AIOKafkaProducer": kafka_producer,
        "aiokafka AIOKafkaClient": kafka_producer.client,
    }
    await kafka_consumer.stop()
    await kafka_producer.stop()
    if thread is not None:
        thread.thread_loop.close()  # the thread's own loop, made in its constructor


# object -> (attributes read, set or called, where Touchstream relies on them)
ATTRIBUTES: dict[str, tuple[list[str], str]] = {
    "faust App": (
        [
            "_leader_assignor",
            "assignor",
            "tables",
            "flow_control",
            "consumer_generation_id",
            "rebalancing",
            "rebalancing_count",
            "topics",
            "producer",
            "should_stop",
        ],
        "streams/topology.py, streams/delivery.py",
    ),
    "faust Consumer": (
        [
            "_read_offset",
            "_committed_offset",
            "_acked",
            "_acked_index",
            "_gap",
            "_add_gap",
            "_n_acked",
            "_commit_every",
            "_stopped",
            "_thread",
            "_drain_messages",
            "_commit_offsets",
            "_new_consumer_thread",
            "callback",
            "suspend_flow",
            "flow_active",
            "consumer_stopped_errors",
            "should_stop",
            "getmany",
            "wait_first",
            "ack",
            "assignment",
            "pause_partitions",
            "resume_partitions",
            "highwater",
            "commit",
            "wait_empty",
            "sleep",
            "transport",
            "in_transaction",
            "perform_seek",
            "seek",
            "position",
        ],
        "streams/delivery.py, streams/transport.py, streams/topology.py (lag)",
    ),
    "faust AIOKafkaConsumerThread": (
        [
            "_consumer",
            "_ensure_consumer",
            "_create_worker_consumer",
            "_commit",
            "_highwaters",
            "seek_to_committed",
            "call_thread",
            "tp_last_committed_at",
            "assignment",
            "crash",
            "log",
            "consumer",
        ],
        "streams/transport.py",
    ),
    "faust Table": (
        [
            "_maybe_set_key_ttl",
            "_maybe_del_key_ttl",
            "_sensor_on_set",
            "_sensor_on_del",
            "_should_expire_keys",
            "partition_for_key",
            "changelog_topic",
            "key_serializer",
            "value_serializer",
            "data",
            "options",
            "window",
            "on_key_set",
            "on_key_del",
        ],
        "tables/changelog.py (OutboxTable), tables/store.py, streams/topology.py",
    ),
    "faust Table store": (["data", "set_persisted_offset"], "tables/store.py, tables/changelog.py"),
    "faust windowed table": (["table"], "tables/windows.py, tables/activity.py, tables/ledger.py"),
    "faust windowed table's table": (["window", "default"], "tables/windows.py"),
    "faust Producer": (["_ensure_producer", "flush"], "streams/outbox.py, streams/transport.py"),
    "faust TableManager": (["_recovery", "beacon", "loop"], "streams/recovery.py"),
    "aiokafka AIOKafkaConsumer": (
        [
            "_fetch_max_wait_ms",
            "_coordinator",
            "_client",
            "_subscription",
            "seek_to_committed",
            "seek_to_beginning",
            "commit",
        ],
        "streams/transport.py, runtime/kafka_io.py",
    ),
    "aiokafka AIOKafkaProducer": (["client", "create_batch", "send_batch"], "streams/outbox.py"),
    "aiokafka AIOKafkaClient": (
        ["_wait_on_metadata", "cluster", "force_metadata_update", "get_random_node", "send"],
        "streams/outbox.py, streams/topic_admin.py, streams/topic_identity.py",
    ),
}

# module-level names imported from the libraries' internals
MODULE_NAMES = {
    "faust.streams": (faust.streams, ("_current_event",), "streams/delivery.py"),
    "faust.transport.drivers.aiokafka": (
        faust_aiokafka,
        ("AIOKafkaConsumerThread", "Consumer", "Transport", "ensure_aiokafka_TP"),
        "streams/transport.py",
    ),
    "mode.utils.times": (mode.utils.times, ("want_seconds",), "streams/topology.py"),
    "faust.utils.json": (faust.utils.json, ("on_default",), "tables/changelog.py"),
    # the consumer's position read without waiting (streams/transport.py, position_now)
    "aiokafka SubscriptionState": (SubscriptionState, ("subscription",), "streams/transport.py"),
    "aiokafka Subscription": (Subscription, ("assignment",), "streams/transport.py"),
    "aiokafka Assignment": (Assignment, ("state_value",), "streams/transport.py"),
    "aiokafka TopicPartitionState": (
        TopicPartitionState,
        ("has_valid_position", "position"),
        "streams/transport.py",
    ),
    "aiokafka GroupCoordinator": (
        GroupCoordinator,
        ("check_errors", "request_rejoin"),
        "streams/transport.py",
    ),
}

# methods Touchstream overrides or calls with these parameters (names in order)
SIGNATURES = [
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", ["self", "transport"]),
    (faust_aiokafka.AIOKafkaConsumerThread, "_commit", ["self", "offsets"]),
    (faust_aiokafka.AIOKafkaConsumerThread, "_highwaters", ["self", "partitions"]),
    (faust_aiokafka.AIOKafkaConsumerThread, "seek_to_committed", ["self"]),
    (faust_aiokafka.Consumer, "_new_consumer_thread", ["self"]),
    (faust_consumer.Consumer, "_drain_messages", ["self", "fetcher"]),
    (faust_consumer.Consumer, "_commit_offsets", ["self", "offsets", "start_new_transaction"]),
    (faust_consumer.Consumer, "_add_gap", ["self", "tp", "offset_from", "offset_to"]),
    (faust_consumer.Consumer, "wait_empty", ["self"]),
    (faust_consumer.Consumer, "perform_seek", ["self"]),
    (FaustRecovery, "_wait", ["self", "coro", "timeout"]),
    (FaustRecovery, "_seek_offsets", ["self", "consumer", "tps", "offsets", "title"]),
    (faust_consumer.Consumer, "seek", ["self", "partition", "offset"]),
    (Table, "on_key_set", ["self", "key", "value"]),
    (Table, "on_key_del", ["self", "key"]),
    (Collection, "_maybe_set_key_ttl", ["self", "key", "partition"]),
    (Collection, "_maybe_del_key_ttl", ["self", "key", "partition"]),
    (faust_transport.Transport, "__init__", ["self", "url", "app", "loop"]),
    (kafka_api.Request, "prepare", ["self", "versions"]),
    (aiokafka.AIOKafkaProducer, "send_batch", ["self", "batch", "topic", "partition"]),
]

# methods Touchstream replaces with a copy of its own (not a call to super): the digest of
# the upstream source the copy was made from. A new digest means upstream changed the method:
# port the change into the copy, then record the digest printed by the failure.
REPLACED = {
    "faust.tables.table.Table.on_key_set": (
        Table,
        "on_key_set",
        "tables/changelog.py OutboxTable.on_key_set",
        "9ff71a01455e7600",
    ),
    "faust.tables.table.Table.on_key_del": (
        Table,
        "on_key_del",
        "tables/changelog.py OutboxTable.on_key_del",
        "efc068c6a2d3cd95",
    ),
    "faust.tables.base.Collection._on_changelog_sent": (
        Collection,
        "_on_changelog_sent",
        "tables/changelog.py OutboxTable._persisted",
        "146c7ea5c7530a94",
    ),
    "faust.transport.consumer.Consumer._drain_messages": (
        faust_consumer.Consumer,
        "_drain_messages",
        "streams/delivery.py drain",
        "8f35dd7a11144daa",
    ),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._commit": (
        faust_aiokafka.AIOKafkaConsumerThread,
        "_commit",
        "streams/transport.py ConsumerThread._commit",
        "78c931ecfa8dde44",
    ),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.seek_to_committed": (
        faust_aiokafka.AIOKafkaConsumerThread,
        "seek_to_committed",
        "streams/transport.py ConsumerThread.seek_to_committed",
        "43907fc1163624bd",
    ),
    "faust.tables.manager.TableManager.recovery": (
        FaustTableManager,
        "recovery",
        "streams/recovery.py TableManager.recovery",
        "9e5e10447444e1df",
    ),
}

# methods Touchstream neither copies nor calls with new arguments, but whose handling of a
# case it depends on: the digest of the upstream source that handling was read in. A new
# digest: read the method again for that case, then record the digest printed.
RELIED = {
    "faust.tables.recovery.Recovery._wait": (
        FaustRecovery,
        "_wait",
        "streams/recovery.py: a wait that times out raises ServiceStopped",
        "768af810dce80586",
    ),
    "faust.tables.recovery.Recovery._restart_recovery": (
        FaustRecovery,
        "_restart_recovery",
        "streams/recovery.py: ServiceStopped ends the loop, any other exception ends the task",
        "f93138b040ef1bc2",
    ),
}


def digest(owner: Any, name: str) -> str:
    """Of the method's source as the installed library has it ("gone" if it has none)."""
    function = owner.__dict__.get(name, getattr(owner, name, None))
    if function is None:
        return "gone"
    if isinstance(function, property):
        function = function.fget
    function = getattr(function, "fun", function)  # a mode ``Service.task``: the coroutine
    source = textwrap.dedent(inspect.getsource(function))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def test_the_libraries_are_pinned_to_a_minor_release_and_installed_within_it():
    """pip must never pick a release these internals were not checked against."""
    pyproject = Path(touchstream.__file__).parents[1] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    wanted = {Requirement(r).name: Requirement(r) for r in dependencies}
    problems = []
    for name in PINNED:
        requirement = wanted.get(name)
        if requirement is None:
            problems.append(f"{name}: not a dependency of touchstream")
            continue
        installed = Version(metadata.version(name))
        upper = [s for s in requirement.specifier if s.operator == "<"]
        if not upper or Version(upper[0].version) > Version(
            f"{installed.major}.{installed.minor + 1}"
        ):
            problems.append(f"{name}: {requirement} allows releases after {installed}'s minor")
        if installed not in requirement.specifier:
            problems.append(f"{name}: {installed} installed, outside {requirement}")
    assert not problems, "\n".join(problems)


def test_every_internal_read_set_or_overridden_still_exists(live: dict[str, Any]) -> None:
    missing = [
        f"{owner}.{name} (used by touchstream/{where})"
        for owner, (names, where) in ATTRIBUTES.items()
        for name in names
        if not hasattr(live[owner], name)
    ]
    missing += [
        f"{owner}.{name} (used by touchstream/{where})"
        for owner, (target, names, where) in MODULE_NAMES.items()
        for name in names
        if not hasattr(target, name)
    ]
    assert not missing, "gone from the pinned libraries:\n" + "\n".join(missing)


def test_a_fetch_wait_set_on_the_consumer_reaches_its_fetcher():
    """streams/transport.py sets ``_fetch_max_wait_ms`` after the consumer is built: it only
    works while ``start`` passes that attribute to the fetcher."""
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(
        aiokafka.AIOKafkaConsumer.start
    )


def test_overridden_and_called_methods_keep_their_parameters():
    changed = []
    for owner, name, expected in SIGNATURES:
        function = getattr(owner, name, None)
        names = None if function is None else list(inspect.signature(function).parameters)
        if names != expected:
            found = "gone" if names is None else tuple(names)
            changed.append(f"{owner.__qualname__}.{name}: {found}, expected {tuple(expected)}")
    assert not changed, "parameters changed:\n" + "\n".join(changed)


def changed_upstream(methods: dict[str, tuple[Any, str, str, str]], said: str) -> list[str]:
    return [
        f"{qualified} ({said}{where}): digest {digest(owner, name)}, was {recorded}"
        for qualified, (owner, name, where, recorded) in methods.items()
        if digest(owner, name) != recorded
    ]


def test_methods_touchstream_carries_a_copy_of_are_unchanged_upstream():
    changed = changed_upstream(REPLACED, "copied in touchstream/")
    assert not changed, "changed upstream:\n" + "\n".join(changed)


def test_methods_whose_handling_touchstream_relies_on_are_unchanged_upstream():
    changed = changed_upstream(RELIED, "")
    assert not changed, "changed upstream:\n" + "\n".join(changed)


def test_every_faust_setting_the_topology_passes_is_one_faust_knows():
    """faust.App ignores a keyword it does not know: a renamed ``web_tables_enabled`` would
    turn Faust's /table views (customer state for anyone) back on without a word."""
    tree = ast.parse(Path(touchstream.streams.topology.__file__).read_text())
    passed = {
        keyword.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "App"
        for keyword in node.keywords
        if keyword.arg is not None
    }
    assert "web_tables_enabled" in passed
    unknown = sorted(name for name in passed if not hasattr(FaustSettings, name))
    assert not unknown, f"settings faust.App would ignore: {unknown}"


def test_the_kafka_requests_declared_here_still_negotiate_their_versions():
    """streams/metadata_request.py and streams/kafka_access.py declare Kafka requests aiokafka
    lacks (Metadata for kafka_access.py and topic_identity.py); aiokafka picks the version from the classes named in ``Request[...]``."""
    assert (MetadataRequest_v10, MetadataRequest_v12) == TopicIdRequest._CLASSES
    built = TopicIdRequest(["t"]).prepare({3: (0, 12)})
    assert isinstance(built, MetadataRequest_v12)
    assert isinstance(TopicIdRequest(["t"]).prepare({3: (0, 11)}), MetadataRequest_v10)
    for request in (TopicOperationsRequest(["t"]), GroupOperationsRequest("g")):
        struct = request.prepare({3: (0, 12), 15: (0, 5)})
        assert struct.API_VERSION in (3, 8)
        assert struct.encode()  # the schema still encodes with aiokafka's types
