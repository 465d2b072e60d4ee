"""Read a failed chaos run back from its kept broker log directory and hold it to the oracle.

    python -m tests.chaos.kept_run DIR [CUSTOMER_ID ...]

``DIR`` is a broker's ``server.properties`` directory that pytest kept (``--basetemp``, or
``/tmp/pytest-of-$USER/pytest-N``): ``.../test_the_broker_killed_and_res0/own-kafka`` for the
broker-kill scenario, ``.../broker0`` for the others. Apache Kafka starts again on that
directory and its old ports, and the script reads back the inputs, ``profiles.updates``,
``customer-events`` and the customers changelog. It replays the oracle over the inputs, then
prints two comparisons with the oracle: the last profile update of each customer, and the last
changelog record of each key (what compaction keeps, which Redis's versioned writes can hide).
For each ``CUSTOMER_ID`` it lists its changelog records and its ``customer-events`` records.
This is how the late writes in docs/design/late-writes.md were found.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.chaos.harness import FIELDS, oracle
from touchstream.config.rules import load_rules
from touchstream.domain.profile import project
from touchstream.runtime import apache_kafka
from touchstream.runtime.kafka_io import Out, read_topic
from touchstream.streams.topic_identity import identity_of
from touchstream.tables.customers import CUSTOMERS_TABLE, decode_state


def reopen(workdir: Path) -> apache_kafka.KafkaBroker:
    """Apache Kafka on a kept log directory, on the ports its ``server.properties`` names."""
    props = (workdir / "server.properties").read_text()
    listeners = re.search(r"^listeners=(.*)$", props, re.M)
    assert listeners is not None, f"no listeners in {workdir / 'server.properties'}"
    ports = {name: int(port) for name, port in re.findall(r"(\w+)://[^:]+:(\d+)", listeners[1])}
    log_path = workdir / "kafka-reopened.log"
    version = apache_kafka.KAFKA_VERSION
    child = apache_kafka._launch(workdir, version, apache_kafka.DEFAULT_HEAP, log_path)
    broker = apache_kafka.KafkaBroker(
        host="127.0.0.1",
        port=ports["PLAINTEXT"],
        ports=ports,
        workdir=workdir,
        version=version,
        child=child,
        log_path=log_path,
    )
    apache_kafka._wait_listening(broker)
    return broker


def _state(raw: bytes | None) -> Any:
    return decode_state(raw) if raw is not None else None


def _version(state: Any) -> Any:
    return state.get("version") if isinstance(state, dict) else getattr(state, "version", None)


def compare(boot: str, prefix: str, customers: list[str]) -> None:
    inputs = [prefix + "touchpoints", prefix + "touchpoints.privileged"]
    inbound: list[Out] = []
    for name in inputs:
        inbound += read_topic(boot, name, timeout_s=30, settle_s=3)
    ids = {name: asyncio.run(identity_of(boot, name)) for name in inputs}
    rules = load_rules(None)
    expected, _, distinct = oracle(inbound, rules, ids)
    want = expected.live()
    print(f"{len(inbound):,} inbound records, {distinct:,} distinct valid events")
    print(
        f"oracle: {len(want):,} live profiles, {sum(project(s, rules)['touchpoints'] for s in want.values()):,} touchpoints"
    )

    last: dict[str, dict[str, Any]] = {}
    for update in read_topic(boot, prefix + "profiles.updates", timeout_s=60, settle_s=3):
        value = update.json()
        if isinstance(value, dict) and value.get("customer_id"):
            last[value["customer_id"]] = value  # offset order: the last one sent
    served = {cid: v for cid, v in last.items() if not v.get("merged_into")}
    wrong = sorted(
        cid
        for cid in set(served) | set(want)
        if cid not in want
        or cid not in served
        or str(project(want[cid], rules)["touchpoints"]) != str(served[cid].get("touchpoints"))
    )
    print(f"last profile update differing from the oracle: {len(wrong)} {wrong[:10]}")

    changelog = f"{prefix}touchstream-{CUSTOMERS_TABLE}-changelog"
    records = sorted(
        read_topic(boot, changelog, timeout_s=60, settle_s=3), key=lambda r: (r.partition, r.offset)
    )
    kept = {r.key: r.value for r in records}
    behind = []
    for cid in sorted(set(expected.table) | {k.decode() for k in kept if k}):
        oracle_state, state = expected.table.get(cid), _state(kept.get(cid.encode()))
        differs = type(oracle_state) is not type(state) or (
            isinstance(state, dict)
            and any(project(oracle_state, rules)[f] != project(state, rules)[f] for f in FIELDS)
        )
        if differs:
            behind.append(cid)
    print(f"last changelog record differing from the oracle: {len(behind)} {behind[:10]}")

    events = read_topic(boot, prefix + "touchstream.customer-events", timeout_s=60, settle_s=3)
    for cid in customers:
        print(f"\n{cid}: oracle {type(expected.table.get(cid)).__name__}")
        for r in records:
            if r.key == cid.encode():
                state = _state(r.value)
                print(
                    f"  changelog {r.partition}@{r.offset} t={r.timestamp} {type(state).__name__} v{_version(state)}"
                )
        for r in events:
            if r.key == cid.encode():
                msg = orjson.loads(r.value or b"{}")
                print(
                    f"  customer-events {r.partition}@{r.offset} t={r.timestamp} "
                    f"{msg.get('k', 'ev')} {msg.get('id')} {msg.get('type', '')} in={msg.get('in')}"
                )


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    broker = reopen(Path(argv[0]))
    try:
        names = asyncio.run(_topics(broker.bootstrap))
        inputs = [n for n in names if n.endswith(".touchpoints")]
        if not inputs:
            print(f"no touchpoints topic on the kept broker: {sorted(names)}")
            return 1
        compare(broker.bootstrap, inputs[0][: -len("touchpoints")], argv[1:])
    finally:
        broker.stop()
    return 0


async def _topics(bootstrap: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
