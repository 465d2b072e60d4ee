"""Identifiers: normalised so one shopper links across touchpoints, raw email/phone never kept,
placeholder values never linked, and customer ids minted deterministically."""

import re

import pytest

from touchstream.config.rules import parse_rules
from touchstream.domain.identity import IdentityNormaliser, mint_customer_id
from touchstream.errors import SchemaViolation

SECRET = "unit-test-hmac-secret-0123456789abcdef"
SPEC_BLOCKED = ["", "null", "none", "undefined", "anonymous", "0", "-1"]
KINDS = ["customer_id", "loyalty_id", "email", "phone", "device_id", "anonymous_id"]


@pytest.fixture
def ids() -> IdentityNormaliser:
    return IdentityNormaliser(SECRET)


def test_email_is_trimmed_and_lower_cased_before_hashing(ids):
    assert ids.normalise_value("email", " Ann@Example.COM ") == ids.normalise_value(
        "email", "ann@example.com"
    )


def test_different_emails_hash_differently(ids):
    assert ids.normalise_value("email", "ann@example.com") != ids.normalise_value(
        "email", "anna@example.com"
    )


def test_stored_email_is_a_keyed_hash_not_the_address(ids):
    stored = ids.normalise_value("email", "Ann@Example.com")

    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert "ann" not in stored
    assert stored != IdentityNormaliser("another-secret-0123456789abcdef-xyz").normalise_value(
        "email", "Ann@Example.com"
    )


def test_stored_phone_is_a_keyed_hash_not_the_number(ids):
    stored = ids.normalise_value("phone", "+49 170 1234567")

    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert "1701234567" not in stored
    assert stored != IdentityNormaliser("another-secret-0123456789abcdef-xyz").normalise_value(
        "phone", "+49 170 1234567"
    )


def test_email_and_phone_hashes_do_not_collide_across_kinds(ids):
    assert ids.hash("email", "x") != ids.hash("phone", "x")


def test_normalise_never_returns_raw_email_or_phone(ids):
    out = ids.normalise({"email": "ann@example.com", "phone": "+49 170 1234567"})

    assert "ann@example.com" not in out.values()
    assert not any("1234567" in v for v in out.values())


@pytest.mark.parametrize("written", ["+49 170 1234567", "0049-170-1234567", "+49-170-123 45 67"])
def test_phone_written_with_country_code_in_any_format_is_one_number(ids, written):
    assert ids.normalise_value("phone", written) == ids.normalise_value("phone", "+491701234567")


def test_national_phone_gets_the_default_country_code():
    german = IdentityNormaliser(SECRET, default_country_code="49")

    assert (
        german.normalise_value("phone", "0170 1234567")
        == german.normalise_value("phone", "+49 170 1234567")
        == german.normalise_value("phone", "0049-170-1234567")
    )


def test_default_country_code_does_not_touch_international_numbers():
    german = IdentityNormaliser(SECRET, default_country_code="49")

    assert german.normalise_value("phone", "+33 6 12 34 56 78") == german.normalise_value(
        "phone", "0033 6 12 34 56 78"
    )
    assert german.normalise_value("phone", "+33 6 12 34 56 78") != german.normalise_value(
        "phone", "06 12 34 56 78"
    )


def test_national_phone_without_default_country_code_is_not_guessed(ids):
    assert ids.normalise_value("phone", "0170 1234567") != ids.normalise_value(
        "phone", "+49 170 1234567"
    )


@pytest.mark.parametrize("raw", ["12345", "+0", "000000", "n/a-phone"])
def test_unusable_phone_is_dropped(ids, raw):
    assert ids.normalise_value("phone", raw) is None


def test_email_without_at_sign_is_dropped(ids):
    assert ids.normalise_value("email", "not-an-email") is None


def test_non_hashed_identifiers_are_trimmed_and_kept_verbatim(ids):
    assert ids.normalise_value("loyalty_id", "  L-0042 ") == "L-0042"
    assert ids.normalise_value("customer_id", "CRM-Abc") == "CRM-Abc"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "raw",
    [*SPEC_BLOCKED, " ", "NULL", " None ", "Undefined", "ANONYMOUS", " -1 ", "\t0\n"],
)
def test_placeholder_values_are_never_linked(ids, kind, raw):
    assert ids.normalise_value(kind, raw) is None


def test_values_outside_the_specified_blocklist_are_kept(ids):
    # docs/domain.md, "Identity": the built-in list is blank, null, none, undefined, anonymous,
    # 0, -1, plus the values listed in the rules file; "nothing else is blocked by default"
    assert ids.normalise_value("anonymous_id", "n/a") == "n/a"
    assert ids.normalise_value("anonymous_id", "nan") == "nan"


def test_rules_file_additions_are_blocked_case_insensitively():
    rules = parse_rules('[identity]\nblocked_values = ["Guest", " test@example.com "]\n')
    ids = IdentityNormaliser(SECRET, rules.identity.blocked_values)

    assert ids.normalise_value("anonymous_id", "guest") is None
    assert ids.normalise_value("loyalty_id", " GUEST ") is None
    assert ids.normalise_value("email", "TEST@example.com") is None
    assert ids.normalise_value("anonymous_id", "guest-42") == "guest-42"


def test_rules_file_additions_do_not_replace_the_builtin_list():
    ids = IdentityNormaliser(SECRET, ["guest"])

    assert ids.normalise_value("device_id", "null") is None


def test_blocked_identifiers_are_dropped_and_the_rest_kept(ids):
    out = ids.normalise({"customer_id": "null", "loyalty_id": "L-1", "anonymous_id": "undefined"})

    assert out == {"loyalty_id": "L-1"}


def test_identity_with_only_placeholders_is_a_schema_violation(ids):
    with pytest.raises(SchemaViolation) as error:
        ids.normalise({"email": "none", "device_id": "0", "anonymous_id": "Anonymous"})

    assert error.value.reason == "schema_violation"
    assert "identity" in error.value.message


def test_normalise_lists_identifiers_in_priority_order(ids):
    out = ids.normalise(
        {"anonymous_id": "a1", "device_id": "d1", "loyalty_id": "L-1", "customer_id": "C-1"}
    )

    assert list(out) == ["customer_id", "loyalty_id", "device_id", "anonymous_id"]


def test_crm_customer_id_is_the_customer_id(ids):
    identifiers = ids.normalise({"customer_id": " CRM-778 ", "email": "ann@example.com"})

    assert mint_customer_id(identifiers) == "CRM-778"


def test_minted_id_is_prefixed_and_deterministic(ids):
    first = mint_customer_id(ids.normalise({"email": "Ann@Example.com"}))
    again = mint_customer_id(ids.normalise({"email": " ann@example.com"}))

    assert first.startswith("ts-")
    assert len(first) > len("ts-") + 8
    assert first == again


@pytest.mark.parametrize(
    ("stronger", "weaker"),
    [
        ("loyalty_id", "email"),
        ("email", "phone"),
        ("phone", "device_id"),
        ("device_id", "anonymous_id"),
        ("loyalty_id", "anonymous_id"),
    ],
)
def test_minted_id_follows_the_highest_priority_identifier(stronger, weaker):
    both = {stronger: "S-1", weaker: "W-1"}

    assert mint_customer_id(both) == mint_customer_id({stronger: "S-1"})
    assert mint_customer_id(both) != mint_customer_id({weaker: "W-1"})


def test_minted_id_depends_on_the_identifier_kind():
    assert mint_customer_id({"loyalty_id": "X-1"}) != mint_customer_id({"device_id": "X-1"})


def test_different_shoppers_get_different_ids(ids):
    assert mint_customer_id(ids.normalise({"email": "ann@example.com"})) != mint_customer_id(
        ids.normalise({"email": "bob@example.com"})
    )


def test_minted_id_never_contains_the_raw_email(ids):
    minted = mint_customer_id(ids.normalise({"email": "ann@example.com"}))

    assert "ann" not in minted
    assert "example" not in minted
