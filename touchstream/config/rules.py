"""The business rules file (TOML): every default of the product spec, validated once."""

from __future__ import annotations

import tomllib
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from touchstream.config.currencies import exponent
from touchstream.config.typed import build
from touchstream.domain import trigger_catalog
from touchstream.errors import ConfigError, TriggerCatalogError

IDENTIFIER_KINDS = ("customer_id", "loyalty_id", "email", "phone", "device_id", "anonymous_id")


def _positive(path: str, name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{path}.{name}", f"must be > 0, got {value!r}")


def _non_negative(path: str, name: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{path}.{name}", f"must be >= 0, got {value!r}")


@dataclass(frozen=True)
class ProgramRules:
    name: str = "default"
    currency: str = "EUR"
    # the program currency's minor-unit exponent; must equal ISO 4217's for an ISO code
    currency_decimals: int = 2
    timezone: str = "UTC"
    # How much ONE major unit of a foreign currency is worth in major units of the program
    # currency (USD = 0.92: 1 USD is 0.92 EUR). Ingest converts with both currencies' ISO 4217
    # exponents, so JPY = 0.0061 and KWD = 2.98 are written as the rates are quoted.
    exchange_rates_per_major: dict[str, float] = field(default_factory=dict)
    # The first key, kept for rules files written before exchange_rates_per_major: a ratio
    # applied to minor units directly. Between currencies of the same exponent it is the same
    # number as the rate per major unit, and is read as one; for a currency whose exponent
    # differs from the program's it is refused at load, naming the rate to write instead,
    # so no configured rate ever changes meaning silently.
    exchange_rates: dict[str, float] = field(default_factory=dict)

    def check(self, path: str) -> None:
        if len(self.currency) != 3 or not self.currency.isupper() or not self.currency.isalpha():
            raise ConfigError(
                f"{path}.currency", f"must be an ISO 4217 code, got {self.currency!r}"
            )
        if not 0 <= self.currency_decimals <= 4:
            raise ConfigError(f"{path}.currency_decimals", "must be between 0 and 4")
        iso = exponent(self.currency)
        if iso is not None and iso != self.currency_decimals:
            raise ConfigError(
                f"{path}.currency_decimals",
                f"{self.currency} has {iso} decimal places in ISO 4217 (its minor unit is "
                f"1/{10**iso} of a unit), got {self.currency_decimals}: set "
                f"currency_decimals = {iso}",
            )
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"{path}.timezone", f"unknown time zone {self.timezone!r}") from exc
        for key in ("exchange_rates_per_major", "exchange_rates"):
            for code, rate in getattr(self, key).items():
                _positive(f"{path}.{key}", code, rate)
                if exponent(code) is None:
                    raise ConfigError(
                        f"{path}.{key}.{code}",
                        "must be an ISO 4217 currency code with a minor unit (its exponent "
                        "decides how many minor units make one unit)",
                    )
        for code in self.exchange_rates.keys() & self.exchange_rates_per_major.keys():
            raise ConfigError(
                f"{path}.exchange_rates.{code}",
                f"{code} is also in exchange_rates_per_major: keep only that one",
            )
        for code, ratio in self.exchange_rates.items():
            foreign = exponent(code)
            assert foreign is not None  # checked above
            if foreign != self.currency_decimals:
                per_major = Decimal(str(ratio)).scaleb(foreign - self.currency_decimals)
                raise ConfigError(
                    f"{path}.exchange_rates.{code}",
                    f"exchange_rates applies a rate to minor units, and {code} has "
                    f"{foreign} decimal places against {self.currency_decimals} for "
                    f"{self.currency}: write the rate per major unit under "
                    f"exchange_rates_per_major instead. If {ratio} was meant as {self.currency} "
                    f"per 1 {code}, write {code} = {ratio}; if it was the ratio of minor units, "
                    f"write {code} = {per_major.normalize():f}",
                )

    @property
    def minor_per_unit(self) -> int:
        return int(10**self.currency_decimals)

    def minor_rates(self) -> dict[str, Decimal]:
        """Per foreign currency, the exact factor from its minor units to the program's:
        the rate per major unit scaled by 10 ** (program exponent - foreign exponent)."""
        rates = {code: Decimal(str(r)) for code, r in self.exchange_rates.items()}
        for code, rate in self.exchange_rates_per_major.items():
            foreign = exponent(code)
            assert foreign is not None  # check() refused any other
            rates[code] = Decimal(str(rate)).scaleb(self.currency_decimals - foreign)
        return rates


@dataclass(frozen=True)
class IdentityRules:
    blocked_values: tuple[str, ...] = ()
    max_customer_ids: int = 1
    max_loyalty_ids: int = 1
    max_emails: int = 5
    max_phones: int = 5
    max_devices: int = 25
    anonymous_ttl_days: int = 30
    default_country_code: str = ""
    # erased identifiers stay suppressed: seen again after the erasure, they start a new
    # profile only from an explicit new sign-up or consent grant (README, "Privacy")
    suppress_erased: bool = True

    def check(self, path: str) -> None:
        for name in (
            "max_customer_ids",
            "max_loyalty_ids",
            "max_emails",
            "max_phones",
            "max_devices",
            "anonymous_ttl_days",
        ):
            _positive(path, name, getattr(self, name))
        if self.default_country_code and not self.default_country_code.isdigit():
            raise ConfigError(f"{path}.default_country_code", "must be digits, e.g. '49'")


@dataclass(frozen=True)
class Tier:
    name: str
    min_spend_minor: int
    multiplier: float = 1.0

    def check(self, path: str) -> None:
        _non_negative(path, "min_spend_minor", self.min_spend_minor)
        _positive(path, "multiplier", self.multiplier)


# The largest bonus campaign multiplier. An order's value is kept in thousandths with its
# campaign applied: the largest order the contract admits (domain/bounds.py, 10**15 minor units)
# at 10x is 10**19 thousandths, which still fits the 64-bit unsigned integers the state codec
# writes; at 20x one such order would make its customer's state unstorable.
MAX_CAMPAIGN_MULTIPLIER = 10.0


@dataclass(frozen=True)
class Campaign:
    name: str
    multiplier: float
    category: str = ""
    starts_at: str = ""
    ends_at: str = ""

    def check(self, path: str) -> None:
        _positive(path, "multiplier", self.multiplier)
        if self.multiplier > MAX_CAMPAIGN_MULTIPLIER:
            raise ConfigError(
                f"{path}.multiplier",
                f"must be at most {MAX_CAMPAIGN_MULTIPLIER}, got {self.multiplier!r}",
            )
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value and _instant(value) is None:
                raise ConfigError(f"{path}.{name}", f"must be RFC 3339 with offset, got {value!r}")
        ends = self.ends_ms
        if self.starts_at and ends is not None and self.starts_ms > ends:
            raise ConfigError(f"{path}.ends_at", "must not be before starts_at")

    @cached_property
    def starts_ms(self) -> int:
        return _instant(self.starts_at) if self.starts_at else 0  # type: ignore[return-value]

    @cached_property
    def ends_ms(self) -> int | None:
        return _instant(self.ends_at) if self.ends_at else None

    @property
    def per_mille(self) -> int:
        return round(self.multiplier * 1000)

    def active(self, at_ms: int) -> bool:
        return self.starts_ms <= at_ms and (self.ends_ms is None or at_ms <= self.ends_ms)


def _instant(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


@dataclass(frozen=True)
class LoyaltyRules:
    points_per_unit: int = 1
    signup_bonus: int = 100
    expiry_days: int = 365
    expiry_warning_days: int = 30
    tier_mode: str = "trailing_365"
    tier_window_days: int = 365
    grace_days: int = 30
    vip_recency_days: int = 90
    vip_max_lapse_days: int = 365
    reward_thresholds: tuple[int, ...] = (500,)
    tiers: tuple[Tier, ...] = (
        Tier("member", 0, 1.0),
        Tier("silver", 35_000, 1.25),
        Tier("gold", 100_000, 1.5),
    )
    campaigns: tuple[Campaign, ...] = ()

    def check(self, path: str) -> None:
        _non_negative(path, "points_per_unit", self.points_per_unit)
        _non_negative(path, "signup_bonus", self.signup_bonus)
        for name in ("expiry_days", "tier_window_days", "vip_recency_days", "vip_max_lapse_days"):
            _positive(path, name, getattr(self, name))
        _non_negative(path, "grace_days", self.grace_days)
        if not 0 <= self.expiry_warning_days < self.expiry_days:
            raise ConfigError(f"{path}.expiry_warning_days", "must be >= 0 and < expiry_days")
        if self.tier_mode not in ("trailing_365", "calendar_year"):
            raise ConfigError(f"{path}.tier_mode", "must be 'trailing_365' or 'calendar_year'")
        if not self.tiers or self.tiers[0].min_spend_minor != 0:
            raise ConfigError(f"{path}.tiers", "the first tier must start at min_spend_minor = 0")
        spends = [t.min_spend_minor for t in self.tiers]
        if spends != sorted(set(spends)):
            raise ConfigError(f"{path}.tiers", "min_spend_minor must strictly increase")
        for i, t in enumerate(self.reward_thresholds):
            _positive(f"{path}.reward_thresholds", str(i), t)


@dataclass(frozen=True)
class SessionRules:
    gap_minutes: float = 30
    max_hours: float = 24
    browse_abandon_views: int = 3

    def check(self, path: str) -> None:
        for name in ("gap_minutes", "max_hours", "browse_abandon_views"):
            _positive(path, name, getattr(self, name))


@dataclass(frozen=True)
class CartRules:
    min_value_minor: int = 100
    reminder_delays_minutes: tuple[float, ...] = (60, 1440)  # fractions allowed (tests)

    def check(self, path: str) -> None:
        _non_negative(path, "min_value_minor", self.min_value_minor)
        delays = list(self.reminder_delays_minutes)
        if not delays or delays != sorted(set(delays)) or delays[0] <= 0:
            raise ConfigError(
                f"{path}.reminder_delays_minutes",
                "must be a non-empty increasing list of minutes > 0",
            )


@dataclass(frozen=True)
class RfmRules:
    recency_days: tuple[int, ...] = (30, 60, 90, 180)
    frequency_orders: tuple[int, ...] = (10, 6, 3, 2, 1)
    monetary_minor: tuple[int, ...] = (200_000, 100_000, 50_000, 20_000, 1)
    window_days: int = 365
    win_back_days: int = 90
    win_back_min_orders: int = 2

    def check(self, path: str) -> None:
        if len(self.recency_days) != 4 or list(self.recency_days) != sorted(self.recency_days):
            raise ConfigError(f"{path}.recency_days", "must be 4 increasing day counts (R=5..2)")
        for name in ("frequency_orders", "monetary_minor"):
            values = list(getattr(self, name))
            if len(values) != 5 or values != sorted(values, reverse=True):
                raise ConfigError(f"{path}.{name}", "must be 5 decreasing thresholds (score 5..1)")
        for name in ("window_days", "win_back_days", "win_back_min_orders"):
            _positive(path, name, getattr(self, name))


@dataclass(frozen=True)
class QuietHours:
    start: str = "21:00"
    end: str = "08:00"

    def check(self, path: str) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            hh, _, mm = value.partition(":")
            if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
                raise ConfigError(f"{path}.{name}", f"must be HH:MM, got {value!r}")


@dataclass(frozen=True)
class TriggerRules:
    freshness_hours: int = 24
    frequency_cap: int = 3
    frequency_window_hours: int = 24
    # per trigger type; the defaults are the catalog's (domain/trigger_catalog.py)
    cooldown_hours: dict[str, int] = field(default_factory=trigger_catalog.default_cooldowns)
    rule_versions: dict[str, int] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None

    def __post_init__(self) -> None:
        # a rules file's [triggers.cooldown_hours] sets the types it names; the others keep
        # the catalog's default (read as the whole table, one line would lift every other
        # type's cool-down to none)
        merged = {**trigger_catalog.default_cooldowns(), **self.cooldown_hours}
        object.__setattr__(self, "cooldown_hours", merged)

    def check(self, path: str) -> None:
        for name in ("freshness_hours", "frequency_cap", "frequency_window_hours"):
            _positive(path, name, getattr(self, name))
        for kind, hours in self.cooldown_hours.items():
            if kind not in TRIGGER_TYPES:
                raise ConfigError(f"{path}.cooldown_hours.{kind}", "unknown trigger type")
            _non_negative(f"{path}.cooldown_hours", kind, hours)
        for kind in self.rule_versions:
            if kind not in TRIGGER_TYPES:
                raise ConfigError(f"{path}.rule_versions.{kind}", "unknown trigger type")


TRIGGER_TYPES = trigger_catalog.TRIGGER_TYPES  # declared in domain/trigger_catalog.py


@dataclass(frozen=True)
class Rules:
    version: int = 1
    program: ProgramRules = field(default_factory=ProgramRules)
    identity: IdentityRules = field(default_factory=IdentityRules)
    loyalty: LoyaltyRules = field(default_factory=LoyaltyRules)
    sessions: SessionRules = field(default_factory=SessionRules)
    carts: CartRules = field(default_factory=CartRules)
    rfm: RfmRules = field(default_factory=RfmRules)
    triggers: TriggerRules = field(default_factory=TriggerRules)

    def check(self, path: str) -> None:
        _positive(path, "version", self.version)
        # every declared type's still-true and recency checks exist: a start-up error, not
        # a trigger sent unchecked
        try:
            trigger_catalog.resolve()
        except TriggerCatalogError as exc:
            raise ConfigError("trigger catalog", str(exc)) from exc


def default_rules_text() -> str:
    return resources.files("touchstream.config").joinpath("default_rules.toml").read_text("utf-8")


def parse_rules(text: str, origin: str = "rules") -> Rules:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(origin, f"not valid TOML: {exc}") from exc
    return build(Rules, data, "rules")


def load_rules(path: str | Path | None) -> Rules:
    """Rules from ``path``, or the shipped defaults (docs/domain.md)."""
    if path is None or str(path) == "":
        return parse_rules(default_rules_text(), "default rules")
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(
            "TOUCHSTREAM_RULES", f"cannot read rules file {p}: {exc.strerror}"
        ) from exc
    return parse_rules(text, str(p))
