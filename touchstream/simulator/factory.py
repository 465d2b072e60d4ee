"""Build single contract-valid events (tests, examples, ad-hoc producers)."""

from __future__ import annotations

import itertools
import time
from typing import Any

_ids = itertools.count(1)


def event(
    type_: str,
    identity: dict[str, str],
    properties: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    occurred_at: int | str | None = None,
    channel: str = "web",
    source: str = "web-eu",
) -> dict[str, Any]:
    return {
        "event_id": event_id or f"ev-{time.time_ns()}-{next(_ids)}",
        "type": type_,
        "schema_version": 1,
        "occurred_at": occurred_at if occurred_at is not None else int(time.time() * 1000),
        "channel": channel,
        "source": source,
        "identity": identity,
        "properties": properties or {},
    }


def purchase(
    identity: dict[str, str],
    order_id: str,
    total_minor: int,
    *,
    discount_minor: int = 0,
    channel: str = "pos",
    **kwargs: Any,
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "order_id": order_id,
        "total_minor": total_minor,
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": total_minor}],
    }
    if discount_minor:
        props["discount_minor"] = discount_minor
    return event("purchase", identity, props, channel=channel, **kwargs)


def internal(
    cid: str,
    ids: dict[str, str],
    type_: str,
    event_id: str,
    offset: int,
    partition: int = 0,
    at: int = 0,
    *,
    topic: str | None = None,
    **props: Any,
) -> dict[str, Any]:
    """An event as ingest hands it to the per-customer stage (unit tests of the pure core);
    ``topic``: the inbound topic's identity (None: an event of the format before identities)."""
    return {
        "id": event_id,
        "type": type_,
        "at": at,
        "ch": "pos",
        "src": "store-042",
        "ids": ids,
        "cid": cid,
        "props": props,
        "in": [partition, offset] if topic is None else [partition, offset, topic],
        "ts": at + 1_000,
    }
