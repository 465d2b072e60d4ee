"""Identifier normalisation, blocking, keyed hashing and customer-id minting.

What normalisation accepts, folds and refuses is in docs/security.md ("Identifier
normalisation"); the key set and its rotation in docs/operations.md ("Rotating the HMAC key").
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from touchstream.config.rules import IDENTIFIER_KINDS
from touchstream.errors import SchemaViolation

# The values producers send when they have no identifier; linking on them would merge strangers.
BUILTIN_BLOCKED = frozenset({"", "null", "none", "undefined", "anonymous", "0", "-1"})
HASHED_KINDS = frozenset({"email", "phone"})
# identifiers other systems own: a value that is not already clean is refused, never rewritten
# (rewriting it would make two ids of the CRM or the loyalty system one customer)
VERBATIM_KINDS = frozenset({"customer_id", "loyalty_id"})
PRIORITY = {kind: rank for rank, kind in enumerate(IDENTIFIER_KINDS)}
ASCII_DIGITS = frozenset("0123456789")
# Unicode scripts that may share one identifier (UTS #39 "highly restrictive"): one script,
# or Latin with Han and the Japanese, Chinese or Korean scripts written with it
ALLOWED_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
# the first word of a character's Unicode name that is not its script's name
_SCRIPT_ALIASES = {"CJK": "HAN", "ARABIC-INDIC": "ARABIC", "EXTENDED": "ARABIC"}


def _invisible(ch: str) -> bool:
    """Zero-width, format and control characters (Unicode Cf, Cc), and separators other than
    the ordinary space (line and paragraph separators): never part of an identifier."""
    category = unicodedata.category(ch)
    return category in ("Cf", "Cc", "Zl", "Zp")


def clean(raw: str) -> str:
    """``raw`` without invisible characters, in NFKC, trimmed. Idempotent: removing a character
    can let NFKC compose the ones around it, so both run until nothing changes."""
    if raw.isascii() and raw.isprintable():
        return raw.strip(" ")  # nothing to remove or fold: the common case, kept fast
    value = raw
    while True:
        stripped = "".join(ch for ch in value if not _invisible(ch))
        folded = unicodedata.normalize("NFKC", stripped).strip()
        if folded == value:
            return folded
        value = folded


def script_of(ch: str) -> str | None:
    """The script of a letter or digit, None for characters every script uses (ASCII digits
    and punctuation, combining marks, symbols)."""
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    category = unicodedata.category(ch)
    if not (category.startswith("L") or category == "Nd"):
        return None
    first = unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
    return _SCRIPT_ALIASES.get(first, first)


def mixed_scripts(value: str) -> set[str] | None:
    """The scripts of ``value`` when they may not be mixed (look-alikes), else None."""
    if value.isascii():
        return None
    scripts = {s for s in map(script_of, value) if s is not None}
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in ALLOWED_SCRIPT_MIXES):
        return None
    return scripts


class HmacKeys:
    """The versioned HMAC key set. An identifier's digest under version ``n`` is a chain:
    version 1 is ``HMAC(k1, kind:value)`` in hex (the digest every release before key
    versions stored, so stored hashes and aliases keep resolving), and each later version
    ``n`` is ``"v<n>:" + HMAC(kn, digest under n-1)``. So a stored digest is re-keyed to the
    next version with the next key alone (``rekey``), without the raw identifier, and the
    digest says which version it is under (``version_of``)."""

    def __init__(self, keys: Mapping[int, str]):
        if not keys:
            raise ValueError("an HMAC key set needs at least one key")
        self.versions = sorted(keys)
        if self.versions != list(range(1, len(self.versions) + 1)):
            raise ValueError(f"key versions must be 1..n without gaps, got {self.versions}")
        self._keys = {v: keys[v].encode("utf-8") for v in self.versions}
        self.current = self.versions[-1]

    def digest(self, kind: str, value: str) -> str:
        out = hmac.new(self._keys[1], f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
        for version in self.versions[1:]:
            out = self._layer(version, out)
        return out

    def rekey(self, digest: str, version: int) -> str:
        """``digest`` (under ``version - 1``) under ``version``: needs only that key."""
        if version_of(digest) != version - 1:
            raise ValueError(f"digest is under version {version_of(digest)}, not {version - 1}")
        return self._layer(version, digest)

    def _layer(self, version: int, inner: str) -> str:
        mac = hmac.new(self._keys[version], inner.encode(), hashlib.sha256).hexdigest()
        return f"v{version}:{mac}"


def version_of(digest: str) -> int:
    """The key version a digest is under: 1 for a bare hex digest, n for ``v<n>:...``."""
    if digest.startswith("v") and ":" in digest:
        head = digest[1 : digest.index(":")]
        if head.isdigit():
            return int(head)
    return 1


class IdentityNormaliser:
    def __init__(
        self,
        secret: str | Mapping[int, str] | HmacKeys,
        blocked: Iterable[str] = (),
        default_country_code: str = "",
    ):
        if isinstance(secret, HmacKeys):
            self.keys = secret
        elif isinstance(secret, str):
            self.keys = HmacKeys({1: secret})
        else:
            self.keys = HmacKeys(secret)
        self._blocked = BUILTIN_BLOCKED | {b.strip().lower() for b in blocked}
        self._cc = default_country_code

    def hash(self, kind: str, value: str) -> str:
        return self.keys.digest(kind, value)

    def normalise_value(self, kind: str, raw: str) -> str | None:
        """The canonical form of one identifier (its digest for email and phone), or None when
        it is blocked or unusable; SchemaViolation naming the field when it carries what
        normalisation refuses (docs/security.md)."""
        value = self.canonical(kind, raw)
        if value is None:
            return None
        return self.hash(kind, value) if kind in HASHED_KINDS else value

    def canonical(self, kind: str, raw: str) -> str | None:
        """The normalised identifier before hashing; ``canonical(k, canonical(k, x))`` is
        ``canonical(k, x)``. None when blocked or unusable; SchemaViolation when refused."""
        if kind in VERBATIM_KINDS:
            value = raw.strip()
            if clean(value) != value:
                raise SchemaViolation(
                    f"identity.{kind} carries invisible, control or un-normalised Unicode "
                    "characters; send the id exactly as the system that issued it stores it"
                )
        else:
            value = clean(raw)
        if value.lower() in self._blocked:
            return None
        if kind == "email":
            email = _email(value)
            if email is None:
                return None
            value = email
        elif kind == "phone":
            phone = self._phone(value)
            if phone is None:
                return None
            value = phone
        elif (scripts := mixed_scripts(value)) is not None:
            raise SchemaViolation(
                f"identity.{kind} mixes the scripts {', '.join(sorted(scripts))}: "
                "look-alike characters are refused, not folded"
            )
        if value.lower() in self._blocked:
            return None
        return value

    def _phone(self, raw: str) -> str | None:
        foreign = {ch for ch in raw if ch.isdigit() and ch not in ASCII_DIGITS}
        if foreign:
            raise SchemaViolation(
                "identity.phone has digits other than ASCII 0-9 "
                f"({', '.join(sorted(f'U+{ord(ch):04X}' for ch in foreign))}); "
                "send the number in ASCII digits"
            )
        digits = "".join(ch for ch in raw if ch in ASCII_DIGITS)
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


# The common case, checked without the library (about 20 times faster; the library costs
# about 70 us an address, on the ingest path of every event): a plain ASCII address, a
# dot-atom local part and a letters-only top-level domain, no IDNA ("xn--") label and no
# special-use domain. The library accepts every address this accepts, with the same result
# (tests/unit/domain/test_identity_unicode.py checks it); everything else goes to the library.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"(?!..--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_EMAIL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+(?!..--)[A-Za-z]{{2,63}}")
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)


def _plain_email(value: str) -> str | None:
    if len(value) > 254 or _PLAIN_EMAIL.fullmatch(value) is None:
        return None
    local, _, domain = value.rpartition("@")
    domain = domain.lower()
    if len(local) > 64 or len(domain) > 253:
        return None
    if any(domain == s or domain.endswith("." + s) for s in _SPECIAL_USE):
        return None
    return f"{local.lower()}@{domain}"


def _email(value: str) -> str | None:
    """An address that passes a full syntax check (RFC 5321/5322 as the email-validator
    library applies it, no DNS look-up), lower-cased, with its domain in its ASCII (IDNA)
    form; None when it is not an address. Each part is checked for look-alike scripts."""
    plain = _plain_email(value)
    if plain is not None:
        return plain
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return None
    except Exception:  # a library bug on hostile input must not stop the stage
        return None
    local = checked.local_part
    domain = checked.ascii_domain or checked.domain
    parts = [("local part", local), *(("domain", label) for label in checked.domain.split("."))]
    for where, part in parts:
        scripts = mixed_scripts(part)
        if scripts is not None:
            raise SchemaViolation(
                f"identity.email {where} mixes the scripts {', '.join(sorted(scripts))}: "
                "look-alike characters are refused, not folded"
            )
    return clean(f"{local.lower()}@{domain.lower()}")


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
