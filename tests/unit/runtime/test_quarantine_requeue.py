"""A quarantined customer-stage event goes back on a dedup route of its own, keeping the
topic identity ingest stamped on it (runtime/dlq_replay.py)."""

from __future__ import annotations

import orjson

from touchstream.runtime.dlq_replay import requeued

TOPIC_ID = "pXcMzPfYQmS1vA7wLq3n0g"


def test_an_event_keeps_its_topic_identity_on_its_own_route() -> None:
    event = {"k": "ev", "id": "e1", "cid": "c1", "in": [3, 41, TOPIC_ID]}
    back = orjson.loads(requeued(orjson.dumps(event)) or b"")
    assert back["in"] == ["q3", 41, TOPIC_ID]
    assert requeued(orjson.dumps(back)) == orjson.dumps(back)  # replayed twice: the same


def test_an_event_without_an_identity_moves_to_its_route() -> None:
    event = {"k": "ev", "id": "e1", "cid": "c1", "in": [0, 7]}
    assert orjson.loads(requeued(orjson.dumps(event)) or b"")["in"] == ["q0", 7]


def test_a_touchpoint_goes_back_byte_for_byte() -> None:
    raw = b'{"event_id":"e1","type":"page_view"}'
    assert requeued(raw) == raw
