"""Redis key layout of the single customer view."""

PROFILE_PREFIX = "ts:profile:"
ALIAS_PREFIX = "ts:alias:"
# present while Redis holds every profile; gone after a flush or an empty restart
SYNC_MARKER = "ts:meta:profiles-synced"
INT_FIELDS = frozenset(
    {
        "points",
        "qualifying_spend_minor",
        "orders",
        "version",
        "open_cart_value_minor",
        "sessions_today",
        "page_views_today",
        "product_views_today",
        "searches_today",
        "cart_adds_today",
    }
)


def profile_key(customer_id: str) -> str:
    return PROFILE_PREFIX + customer_id


def alias_key(kind: str, value: str) -> str:
    return f"{ALIAS_PREFIX}{kind}:{value}"


def decode_profile(raw: dict[bytes, bytes] | dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in raw.items():
        name = k.decode() if isinstance(k, bytes) else k
        text = v.decode() if isinstance(v, bytes) else v
        out[name] = int(text) if name in INT_FIELDS and text.lstrip("-").isdigit() else text
    return out
