"""The input topic's identity as read from a Metadata response: Kafka's topic id as its tools
print it, or the topic's name on a broker that has no topic ids."""

import base64
import uuid

from touchstream.streams.topic_identity import (
    MetadataRequest_v12,
    MetadataResponse_v12,
    TopicIdRequest,
    identities_from,
)

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
