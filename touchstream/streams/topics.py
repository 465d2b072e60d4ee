"""Every topic Touchstream reads or writes (names before the optional TOUCHSTREAM_TOPIC_PREFIX)."""

from touchstream.domain.trigger_catalog import TRIGGER_TOPICS

TOUCHPOINTS = "touchpoints"
# the privileged input: erasure, access, redemption and consent grants (domain.privileged);
# only the data-request and loyalty services' principals may write it (docs/security.md)
PRIVILEGED = "touchpoints.privileged"
INPUTS = (TOUCHPOINTS, PRIVILEGED)

DLQ = "touchpoints.dlq"
# records whose processing raised (a bug, not a contract violation), parked with the error
# and their original bytes; `touchstream dlq replay --from quarantine` sends them back
QUARANTINE = "touchstream.quarantine"
# internal: valid, normalised events keyed by customer id (the per-customer stage's input)
CUSTOMER_EVENTS = "touchstream.customer-events"
PROFILES_UPDATES = "profiles.updates"
PROFILES_MERGES = "profiles.merges"
# links refused by a per-profile identifier limit (shared-device protection), with the reason
IDENTITY_REFUSALS = "identity.refusals"
SESSIONS = "sessions"
LOYALTY_OUTCOMES = "loyalty.outcomes"
TRIGGERS_AUDIT = "triggers.audit"
PRIVACY_RECEIPTS = "privacy.receipts"
PRIVACY_EXPORTS = "privacy.exports"

OUTPUTS = (
    DLQ,
    QUARANTINE,
    PROFILES_UPDATES,
    PROFILES_MERGES,
    IDENTITY_REFUSALS,
    SESSIONS,
    LOYALTY_OUTCOMES,
    TRIGGERS_AUDIT,
    PRIVACY_RECEIPTS,
    PRIVACY_EXPORTS,
    *TRIGGER_TOPICS.values(),
)


def privileged_input(touchpoints: str) -> str:
    """The privileged input beside ``touchpoints``, a worker's TOUCHPOINTS with its topic prefix
    applied (``Settings.topic``): the same prefix applied to PRIVILEGED, the topic that worker
    reads privileged commands from."""
    return touchpoints + PRIVILEGED.removeprefix(TOUCHPOINTS)
