"""Bad input is never fatal and never silent: every poison record reaches the DLQ with its reason."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from touchstream.runtime.kafka_io import produce, read_topic
from touchstream.runtime.stack import Stack
from touchstream.schemas.dlq import KEPT_WHOLE_BYTES
from touchstream.simulator.factory import purchase
from touchstream.simulator.traffic import MALFORMED_KINDS, Traffic

pytestmark = pytest.mark.integration


def test_every_malformed_kind_is_dead_lettered_with_reason_and_original_bytes(
    stack: Stack,
) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    traffic = Traffic(customers=5, seed=3, malformed=1.0)
    bad = [traffic.next(1_795_000_000_000) for _ in MALFORMED_KINDS]
    good = purchase({"customer_id": "crm-ok"}, "o-ok", 1_000)
    records = [(r.key, r.value) for r in bad] + [(b"crm-ok", good)]
    positions = produce(stack.broker.bootstrap, prefix + "touchpoints", records)

    dlq = read_topic(stack.broker.bootstrap, prefix + "touchpoints.dlq", expect=len(bad))
    assert len(dlq) == len(bad)
    by_origin = {(d.json()["partition"], d.json()["offset"]): d.json() for d in dlq}
    for record, position in zip(bad, positions, strict=False):
        entry = by_origin[position]
        assert entry["reason"] == MALFORMED_KINDS[record.malformed], record.malformed
        assert entry["message"], record.malformed
        assert entry["topic"] == prefix + "touchpoints"
        assert entry["value_size"] == len(record.value)
        assert entry["value_sha256"] == hashlib.sha256(record.value).hexdigest()
        if len(record.value) > KEPT_WHOLE_BYTES:  # the too_large kind: a prefix, still findable
            assert entry["value_truncated"] is True and entry["value_b64"] is None
            assert record.value.startswith(base64.b64decode(entry["value_prefix_b64"]))
        else:
            assert base64.b64decode(entry["value_b64"]) == record.value
        assert base64.b64decode(entry["key_b64"]) == record.key
        assert isinstance(entry["timestamp"], int)

    # the stream went on: the valid event after the poison pills was applied
    updates = read_topic(stack.broker.bootstrap, prefix + "profiles.updates", expect=1)
    assert [u.json()["customer_id"] for u in updates] == ["crm-ok"]
    metrics = worker.metrics()
    assert metrics["touchstream_dlq_total"] == len(bad)


def test_schema_violation_message_names_the_field(stack: Stack) -> None:
    worker = stack.start_worker()
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    sale = purchase({"customer_id": "crm-2"}, "o-2", 1_000)
    sale["properties"]["items"][0]["quantity"] = 0
    produce(stack.broker.bootstrap, prefix + "touchpoints", [(None, sale)])
    (entry,) = read_topic(stack.broker.bootstrap, prefix + "touchpoints.dlq", expect=1)
    assert entry.json()["reason"] == "schema_violation"
    assert "quantity" in entry.json()["message"]
    assert entry.json()["key_b64"] is None


def test_a_number_beyond_its_bound_is_dead_lettered_naming_it_and_the_stream_goes_on(
    stack: Stack,
) -> None:
    # valid against the v1 schema (no maximum there), beyond the contract's bound
    # (domain/bounds.py): refused on ingest, never applied to the customer's state
    worker = stack.start_worker()
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    bulk = purchase({"customer_id": "crm-bot"}, "o-bot", 1_000)
    bulk["properties"]["items"][0]["quantity"] = 99_999
    good = purchase({"customer_id": "crm-ok"}, "o-ok", 1_000)
    produce(stack.broker.bootstrap, prefix + "touchpoints", [(None, bulk), (b"crm-ok", good)])

    (entry,) = read_topic(stack.broker.bootstrap, prefix + "touchpoints.dlq", expect=1)
    assert entry.json()["reason"] == "schema_violation"
    assert entry.json()["message"] == (
        "properties.items[0].quantity must be at most 10000, got 99999"
    )
    updates = read_topic(stack.broker.bootstrap, prefix + "profiles.updates", expect=1)
    assert [u.json()["customer_id"] for u in updates] == ["crm-ok"]


def test_dlq_replay_resubmits_original_bytes_once_per_record(stack: Stack) -> None:
    import asyncio

    from touchstream.runtime.dlq_replay import replay

    worker = stack.start_worker()
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    bootstrap = stack.broker.bootstrap
    poison = b'{"event_id": "x", "type": "purchase", '
    produce(bootstrap, prefix + "touchpoints", [(b"k1", poison)])
    assert len(read_topic(bootstrap, prefix + "touchpoints.dlq", expect=1)) == 1

    group = prefix + "replay"
    args = (bootstrap, prefix + "touchpoints.dlq", prefix + "touchpoints", group, set(), None)
    assert asyncio.run(replay(*args)) == (1, 0)
    inbound = read_topic(bootstrap, prefix + "touchpoints", expect=2)
    assert [r.value for r in inbound] == [poison, poison]
    assert inbound[1].key == b"k1"
    # still bad: it is dead-lettered again, and a second replay submits only that new record
    assert len(read_topic(bootstrap, prefix + "touchpoints.dlq", expect=2)) == 2
    assert asyncio.run(replay(*args)) == (1, 0)


def test_dlq_replay_dry_run_reports_and_leaves_the_group_where_it_was(
    stack: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import orjson

    from touchstream.runtime.cli import main

    worker = stack.start_worker()
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    bootstrap = stack.broker.bootstrap
    inbound, dlq = prefix + "touchpoints", prefix + "touchpoints.dlq"
    zero = purchase({"customer_id": "crm-3"}, "o-3", 1_000)
    zero["properties"]["items"][0]["quantity"] = 0
    usd = purchase({"customer_id": "crm-4"}, "o-4", 1_000)
    usd["properties"]["currency"] = "USD"
    poison = [(b"k1", b"{"), (b"k2", b"not json"), (b"k3", zero), (b"k4", usd)]
    produce(bootstrap, inbound, poison)
    assert len(read_topic(bootstrap, dlq, expect=len(poison))) == len(poison)
    assert len(read_topic(bootstrap, inbound)) == len(poison)

    monkeypatch.setenv("TOUCHSTREAM_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("TOUCHSTREAM_APP_ID", stack.settings["app_id"])
    if stack.broker.kind == "embedded":
        # Tansu under-reports end offsets: probe them, as the stack's workers on it do
        monkeypatch.setenv("TOUCHSTREAM_PROBE_END_OFFSETS", "true")
    rules = tmp_path / "rules.toml"  # the fix being checked: a USD exchange rate
    rules.write_text("[program]\nexchange_rates = { USD = 0.9 }\n")
    replay = ["dlq", "replay", "--broker", bootstrap]
    assert main([*replay, "--dry-run", "--rules", str(rules)]) == 0
    out = capsys.readouterr().out
    assert (
        f"read 4 records from {dlq} (0 left: other reasons, or originals kept only in part)" in out
    )
    assert "would pass 1, would still fail 3" in out
    assert "unsupported_currency   pass                         1" in out
    assert "invalid_json           invalid_json                 2" in out
    assert "schema_violation       schema_violation             1" in out
    assert main([*replay, "--dry-run", "--json", "--reason", "invalid_json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["read"], report["skipped"], report["pass"], report["fail"]) == (2, 2, 0, 2)

    # nothing was produced, and the group still starts at the beginning
    assert len(read_topic(bootstrap, inbound)) == len(poison)
    assert len(read_topic(bootstrap, dlq)) == len(poison)
    assert main(replay) == 0
    assert capsys.readouterr().out.startswith(f"replayed {len(poison)} DLQ records")
    again = read_topic(bootstrap, inbound, expect=2 * len(poison))
    assert sorted(r.key or b"" for r in again) == sorted([k for k, _ in poison] * 2)
