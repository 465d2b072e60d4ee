"""The trigger catalog: every trigger type declared once.

A declaration names the type, the capability module under ``touchstream.domain`` that proposes
it (a dotted path inside a package: ``loyalty.tiers``), the check that the state it speaks of still holds at emit time (``still_true``), the
recency rule (``recency``, or None), the default cool-down and the fields of its ``evidence``
(JSON Schema fragments). Everything else derives from it:

- ``TRIGGER_TYPES``, the topics ``triggers.<type>`` (``streams/topics.py``), the default and the
  validation of ``[triggers.cooldown_hours]`` and ``[triggers.rule_versions]``
  (``config/rules.py``, where an unknown type stops start-up naming the key);
- the guard chain's still-true and recency steps (``domain/triggers.py``);
- the generated parts of the trigger JSON Schema (the ``type`` enum and the evidence of each
  type), of the shipped rules file's cool-down table and of the README's trigger table; a unit
  test (``tests/unit/domain/test_trigger_catalog.py``) fails naming the type on any difference.
  ``python -m touchstream.domain.trigger_catalog --write`` (``make catalog``, in a source
  checkout) rewrites them; ``--check`` only reports.

A type whose trigger cannot stop being true must say so: ``still_true=ALWAYS`` with
``always_because``. A declaration without a check cannot be written, and a check that does not
resolve to a function of the capability module fails at start-up (``resolve``, called by the
rules validation), never silently at emit time.

Pure: imports only the standard library and ``touchstream.errors`` at module level, so the
rules can import it; the capability modules are imported by ``resolve`` (they import the rules
and ``domain.triggers``, which import this module).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from touchstream.errors import TriggerCatalogError

if TYPE_CHECKING:
    from touchstream.config.rules import Rules

# a check of the guard chain: (customer state, the proposal, rules) -> may it still be sent
Check = Callable[[dict[str, Any], dict[str, Any], "Rules"], bool]

ALWAYS = "always"  # still_true of a type whose cause cannot be undone before it is sent
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODULE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")  # a dotted path: loyalty.tiers

# JSON Schema fragments the declarations share
STRING: Mapping[str, Any] = {"type": "string"}
TIME: Mapping[str, Any] = {"type": "string", "description": "RFC 3339, UTC"}
INTEGER: Mapping[str, Any] = {"type": "integer"}
MINOR: Mapping[str, Any] = {"type": "integer", "description": "minor units"}


def nullable(fragment: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**fragment, "type": [fragment["type"], "null"]}


def list_of(**fields: Mapping[str, Any]) -> Mapping[str, Any]:
    return {
        "type": "array",
        "items": {"type": "object", "required": sorted(fields), "properties": dict(fields)},
    }


@dataclass(frozen=True)
class TriggerType:
    name: str
    module: str  # capability module under touchstream.domain that proposes it (dotted path)
    description: str  # one line, for the README table
    still_true: str  # a function of ``module``, or ALWAYS
    cooldown_hours: int  # the default of [triggers.cooldown_hours]
    evidence: Mapping[str, Mapping[str, Any]]  # field -> JSON Schema fragment
    recency: str | None = None  # a function of ``module`` the guard's recency step asks
    always_because: str = ""  # why a type with still_true=ALWAYS cannot stop being true

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise TriggerCatalogError(f"trigger type {self.name!r}: name must be snake_case")
        if not _MODULE.match(self.module):
            raise TriggerCatalogError(f"trigger type {self.name}: module must be a module name")
        if not self.still_true:
            raise TriggerCatalogError(
                f"trigger type {self.name}: still_true must name a check, or be ALWAYS"
            )
        if self.still_true == ALWAYS and not self.always_because:
            raise TriggerCatalogError(
                f"trigger type {self.name}: still_true=ALWAYS needs always_because"
            )
        if self.cooldown_hours < 0:
            raise TriggerCatalogError(f"trigger type {self.name}: cooldown_hours must be >= 0")
        if not self.evidence or not self.description:
            raise TriggerCatalogError(f"trigger type {self.name}: evidence and description")

    @property
    def topic(self) -> str:
        return f"triggers.{self.name}"

    @property
    def path(self) -> str:
        """The capability module's file, as the README names it: ``domain/loyalty/tiers.py``."""
        return f"domain/{self.module.replace('.', '/')}.py"

    def evidence_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "required": sorted(self.evidence),
            "properties": {k: dict(v) for k, v in self.evidence.items()},
        }


CATALOG: tuple[TriggerType, ...] = (
    TriggerType(
        "abandoned_cart",
        module="carts",
        description="A cart worth at least `carts.min_value_minor` saw no purchase "
        "`carts.reminder_delays_minutes` after its last change.",
        still_true="still_abandoned",
        cooldown_hours=16,
        evidence={
            "cart_id": STRING,
            "items": list_of(sku=STRING, quantity=INTEGER, unit_price_minor=MINOR),
            "value_minor": MINOR,
            "last_activity_at": TIME,
            "reminder": INTEGER,
        },
    ),
    TriggerType(
        "browse_abandoned",
        module="sessions",
        description="A closed session viewed one product `sessions.browse_abandon_views` "
        "times without adding it to a cart.",
        still_true=ALWAYS,
        always_because="it speaks of a closed session, which nothing can change",
        cooldown_hours=24,
        evidence={
            "session_id": STRING,
            "products": list_of(sku=STRING, views=INTEGER),
            "session_start": TIME,
            "session_end": TIME,
        },
    ),
    TriggerType(
        "vip_status",
        module="loyalty.tiers",
        description="The tier held became the top tier.",
        still_true="still_vip",
        recency="purchased_recently",
        cooldown_hours=24,
        evidence={
            "tier": STRING,
            "qualifying_spend_minor": MINOR,
            "order_id": nullable(STRING),
            "last_purchase_at": nullable(TIME),
            "points": INTEGER,
        },
    ),
    TriggerType(
        "tier_downgrade_risk",
        module="loyalty.tiers",
        description="The spend fell below the tier held: its grace period started.",
        still_true="still_at_risk",
        cooldown_hours=24,
        evidence={
            "tier": STRING,
            "qualifying_spend_minor": MINOR,
            "needed_minor": MINOR,
            "downgrade_at": TIME,
        },
    ),
    TriggerType(
        "win_back",
        module="rfm",
        description="A customer with `rfm.win_back_min_orders` orders has not bought for "
        "`rfm.win_back_days`.",
        still_true=ALWAYS,
        always_because="the lapse is a past fact (a purchase while quiet hours hold the "
        "trigger does not cancel it)",
        cooldown_hours=24,
        evidence={
            "last_purchase_at": TIME,
            "orders": INTEGER,
            "days_since_last_purchase": INTEGER,
            "spend_365_minor": MINOR,
            "segment": nullable(STRING),
        },
    ),
    TriggerType(
        "points_expiring",
        module="loyalty.expiry",
        description="The points balance expires in `loyalty.expiry_warning_days` without "
        "a purchase.",
        still_true="still_expiring",
        cooldown_hours=24,
        evidence={
            "points": INTEGER,
            "expires_at": TIME,
            "last_purchase_at": TIME,
            "anchor": {"type": "integer", "description": "the expiry anchor, epoch ms"},
        },
    ),
    TriggerType(
        "reward_unlocked",
        module="loyalty.rewards",
        description="The points balance crossed a `loyalty.reward_thresholds` threshold "
        "from below.",
        still_true="still_rewarded",
        cooldown_hours=24,
        evidence={"threshold": INTEGER, "points": INTEGER},
    ),
)

BY_NAME: dict[str, TriggerType] = {}
for _entry in CATALOG:
    if _entry.name in BY_NAME:
        raise TriggerCatalogError(f"trigger type {_entry.name} is declared twice")
    BY_NAME[_entry.name] = _entry

TRIGGER_TYPES: tuple[str, ...] = tuple(BY_NAME)
TRIGGER_TOPICS: dict[str, str] = {entry.name: entry.topic for entry in CATALOG}


def entry(kind: str) -> TriggerType:
    """The declaration of ``kind``; an undeclared type is an error, never a silent pass."""
    try:
        return BY_NAME[kind]
    except KeyError:
        raise TriggerCatalogError(
            f"unknown trigger type {kind!r}: declare it in domain/trigger_catalog.py"
        ) from None


def default_cooldowns() -> dict[str, int]:
    return {entry.name: entry.cooldown_hours for entry in CATALOG}


def _function(entry: TriggerType, name: str, role: str) -> Check:
    module = importlib.import_module(f"touchstream.domain.{entry.module}")
    check = getattr(module, name, None)
    if not callable(check):
        raise TriggerCatalogError(
            f"trigger type {entry.name}: {role} {name!r} is not a function of "
            f"touchstream.domain.{entry.module}"
        )
    return check


@cache
def resolve() -> dict[str, tuple[Check | None, Check | None]]:
    """Per type, its (still-true, recency) functions (None: always true). Resolves every
    declaration at once, so one bad reference fails at start-up, whichever type it is."""
    out: dict[str, tuple[Check | None, Check | None]] = {}
    for entry in CATALOG:
        still = (
            None if entry.still_true == ALWAYS else _function(entry, entry.still_true, "still_true")
        )
        recency = None if entry.recency is None else _function(entry, entry.recency, "recency")
        out[entry.name] = (still, recency)
    return out


def checks(kind: str) -> tuple[Check | None, Check | None]:
    """The (still-true, recency) functions of ``kind``; an undeclared type is an error."""
    found = resolve().get(kind)
    if found is None:
        entry(kind)  # raises, naming the type
    assert found is not None
    return found


# --- derived files ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]  # the source checkout
SCHEMA = ROOT / "touchstream" / "schemas" / "triggers" / "v1" / "trigger.json"
RULES_FILE = ROOT / "touchstream" / "config" / "default_rules.toml"
README = ROOT / "README.md"
BEGIN, END = "<!-- trigger-catalog:begin", "<!-- trigger-catalog:end -->"
_GENERATED = " (generated: python -m touchstream.domain.trigger_catalog --write) -->"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def schema_evidence() -> list[dict[str, Any]]:
    """The trigger schema's ``allOf``: per type, what its ``evidence`` holds."""
    return [
        {
            "if": {"properties": {"type": {"const": entry.name}}},
            "then": {"properties": {"evidence": entry.evidence_schema()}},
        }
        for entry in CATALOG
    ]


def render_schema(text: str) -> str:
    """``text`` (trigger.json) with its ``type`` enum and per-type evidence from the catalog."""
    enum = f'    "type": {{"enum": {_dumps(list(TRIGGER_TYPES))}}},\n'
    text, found = re.subn(r'(?m)^    "type": \{"enum": .*\},\n', lambda _: enum, text)
    if found != 1:
        raise TriggerCatalogError(f"{SCHEMA.name}: no single line for the type enum")
    rows = ",\n".join(f"    {_dumps(item)}" for item in schema_evidence())
    block = f'  "allOf": [\n{rows}\n  ],\n'
    text, found = re.subn(r'(?ms)^  "allOf": \[\n.*?^  \],\n', lambda _: block, text)
    if not found:
        text, found = re.subn(
            r'(?m)^  "additionalProperties": false\n', lambda m: block + m.group(0), text
        )
    if found != 1:
        raise TriggerCatalogError(f"{SCHEMA.name}: no place for the per-type evidence")
    return text


def render_rules(text: str) -> str:
    """The shipped rules file with its ``[triggers.cooldown_hours]`` table from the catalog."""
    rows = "".join(f"{e.name} = {e.cooldown_hours}\n" for e in CATALOG)
    block = f"[triggers.cooldown_hours]\n{rows}"
    text, found = re.subn(
        r"(?m)^\[triggers\.cooldown_hours\]\n(?:[a-z0-9_]+ *= *\d+\n)*", lambda _: block, text
    )
    if found != 1:
        raise TriggerCatalogError(f"{RULES_FILE.name}: no single [triggers.cooldown_hours] table")
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def readme_table() -> str:
    lines = [
        "| type (topic `triggers.<type>`) | proposed by | when | still true at emit | "
        "recency | cool-down (h) | evidence |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in CATALOG:
        still = f"always: {e.always_because}" if e.still_true == ALWAYS else f"`{e.still_true}`"
        recency = f"`{e.recency}`" if e.recency else "-"
        evidence = ", ".join(f"`{name}`" for name in e.evidence)
        lines.append(
            f"| `{e.name}` | `{e.path}` | {_cell(e.description)} | {_cell(still)} | "
            f"{recency} | {e.cooldown_hours} | {evidence} |"
        )
    return "\n".join(lines) + "\n"


def render_readme(text: str) -> str:
    """The README with its trigger table and the topics table's trigger row from the catalog."""
    block = f"{BEGIN}{_GENERATED}\n{readme_table()}{END}\n"
    text, found = re.subn(rf"(?ms)^{re.escape(BEGIN)}.*?^{re.escape(END)}\n", lambda _: block, text)
    if found != 1:
        raise TriggerCatalogError(f"{README.name}: no single {BEGIN} ... {END} block")
    topics = ", ".join(f"`{e.topic}`" for e in CATALOG)
    row = f"| {topics} | out | customer id | one topic per trigger type |\n"
    text, found = re.subn(r"(?m)^\| `triggers\.[a-z_]+`, .*\n", lambda _: row, text)
    if found != 1:
        raise TriggerCatalogError(f"{README.name}: no single topics-table row of trigger topics")
    return text


DERIVED: tuple[tuple[Path, Callable[[str], str]], ...] = (
    (SCHEMA, render_schema),
    (RULES_FILE, render_rules),
    (README, render_readme),
)


def stale_files() -> list[Path]:
    """The derived files whose committed text differs from what the catalog generates."""
    return [
        path
        for path, render in DERIVED
        if render(path.read_text("utf-8")) != path.read_text("utf-8")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m touchstream.domain.trigger_catalog",
        description="Rewrite (--write) or check (--check) the files derived from the catalog.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true")
    action.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    resolve()
    stale = stale_files()
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} differs from the trigger catalog", file=sys.stderr)
        return 1 if stale else 0
    for path, render in DERIVED:
        if path in stale:
            path.write_text(render(path.read_text("utf-8")), "utf-8")
            print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
