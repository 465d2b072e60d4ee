"""Identifier normalisation, blocking, keyed hashing and customer-id minting."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from touchstream.config.rules import IDENTIFIER_KINDS
from touchstream.errors import SchemaViolation

# The values producers send when they have no identifier; linking on them would merge strangers.
BUILTIN_BLOCKED = frozenset({"", "null", "none", "undefined", "anonymous", "0", "-1"})
HASHED_KINDS = frozenset({"email", "phone"})
PRIORITY = {kind: rank for rank, kind in enumerate(IDENTIFIER_KINDS)}


class IdentityNormaliser:
    def __init__(self, secret: str, blocked: Iterable[str] = (), default_country_code: str = ""):
        self._key = secret.encode("utf-8")
        self._blocked = BUILTIN_BLOCKED | {b.strip().lower() for b in blocked}
        self._cc = default_country_code

    def hash(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def normalise_value(self, kind: str, raw: str) -> str | None:
        """The canonical form of one identifier, or None when it is blocked or unusable."""
        value = raw.strip()
        if value.lower() in self._blocked:
            return None
        if kind == "email":
            value = value.lower()
            if "@" not in value:
                return None
        elif kind == "phone":
            phone = self._phone(value)
            if phone is None:
                return None
            value = phone
        if value.lower() in self._blocked:
            return None
        return self.hash(kind, value) if kind in HASHED_KINDS else value

    def _phone(self, raw: str) -> str | None:
        digits = "".join(ch for ch in raw if ch.isdigit())
        if raw.startswith("+"):
            pass
        elif digits.startswith("00"):
            digits = digits[2:]
        elif digits.startswith("0") and self._cc:
            digits = self._cc + digits[1:]
        elif not self._cc:
            pass  # already written with its country code, without '+'
        if len(digits) < 6 or set(digits) == {"0"}:
            return None
        return "+" + digits

    def normalise(self, identity: Mapping[str, str]) -> dict[str, str]:
        """Usable identifiers of an event, in priority order; at least one or SchemaViolation."""
        out: dict[str, str] = {}
        for kind in IDENTIFIER_KINDS:
            raw = identity.get(kind)
            if raw is None:
                continue
            value = self.normalise_value(kind, raw)
            if value is not None:
                out[kind] = value
        if not out:
            raise SchemaViolation(
                "identity has no usable identifier (all are blank, placeholders or blocked)"
            )
        return out


def home_of(kind: str, value: str) -> str:
    """The customer id an identifier mints: the CRM's own id, else ``ts-`` + a digest of it.

    Every identifier has exactly one home record in the customers table, so whichever worker
    and partition sees an identifier first, it resolves through the same key. Deterministic,
    so a replay mints the same id.
    """
    if kind == "customer_id":
        return value
    digest = hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()
    return f"ts-{digest[:24]}"


def strongest(identifiers: Mapping[str, str]) -> str:
    """The kind of the highest-priority identifier present."""
    return min(identifiers, key=PRIORITY.__getitem__)


def mint_customer_id(identifiers: Mapping[str, str]) -> str:
    """The home of the strongest identifier: where an event is routed first."""
    kind = strongest(identifiers)
    return home_of(kind, identifiers[kind])


def link_mark(kind: str, value: str) -> str:
    """A short name of one identifier, for the links a profile refused or asked for."""
    return hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=8).hexdigest()


def held_marks(identifiers: Mapping[str, Iterable[str]]) -> set[str]:
    return {link_mark(kind, value) for kind, values in identifiers.items() for value in values}
