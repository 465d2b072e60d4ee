"""The identity of an input topic: the id Kafka gives a topic when it creates it.

The per-customer stage remembers the highest inbound offset it applied per topic identity and
partition (``domain.customer.src_key``). A topic deleted and created again under the same name
starts its offsets at 0 again, and a mirrored or a second input topic has offsets of its own:
keyed by partition number alone, their new events would be dropped as duplicates. Kafka gives
every topic a random id (a UUID, since Kafka 2.8, KIP-516) that changes when the topic is
created again; ingest carries it on each internal event.

aiokafka (0.14) speaks Metadata up to version 5, which has no topic id, so this module sends
its own Metadata request, version 10 to 12 (the first with ``topic_id``; declared in
``streams.metadata_request``), over aiokafka's connection (its version negotiation, login and
TLS). The id is written as Kafka's own tools print it (``kafka-topics.sh --describe``: 22
characters of URL-safe base64).

A broker that has no topic ids (older than 2.8, or one that answers the all-zero id, as some
Kafka-protocol brokers do) gives ``name:<topic>`` instead: a second input topic is still told
apart, a topic re-created under the same name is not (the offsets it restarts are then skipped
up to the highest offset applied before, as before topic ids). docs/operations.md says so.

Looked up once per topic and again after each partition assignment and whenever a partition's
offsets go backwards (a re-created topic read from its start, or a rewound group: one small
request each), never per record.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any, TypeAlias

from aiokafka.client import AIOKafkaClient

from touchstream.config.settings import Settings
from touchstream.streams.kafka_client import client_kwargs
from touchstream.streams.metadata_request import (
    ZERO_ID,
    MetadataRequest,
    MetadataRequest_v10,
    MetadataRequest_v12,
)

log = logging.getLogger(__name__)
RETRY_S = (0.2, 5.0)  # first and longest wait between failed look-ups
KEEP_AFTER_ATTEMPTS = 3  # failed look-ups before a batch goes on with the identity known before


TopicIdRequestStruct: TypeAlias = MetadataRequest_v10 | MetadataRequest_v12


class TopicIdRequest(MetadataRequest[TopicIdRequestStruct]):
    """Metadata of named topics, in the first versions that carry their ids."""


def format_topic_id(raw: bytes) -> str:
    """As Kafka prints a topic id (``Uuid.toString``): URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def name_identity(topic: str) -> str:
    """The identity of a topic on a broker without topic ids: its name."""
    return f"name:{topic}"


def identities_from(response: Any) -> dict[str, str]:
    """Topic name -> identity of each topic the response names without an error."""
    out = {}
    for error_code, name, topic_id, *_ in response.topics:
        if error_code == 0 and name is not None:
            out[name] = name_identity(name) if topic_id == ZERO_ID else format_topic_id(topic_id)
    return out


async def lookup(client: AIOKafkaClient, topics: list[str]) -> dict[str, str]:
    """Each topic's identity, in one Metadata request to any broker; a topic the broker does
    not know (deleted, not yet created) is left out. A broker whose Metadata has no topic ids
    (before 2.8) gives each topic its name identity."""
    node = client.get_random_node()
    if node is None:
        await client.force_metadata_update()
        node = client.get_random_node()
    if node is None:
        raise ConnectionError("no broker known")
    try:
        response = await client.send(node, TopicIdRequest(topics))
    except NotImplementedError:  # the broker speaks no Metadata version with topic ids
        return {name: name_identity(name) for name in topics}
    return identities_from(response)


async def identity_of(bootstrap: str, topic: str, **security: Any) -> str | None:
    """One topic's identity with a client of its own (tools, tests, the chaos oracle)."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, client_id="touchstream-topic-ids", **security
    )
    await client.bootstrap()
    try:
        return (await lookup(client, [topic])).get(topic)
    finally:
        await client.close()


class TopicIdentities:
    """The identity of each input topic, cached; ``forget`` makes the next batch ask again."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AIOKafkaClient | None = None
        self._known: dict[str, str] = {}
        self._stale: set[str] = set()
        self._handled: dict[Any, str] = {}

    def stamp(self, tp: Any, identity: str) -> None:
        """The identity of the topic ``tp``'s records handled last came from."""
        self._handled[tp] = identity

    async def restarted(self, tp: Any) -> bool:
        """Whether ``tp``'s topic has another identity than the records handled last came
        from: deleted and created again (asked when its offsets went backwards)."""
        before = self._handled.get(tp)
        if before is None:
            return False
        self.forget(tp.topic)
        return await self.get(tp.topic, keep=False) != before

    def forget(self, topic: str | None = None) -> None:
        """Ask again before the next batch: of ``topic``, or of every topic (an assignment)."""
        self._stale.update(self._known if topic is None else [topic])

    def known(self, topic: str, identity: str) -> None:
        """Take ``identity`` as ``topic``'s without asking (tools and tests with no broker)."""
        self._known[topic] = identity
        self._stale.discard(topic)

    def cached(self, topic: str) -> str | None:
        return None if topic in self._stale else self._known.get(topic)

    async def get(self, topic: str, keep: bool = True) -> str:
        """The topic's identity: from the cache, or asked until the broker answers (the
        batch waits, as it would for its output; a wrong identity would drop events). With
        ``keep``, after KEEP_AFTER_ATTEMPTS failed look-ups the identity known before is
        kept: a broker slow to answer after a rebalance does not hold the batch for ever."""
        known = self.cached(topic)
        if known is not None:
            return known
        backoff = RETRY_S[0]
        attempt = 0
        while True:
            attempt += 1
            try:
                found = await lookup(await self._started(), [topic])
            except Exception as exc:  # a broker away or restarting: ask again
                log.warning("cannot look up the identity of topic %s (%r); retrying", topic, exc)
                found = {}
            identity = found.get(topic)
            previous = self._known.get(topic)
            if (
                identity is None
                and keep
                and previous is not None
                and attempt >= KEEP_AFTER_ATTEMPTS
            ):
                # asked again only as a precaution (an assignment): the records in hand were
                # read from the topic the last answer named, unless it was re-created just now
                self._stale.discard(topic)
                return previous
            if identity is not None:
                if self._known.get(topic, identity) != identity:
                    log.warning(
                        "topic %s was created again: identity %s, was %s",
                        topic,
                        identity,
                        self._known[topic],
                    )
                self._known[topic] = identity
                self._stale.discard(topic)
                return identity
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_S[1])

    async def _started(self) -> AIOKafkaClient:
        if self._client is None:
            client = AIOKafkaClient(
                client_id=f"{self._settings.app_id}-topic-ids", **client_kwargs(self._settings)
            )
            await client.bootstrap()
            self._client = client
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
