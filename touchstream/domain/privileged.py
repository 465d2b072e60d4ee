"""Which inbound events are privileged commands (README, "Privileged commands").

An erasure, an access request, a redemption (spending points) and a consent *grant* act on a
customer's data or money on the customer's behalf: they are accepted only from the privileged
input topic (``touchpoints.privileged``), whose write ACL belongs to the data-request and
loyalty services. On the ordinary input they go to the DLQ with reason
``privileged_command_on_public_input``. A consent *withdrawal* (an opt-out, an unsubscribe)
only ever takes something away, so it is accepted from any channel.
"""

from __future__ import annotations

from typing import Any

PRIVILEGED_TYPES = frozenset({"erasure_requested", "access_requested", "redemption"})


def requires_privilege(event: dict[str, Any]) -> bool:
    """True if ``event`` (schema-valid, as decoded) may only come from the privileged input."""
    return _command(event.get("type"), event.get("properties"))


def is_command(internal: dict[str, Any]) -> bool:
    """``requires_privilege`` of an event as ingest hands it to the customer stage (its
    properties under ``props``): a privileged command moves no partition clock
    (docs/domain.md, "Event time and timers")."""
    return _command(internal.get("type"), internal.get("props"))


def _command(kind: Any, properties: Any) -> bool:
    if kind in PRIVILEGED_TYPES:
        return True
    if kind == "consent_updated":
        purposes = (properties or {}).get("purposes") or {}
        return any(granted is True for granted in purposes.values())
    return False


def refusal(event: dict[str, Any]) -> str:
    """The DLQ message of a privileged command found on the ordinary input."""
    kind = event.get("type")
    what = "a consent grant" if kind == "consent_updated" else f"{kind!r}"
    return (
        f"{what} is a privileged command: accepted only on the privileged input topic "
        "(touchpoints.privileged), whose write ACL belongs to the data-request and loyalty "
        "services"
    )
