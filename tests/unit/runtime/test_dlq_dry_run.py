"""``dlq replay --dry-run``: the original bytes of DLQ records run through the current validation
(decode + ingest normalisation) and are counted by original reason and outcome."""

import copy
from typing import Any

import orjson

from touchstream.config.rules import load_rules, parse_rules
from touchstream.domain.identity import IdentityNormaliser
from touchstream.domain.ingest import Ingest
from touchstream.runtime.dlq_replay import DryRun, classify, revalidate
from touchstream.schemas.dlq import dlq_record

SECRET = "unit-test-hmac-secret-0123456789abcdef"
MAX = 65_536
NOW = 1_795_183_500_000
DAY_MS = 86_400_000

PURCHASE: dict[str, Any] = {
    "event_id": "store-042-000007",
    "type": "purchase",
    "schema_version": 1,
    "occurred_at": 1_795_183_407_512,
    "channel": "pos",
    "source": "store-042",
    "identity": {"loyalty_id": "L-0042-118877"},
    "properties": {
        "order_id": "POS-042-20261120-0193",
        "total_minor": 11597,
        "currency": "EUR",
        "items": [
            {"sku": "SKU-10442", "quantity": 1, "unit_price_minor": 8999, "category": "shoes"},
            {"sku": "SKU-20017", "quantity": 2, "unit_price_minor": 1299, "category": "socks"},
        ],
    },
}


def purchase(**changes: Any) -> bytes:
    event = copy.deepcopy(PURCHASE)
    for name, value in changes.items():
        target = event["properties"] if name in event["properties"] else event
        target[name] = value
    return orjson.dumps(event)


VALID = purchase()
USD = purchase(currency="USD")
ZERO_QUANTITY = purchase(items=[{"sku": "S", "quantity": 0, "unit_price_minor": 1}])
FAR_FUTURE = purchase(occurred_at=NOW + 2 * DAY_MS)
POISON = {
    b'{"event_id": "x", "type": "purchase", ': "invalid_json",
    b"": "invalid_json",
    b'{"type": "\xff"}': "invalid_utf8",
    b"{" + b" " * MAX + b"}": "too_large",
    purchase(type="teleport"): "unknown_type",
    purchase(schema_version=2): "unsupported_version",
    b"[1, 2]": "schema_violation",
    ZERO_QUANTITY: "schema_violation",
    purchase(total_minor=12.0): "schema_violation",
    FAR_FUTURE: "schema_violation",
    USD: "unsupported_currency",
}


def make_ingest(rules_text: str = "") -> Ingest:
    rules = parse_rules(rules_text) if rules_text else load_rules(None)
    return Ingest(rules.program, IdentityNormaliser(SECRET), DAY_MS)


def entry(reason: str, value: bytes | None, offset: int = 0) -> dict[str, Any]:
    record = dlq_record(reason, "why", "touchpoints", 0, offset, None, b"k", value)
    return orjson.loads(record)


def test_a_valid_event_passes_and_every_poison_kind_gets_its_reason() -> None:
    ingest = make_ingest()
    assert revalidate(VALID, ingest, MAX, NOW) == "pass"
    for raw, reason in POISON.items():
        assert revalidate(raw, ingest, MAX, NOW) == reason, raw[:60]
    assert revalidate(None, ingest, MAX, NOW) == "invalid_json"


def test_the_current_rules_decide_exchange_rates_and_max_bytes() -> None:
    with_rate = make_ingest("[program]\nexchange_rates = { USD = 0.9 }\n")
    assert revalidate(USD, with_rate, MAX, NOW) == "pass"
    assert revalidate(VALID, with_rate, len(VALID) - 1, NOW) == "too_large"
    # the wall clock moved on: the event is no longer too far in the future
    assert revalidate(FAR_FUTURE, with_rate, MAX, NOW + DAY_MS) == "pass"


def test_report_counts_by_original_reason_and_outcome() -> None:
    ingest = make_ingest("[program]\nexchange_rates = { USD = 0.9 }\n")
    entries = [
        entry("unsupported_currency", USD, 0),  # a rate was configured since: passes
        entry("unsupported_currency", USD, 1),
        entry("schema_violation", VALID, 2),  # the producer bug is fixed in the schema: passes
        entry("schema_violation", ZERO_QUANTITY, 3),
        entry("schema_violation", purchase(currency="GBP"), 4),  # now fails for another reason
        entry("invalid_json", b"not json", 5),
        entry("invalid_json", b"{", 6),
        entry("internal_error", None, 7),
    ]
    report = classify(entries, ingest, MAX, NOW, DryRun(skipped=3))

    assert (report.read, report.passing, report.skipped) == (8, 3, 3)
    assert report.rows() == [
        ("schema_violation", "pass", 1),
        ("unsupported_currency", "pass", 2),
        ("internal_error", "invalid_json", 1),
        ("invalid_json", "invalid_json", 2),
        ("schema_violation", "schema_violation", 1),
        ("schema_violation", "unsupported_currency", 1),
    ]
    assert report.format("touchpoints.dlq") == (
        "dry run: read 8 records from touchpoints.dlq (3 left: other reasons, or originals kept only in part);"
        " nothing produced, no offsets committed\n"
        "would pass 3, would still fail 5\n"
        "original reason        now                    records\n"
        "schema_violation       pass                         1\n"
        "unsupported_currency   pass                         2\n"
        "internal_error         invalid_json                 1\n"
        "invalid_json           invalid_json                 2\n"
        "schema_violation       schema_violation             1\n"
        "schema_violation       unsupported_currency         1"
    )
    assert report.as_json()["pass"] == 3
    assert report.as_json()["fail"] == 5
    assert report.as_json()["outcomes"][5] == {
        "original": "schema_violation",
        "now": "unsupported_currency",
        "records": 1,
    }


def test_an_empty_selection_reports_zero() -> None:
    report = classify([], make_ingest(), MAX, NOW, DryRun())
    assert report.format("dlq") == (
        "dry run: read 0 records from dlq (0 left: other reasons, or originals kept only in part);"
        " nothing produced, no offsets committed\n"
        "would pass 0, would still fail 0"
    )
