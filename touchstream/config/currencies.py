"""ISO 4217 minor-unit exponents: how many decimal places a currency's minor unit has.

Money in events is integer minor units (schemas/events/v1/README.md), and a minor unit is a
different size in each currency: 1 EUR is 100 cents, 1 JPY has no subunit, 1 KWD is 1,000
fils. An exchange rate applied to minor units is therefore only right between currencies of the
same exponent. The exponents come from the ``iso4217`` package, the ISO 4217 list (table A.1)
as the standard's maintenance agency publishes it, a small data-only package: a table copied
into this code would go stale with the next amendment.
"""

from __future__ import annotations

from iso4217 import Currency


def exponent(code: str) -> int | None:
    """The minor-unit exponent of ISO 4217 ``code`` (0 for JPY, 2 for EUR, 3 for KWD), or None
    when the code is not in ISO 4217 or has no minor unit (XAU, XXX: "N.A." in the table)."""
    try:
        value = Currency(code).exponent
    except ValueError:
        return None
    return value if isinstance(value, int) else None
