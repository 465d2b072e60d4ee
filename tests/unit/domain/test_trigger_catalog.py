"""The trigger catalog: every trigger type declared once, and everything that names a trigger
type (proposals, guard checks, rules, topics, schema, rules file, README) agrees with it."""

import ast
import json
import tomllib
from pathlib import Path

import pytest

import touchstream.domain
from touchstream.config.rules import load_rules, parse_rules
from touchstream.domain import trigger_catalog as catalog
from touchstream.domain.triggers import propose
from touchstream.errors import ConfigError, TriggerCatalogError
from touchstream.streams import topics

RULES = load_rules(None)
NOW = 1_795_179_807_512
NAMES = [entry.name for entry in catalog.CATALOG]


def _differ(found: dict, wanted: dict) -> list[str]:
    return sorted(k for k in found.keys() | wanted.keys() if found.get(k) != wanted.get(k))


def test_the_trigger_schema_enum_and_evidence_are_the_catalogs():
    schema = json.loads(catalog.SCHEMA.read_text("utf-8"))

    assert schema["properties"]["type"]["enum"] == NAMES
    found = {
        rule["if"]["properties"]["type"]["const"]: rule["then"]["properties"]["evidence"]
        for rule in schema.get("allOf", [])
    }
    wanted = {entry.name: entry.evidence_schema() for entry in catalog.CATALOG}
    assert _differ(found, wanted) == [], "types whose evidence schema differs from the catalog"


def test_the_shipped_rules_file_cooldowns_are_the_catalogs():
    shipped = tomllib.loads(catalog.RULES_FILE.read_text("utf-8"))["triggers"]["cooldown_hours"]

    assert _differ(shipped, catalog.default_cooldowns()) == []
    assert RULES.triggers.cooldown_hours == catalog.default_cooldowns()


def test_the_readme_trigger_table_and_topics_row_are_the_catalogs():
    text = catalog.README.read_text("utf-8")
    table = text.split(catalog.BEGIN, 1)[1].split(catalog.END, 1)[0]
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in table.splitlines()
        if line.startswith("| `")
    }
    wanted = {
        line.split("|")[1].strip().strip("`"): line
        for line in catalog.readme_table().splitlines()
        if line.startswith("| `")
    }
    assert _differ(rows, wanted) == [], "types whose README row differs from the catalog"
    topics_row = next(line for line in text.splitlines() if line.startswith("| `triggers."))
    listed = [cell.strip("` ") for cell in topics_row.split("|")[1].split(",")]
    assert listed == [f"triggers.{name}" for name in NAMES]


def test_every_derived_file_is_what_the_generator_writes():
    # `python -m touchstream.domain.trigger_catalog --write` (make catalog) fixes this
    assert catalog.stale_files() == []
    assert catalog.main(["--check"]) == 0


def test_every_trigger_type_has_its_topic_and_nothing_else_does():
    declared = {t for t in topics.OUTPUTS if t.startswith("triggers.") and t != "triggers.audit"}

    assert declared == {f"triggers.{name}" for name in NAMES}


def _proposals() -> list[tuple[str, str, ast.Call]]:
    """(module, type, call) for every ``propose(...)`` call of the domain's modules, those of
    its packages included (``loyalty.tiers``: the module's dotted path under the domain)."""
    found = []
    root = Path(touchstream.domain.__file__).parent
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name != "propose":
                continue
            kind = node.args[0]
            assert isinstance(kind, ast.Constant), f"{path.name}:{node.lineno}: a literal type"
            found.append((module, kind.value, node))
    return found


def test_every_proposal_in_the_code_is_declared_with_its_module_evidence_and_rule():
    proposals = _proposals()
    wrong = []
    for module, kind, call in proposals:
        entry = catalog.BY_NAME.get(kind)
        evidence, rule = call.args[4], call.args[5]
        keys = [k.value for k in evidence.keys if isinstance(k, ast.Constant)]
        if (
            entry is None
            or entry.module != module
            or not isinstance(evidence, ast.Dict)
            or sorted(keys) != sorted(entry.evidence)
            or not (isinstance(rule, ast.Constant) and rule.value == kind)
        ):
            wrong.append(f"{module}:{call.lineno} {kind}")

    assert wrong == []
    assert sorted({kind for _, kind, _ in proposals}) == sorted(NAMES), "declared, never proposed"


def test_every_declared_check_resolves_to_a_function_of_its_module():
    checks = catalog.resolve()

    assert set(checks) == set(NAMES)
    for entry in catalog.CATALOG:
        still, recency = checks[entry.name]
        assert (still is None) == (entry.still_true == catalog.ALWAYS)
        assert (recency is None) == (entry.recency is None)
        if still is not None:
            assert still.__module__ == f"touchstream.domain.{entry.module}"
        if recency is not None:
            assert recency.__module__ == f"touchstream.domain.{entry.module}"


def _declared(**changes):
    fields = {
        "name": "points_doubled",
        "module": "loyalty.rewards",
        "description": "d",
        "still_true": "still_rewarded",
        "cooldown_hours": 24,
        "evidence": {"points": catalog.INTEGER},
    }
    return catalog.TriggerType(**{**fields, **changes})


def test_a_trigger_type_without_a_still_true_check_cannot_be_declared():
    with pytest.raises(TriggerCatalogError, match="points_doubled: still_true"):
        _declared(still_true="")
    with pytest.raises(TriggerCatalogError, match="ALWAYS needs always_because"):
        _declared(still_true=catalog.ALWAYS)
    assert _declared(still_true=catalog.ALWAYS, always_because="it cannot change").topic == (
        "triggers.points_doubled"
    )


def test_a_check_that_does_not_resolve_stops_start_up_naming_the_type(monkeypatch):
    broken = (*catalog.CATALOG, _declared(still_true="still_doubled"))
    monkeypatch.setattr(catalog, "CATALOG", broken)
    catalog.resolve.cache_clear()
    try:
        with pytest.raises(ConfigError, match="points_doubled: still_true 'still_doubled'"):
            parse_rules("")
    finally:
        monkeypatch.undo()
        catalog.resolve.cache_clear()
    assert set(catalog.resolve()) == set(NAMES)


def test_proposing_an_undeclared_type_is_an_error():
    with pytest.raises(TriggerCatalogError, match="unknown trigger type 'vip_statuss'"):
        propose("vip_statuss", "c", NOW, "r", {}, "vip_statuss")
