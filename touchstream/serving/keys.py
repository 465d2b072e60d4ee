"""Redis key layout of the single customer view."""

from collections.abc import Mapping
from typing import Any

PROFILE_PREFIX = "ts:profile:"
ALIAS_PREFIX = "ts:alias:"
# present while Redis holds every profile; gone after a flush or an empty restart
SYNC_MARKER = "ts:meta:profiles-synced"
INT_FIELDS = frozenset(
    {
        "points",
        "touchpoints",
        "qualifying_spend_minor",
        "orders",
        "version",
        "open_cart_value_minor",
        "sessions_today",
        "page_views_today",
        "product_views_today",
        "searches_today",
        "cart_adds_today",
        "r_score",
        "f_score",
        "m_score",
        "orders_365",
        "spend_365_minor",
        "avg_order_value_minor",
        "points_today",
        "spend_today_minor",
        "points_this_month",
        "spend_this_month_minor",
    }
)
FLOAT_FIELDS = frozenset({"avg_days_between_purchases"})


def profile_key(customer_id: str) -> str:
    return PROFILE_PREFIX + customer_id


def alias_key(kind: str, value: str) -> str:
    return f"{ALIAS_PREFIX}{kind}:{value}"


# A Redis profile key erased or dropped holds a versioned tombstone, {"erased": "1", "version":
# N}, for TOUCHSTREAM_REDIS_TOMBSTONE_TTL_S: no stale or queued write numbered N or lower
# can bring the profile back (serving/redis_sync.py); readers treat it as no profile.
TOMBSTONE_FIELD = "erased"


def is_tombstone(raw: Mapping[Any, Any]) -> bool:
    return TOMBSTONE_FIELD in raw or TOMBSTONE_FIELD.encode() in raw


def decode_profile(raw: dict[bytes, bytes] | dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else k
        text = v.decode() if isinstance(v, bytes) else v
        if name in INT_FIELDS and text.lstrip("-").isdigit():
            out[name] = int(text)
        elif name in FLOAT_FIELDS and text:
            out[name] = float(text)
        else:
            out[name] = text
    return out
