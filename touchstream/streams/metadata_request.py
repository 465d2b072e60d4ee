"""Kafka's Metadata request in the versions aiokafka (0.14, up to version 5) does not speak.

Two callers ask it of named topics, each in the versions that carry what it needs:
``streams.kafka_access`` in version 8 (KIP-430's authorized operations per topic) and
``streams.topic_identity`` in versions 10 and 12 (the topic id, KIP-516). ``MetadataRequest``
builds either from the same fields; a subclass names its versions in ``MetadataRequest[...]``
(oldest first), from which aiokafka picks the newest the broker speaks.

Schemas from Kafka's clients/src/main/resources/common/message/Metadata*.json: v9 made the
request and response flexible (compact types, tagged fields), v10 added the topic id, v11
dropped the cluster's authorized operations, v12 only made a topic's name nullable.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, ClassVar, TypeVar

from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Array,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    String,
    TaggedFields,
)

API_KEY = 3
ZERO_ID = bytes(16)  # no topic id: a request naming a topic, or a broker without ids


class Uuid(AbstractType[bytes]):
    """Kafka's uuid: 16 bytes as they are."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding uuid")
        return value


# version 8: not flexible; each topic's authorized operations (KIP-430)


class MetadataResponse_v8(Response):  # aiokafka names protocol versions so
    API_KEY = API_KEY
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            Array(
                ("node_id", Int32),
                ("host", String("utf-8")),
                ("port", Int32),
                ("rack", String("utf-8")),
            ),
        ),
        ("cluster_id", String("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("topic", String("utf-8")),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition", Int32),
                        ("leader", Int32),
                        ("leader_epoch", Int32),
                        ("replicas", Array(Int32)),
                        ("isr", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("topic_authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class MetadataRequest_v8(RequestStruct):
    API_KEY = API_KEY
    API_VERSION = 8
    RESPONSE_TYPE = MetadataResponse_v8
    SCHEMA = Schema(
        ("topics", Array(String("utf-8"))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


# versions 10 and 12: flexible; each topic's id

_PARTITION = (
    ("error_code", Int16),
    ("partition_index", Int32),
    ("leader_id", Int32),
    ("leader_epoch", Int32),
    ("replica_nodes", CompactArray(Int32)),
    ("isr_nodes", CompactArray(Int32)),
    ("offline_replicas", CompactArray(Int32)),
    ("tags", TaggedFields),
)
_BROKERS = (
    "brokers",
    CompactArray(
        ("node_id", Int32),
        ("host", CompactString("utf-8")),
        ("port", Int32),
        ("rack", CompactString("utf-8")),
        ("tags", TaggedFields),
    ),
)
_TOPICS = (
    "topics",
    CompactArray(
        ("error_code", Int16),
        ("name", CompactString("utf-8")),
        ("topic_id", Uuid),
        ("is_internal", Boolean),
        ("partitions", CompactArray(*_PARTITION)),
        ("topic_authorized_operations", Int32),
        ("tags", TaggedFields),
    ),
)
_REQUEST_TOPICS = (
    "topics",
    CompactArray(("topic_id", Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)),
)
_HEAD = (("throttle_time_ms", Int32), _BROKERS, ("cluster_id", CompactString("utf-8")))
_RESPONSE_V12 = (*_HEAD, ("controller_id", Int32), _TOPICS)
_REQUEST_V12 = (_REQUEST_TOPICS, ("allow_auto_topic_creation", Boolean))
_TAGS = ("tags", TaggedFields)


class MetadataResponse_v10(Response):
    API_KEY = API_KEY
    API_VERSION = 10
    SCHEMA = Schema(*_RESPONSE_V12, ("cluster_authorized_operations", Int32), _TAGS)


class MetadataResponse_v12(Response):
    API_KEY = API_KEY
    API_VERSION = 12
    SCHEMA = Schema(*_RESPONSE_V12, _TAGS)


class MetadataRequest_v10(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = API_KEY
    API_VERSION = 10
    RESPONSE_TYPE = MetadataResponse_v10
    SCHEMA = Schema(
        *_REQUEST_V12,
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        _TAGS,
    )


class MetadataRequest_v12(MetadataRequest_v10):
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(*_REQUEST_V12, ("include_topic_authorized_operations", Boolean), _TAGS)


Struct = TypeVar("Struct", bound=RequestStruct)


class MetadataRequest(Request[Struct]):
    """Metadata of the named ``topics``, never creating one, never asking the cluster's
    authorized operations; each topic's authorized operations when the subclass sets
    ``TOPIC_AUTHORIZED_OPERATIONS``. Subclass with the versions it is sent in."""

    API_KEY = API_KEY
    TOPIC_AUTHORIZED_OPERATIONS: ClassVar[bool] = False

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[Struct]) -> Struct:
        # from version 10 a topic is named by id or name: by name here, the id left zero
        by_id = request_struct_class.API_VERSION >= 10
        values: dict[str, Any] = {
            "topics": [(ZERO_ID, name, {}) for name in self._topics] if by_id else self._topics,
            "allow_auto_topic_creation": False,
            "include_cluster_authorized_operations": False,
            "include_topic_authorized_operations": self.TOPIC_AUTHORIZED_OPERATIONS,
            "tags": {},
        }
        return request_struct_class(*(values[name] for name in request_struct_class.SCHEMA.names))
