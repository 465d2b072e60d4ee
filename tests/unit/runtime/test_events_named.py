"""What a profile update says it covers: the bench and the tests count events by it."""

from touchstream.runtime.kafka_io import events_named


def test_a_coalesced_update_covers_every_event_it_names_oldest_first() -> None:
    update = {"event_id": "e3", "event_ids": ["e1", "e2", "e3"], "events_covered": 3}
    assert events_named(update) == ["e1", "e2", "e3"]


def test_an_update_written_before_coalescing_covers_its_one_event() -> None:
    assert events_named({"event_id": "e9", "customer_id": "c"}) == ["e9"]


def test_an_erasure_notice_covers_no_event() -> None:
    assert events_named({"customer_id": "c", "erased": True, "event_id": None}) == []
