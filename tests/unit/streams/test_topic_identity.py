"""The input topic's identity as read from a Metadata response: Kafka's topic id as its tools
print it, or the topic's name on a broker that has no topic ids."""

import base64
import uuid
from typing import NamedTuple

import pytest

from touchstream.config.settings import Settings
from touchstream.streams import topic_identity
from touchstream.streams.metadata_request import MetadataRequest_v12, MetadataResponse_v12
from touchstream.streams.topic_identity import TopicIdentities, TopicIdRequest, identities_from


class TP(NamedTuple):
    topic: str
    partition: int


TOPIC_ID = uuid.UUID("0f2d6c1e-8a3b-4c5d-9e6f-7a8b9c0d1e2f").bytes


def response(*topics: tuple[int, str, bytes]) -> MetadataResponse_v12:
    encoded = MetadataResponse_v12(
        0,
        [(1, "localhost", 9092, None, {})],
        "cluster",
        1,
        [
            (code, name, tid, False, [(0, 0, 1, 0, [1], [1], [], {})], 0, {})
            for code, name, tid in topics
        ],
        {},
    ).encode()
    return MetadataResponse_v12.decode(encoded)


def test_identity_is_the_topic_id_as_kafka_tools_print_it():
    found = identities_from(response((0, "shop.touchpoints", TOPIC_ID)))

    expected = base64.urlsafe_b64encode(TOPIC_ID).decode().rstrip("=")
    assert found == {"shop.touchpoints": expected}
    assert len(expected) == 22


def test_broker_without_topic_ids_gives_the_topic_name():
    assert identities_from(response((0, "shop.touchpoints", bytes(16)))) == {
        "shop.touchpoints": "name:shop.touchpoints"
    }


def test_unknown_topic_has_no_identity():
    assert identities_from(response((3, "gone", bytes(16)))) == {}


def test_request_names_the_topics_and_never_creates_one():
    struct = TopicIdRequest(["shop.touchpoints"]).build(MetadataRequest_v12)

    assert struct.to_object()["topics"] == [
        {"topic_id": bytes(16), "name": "shop.touchpoints", "tags": {}}
    ]
    assert struct.to_object()["allow_auto_topic_creation"] is False


class Answers:
    """Stands in for the broker's Metadata answers, one per look-up (None: unreachable)."""

    def __init__(self, *answers: dict[str, str] | None) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def __call__(self, client: object, topics: list[str]) -> dict[str, str]:
        self.asked += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is None:
            raise ConnectionError("broker away")
        return answer


def identities(monkeypatch: pytest.MonkeyPatch, answers: Answers) -> TopicIdentities:
    monkeypatch.setattr(topic_identity, "lookup", answers)
    monkeypatch.setattr(topic_identity, "RETRY_S", (0.0, 0.0))
    ids = TopicIdentities(Settings())

    async def started() -> object:
        return object()

    monkeypatch.setattr(ids, "_started", started)
    return ids


async def test_identity_is_asked_once_then_again_only_after_forget(monkeypatch):
    answers = Answers({"tp": "A"}, {"tp": "B"})
    ids = identities(monkeypatch, answers)

    assert [await ids.get("tp"), await ids.get("tp")] == ["A", "A"]
    assert answers.asked == 1
    ids.forget()
    assert await ids.get("tp") == "B"
    assert answers.asked == 2


async def test_a_partition_whose_topic_has_a_new_identity_is_restarted(monkeypatch):
    ids = identities(monkeypatch, Answers({"tp": "A"}, {"tp": "A"}, {"tp": "B"}))
    tp = TP("tp", 0)
    ids.stamp(tp, await ids.get("tp"))

    assert not await ids.restarted(tp)  # same topic: a stale fetch, dropped as before
    assert await ids.restarted(tp)  # created again


async def test_broker_away_after_an_assignment_keeps_the_known_identity(monkeypatch):
    ids = identities(monkeypatch, Answers({"tp": "A"}, None))
    await ids.get("tp")
    ids.forget()

    assert await ids.get("tp") == "A"
