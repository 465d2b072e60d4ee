"""The equality projection of the golden outputs: what a user of Touchstream sees of a replay.

A typed core cannot match the bytes of the dict state it replaces, so the golden files hold,
and the tests compare field by field, only what leaves the worker (docs/testing.md, "Golden
outputs of the core"):

- ``profiles``: per customer id of the final customers table (and, in
  ``profiles_when_traffic_stops``, of the table before the idle year), the record served in Redis,
  over HTTP and on ``profiles.updates`` (``domain.profile.view``): a live profile with every
  served field plus its ``aliases`` (the identifier keys Redis resolves to it), a redirect
  (``merged_into``), or an erased marker (``{"erased": true, "version": ...}``, the tombstone
  Redis keeps);
- ``outputs``: every record the decisions publish, by output topic, then by record key, in
  the order a consumer of that key reads them (Kafka orders a key, not a topic), as the
  customer agent sends them (its publisher runs on an in-memory outbox, ``core.publish``);
  an access export as the JSON its numbered parts reassemble into (how it is split depends
  on the topic's size limit);
- ``uncounted``: decisions that publish no record (deferred triggers, capped state, expired
  anonymous profiles, erasures awaiting Redis's confirmation, duplicate triggers not audited
  again): by customer, in order, the metric counts (name and labels) the agent adds for each;
- ``refused``: each inbound record that goes to the DLQ, by its index, with its reason.

Deliberately not compared: the stored state itself (its keys, encoding, duplicate memory,
ledger, order book, timers and other bookkeeping: these show only through what they make the
core publish and serve), intermediate profile versions, the order of records of different
keys, the windowed totals the worker's activity and ledger tables add to a served profile
(summed from the sessions and loyalty outcomes compared here), and metrics' values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tests.golden.core import publish
from touchstream.config.rules import Rules
from touchstream.domain.privacy import reassemble
from touchstream.domain.profile import aliases, view
from touchstream.streams import topics

Doc = dict[str, Any]


def project(
    table: Mapping[str, dict[str, Any]],
    decisions: Iterable[Any],
    rules: Rules,
    refused: list[list[Any]],
) -> Doc:
    outputs: dict[str, dict[str, list[Any]]] = {}
    uncounted: dict[str, list[list[str]]] = {}
    for decision in decisions:
        records, counted = publish(decision)
        if not records:
            uncounted.setdefault(decision.customer_id, []).append(counted)
        for topic, key, record in records:
            outputs.setdefault(topic, {}).setdefault(key, []).append(record)
    for key, parts in outputs.get(topics.PRIVACY_EXPORTS, {}).items():
        outputs[topics.PRIVACY_EXPORTS][key] = _exports(parts)
    return {
        "profiles": profiles(table, rules),
        "outputs": outputs,
        "uncounted": uncounted,
        "refused": refused,
    }


def profiles(table: Mapping[str, dict[str, Any]], rules: Rules) -> Doc:
    """What Redis serves for each key of the customers table."""
    return {cid: served(state, rules) for cid, state in sorted(table.items())}


def served(state: dict[str, Any], rules: Rules) -> Doc:
    """What Redis serves for a customers-table value."""
    record = view(state, rules)
    if record is None:
        return {"erased": True, "version": state.version}  # an erasure marker (a record)
    if "merged_into" in record:
        return record
    return {**record, "aliases": sorted(f"{kind}:{value}" for kind, value in aliases(state))}


def _exports(parts: list[Doc]) -> list[Doc]:
    """Each export of a key as the JSON its numbered parts reassemble into, in order."""
    out: list[Doc] = []
    run: list[Doc] = []
    for part in parts:
        run.append(part)
        if len(run) == part["parts"]:
            out.append(reassemble(run))
            run = []
    if run:
        raise ValueError(f"an export of {len(run)} parts of {run[0]['parts']}")
    return out


# --- the comparison --------------------------------------------------------------------------


def differences(want: Doc, got: Doc, limit: int = 12) -> list[str]:
    """The first ``limit`` ways ``got`` differs from ``want``, one readable line each, customer
    and field named (empty: equal under the projection)."""
    problems: list[str] = []
    _compare("", want, got, problems, limit)
    return problems


# what a user looks at first: the profiles, then the records published, then the rest
FIRST = (
    "inputs_sha256",
    "profiles_when_traffic_stops",
    "profiles",
    "outputs",
    "uncounted",
    "refused",
    "sequences",
)


def _first(key: str) -> tuple[int, str]:
    return (FIRST.index(key) if key in FIRST else len(FIRST), key)


def _compare(path: str, want: Any, got: Any, problems: list[str], limit: int) -> None:
    if len(problems) >= limit:
        return
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got), key=_first):
            where = f"{path}/{key}"
            if key not in got:
                problems.append(f"{where}: missing now; golden {_short(want[key])}")
            elif key not in want:
                problems.append(f"{where}: not in the golden output; now {_short(got[key])}")
            else:
                _compare(where, want[key], got[key], problems, limit)
            if len(problems) >= limit:
                return
        return
    if isinstance(want, list) and isinstance(got, list):
        for i, (a, b) in enumerate(zip(want, got, strict=False)):
            _compare(f"{path}[{i}]", a, b, problems, limit)
            if len(problems) >= limit:
                return
        if len(want) != len(got):
            extra = want[len(got) :] or got[len(want) :]
            problems.append(
                f"{path}: golden has {len(want)} entries, now {len(got)} "
                f"(first unmatched: {_short(extra[0])})"
            )
        return
    if want != got or type(want) is not type(got):
        problems.append(f"{path}: golden {want!r}, now {got!r}")


def _short(value: Any, width: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
