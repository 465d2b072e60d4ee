"""A customers-table value written before the state format had a version (format 1, the
fixture in ``state_v1/``, made by that code) is read by this worker: it serves the same profile
and then behaves exactly as format 1 did (the same decisions, the same profiles after)."""

from pathlib import Path

import orjson

from tests.unit.tables import state_fixture
from tests.unit.tables.state_v1 import journey
from touchstream.domain.migrate import FORMAT, migrate, version
from touchstream.domain.profile import view
from touchstream.tables.customers import decode_state
from touchstream.tables.state_codec import encode, unpack

HERE = Path(__file__).parent / "state_v1"


def old_table() -> dict[str, bytes]:
    return state_fixture.stored_table(HERE)


def expected() -> dict:
    return state_fixture.expected(HERE)


def test_the_fixture_is_of_format_one():
    raw = [orjson.loads(unpack(v)) for v in old_table().values()]
    assert any("orders" in s for s in raw)  # a live profile, and the redirect of its device
    assert all("fmt" not in s for s in raw)
    assert all(version(s) == 1 for s in raw)


def test_an_old_changelog_value_is_read_as_the_current_format_and_serves_the_same_profile():
    table = {k: decode_state(v) for k, v in old_table().items()}

    assert {k: view(s, journey.RULES) for k, s in table.items()} == expected()["profiles"]
    live = [s for s in table.values() if isinstance(s, dict)]  # a redirect is a record
    assert all(s["fmt"] == FORMAT for s in live)
    assert all(isinstance(v, list) for s in live for v in s["redemptions"].values())


def test_an_old_changelog_value_behaves_as_format_one_did_afterwards():
    table = {k: decode_state(v) for k, v in old_table().items()}

    served = state_fixture.served_after(journey, table)

    want = expected()
    assert served["decisions"] == want["decisions"]
    assert served["profiles_after"] == want["profiles_after"]


def test_a_migrated_state_survives_another_round_trip_unchanged():
    for raw in old_table().values():
        state = decode_state(raw)
        assert decode_state(encode(state)) == state
        if isinstance(state, dict):  # a live profile (a redirect is a record)
            assert migrate(dict(state)) == state
