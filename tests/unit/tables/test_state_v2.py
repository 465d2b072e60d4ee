"""A customers table today's worker wrote (state format 2, the flat dict, codec byte 0x01; the
fixture in ``state_v2/``, made from the bench's data by that code) is read by this worker: it
serves the same profiles and then behaves exactly as format 2 did (the same decisions, the
same profiles after). The typed-state rewrite (docs/design/typed-state.md) changes the stored
format; this is the table every later worker must keep reading."""

from pathlib import Path

import orjson

from tests.unit.tables import state_fixture
from tests.unit.tables.state_v2 import journey
from touchstream.domain.profile import view
from touchstream.tables.customers import decode_state
from touchstream.tables.state_codec import ZSTD_1, encode, unpack

HERE = Path(__file__).parent / "state_v2"


def v2_table() -> dict[str, bytes]:
    return state_fixture.stored_table(HERE)


def expected() -> dict:
    return state_fixture.expected(HERE)


def test_the_fixture_is_of_format_two_compressed_with_the_first_dictionary():
    stored = v2_table()
    assert all(v[0] == ZSTD_1 for v in stored.values())
    raw = [orjson.loads(unpack(v)) for v in stored.values()]
    live = [s for s in raw if "orders" in s]
    assert live and all(s["fmt"] == 2 for s in live)
    assert any("into" in s for s in raw)  # the redirects merges leave
    assert any(s["orders"] for s in live) and any(s["carts"] for s in live)


def test_a_format_two_changelog_value_serves_the_same_profiles():
    table = {k: decode_state(v) for k, v in v2_table().items()}

    served = {k: view(s, journey.RULES) for k, s in table.items()}
    assert state_fixture.normal(served) == expected()["profiles"]


def test_a_format_two_changelog_value_behaves_as_format_two_did_afterwards():
    table = {k: decode_state(v) for k, v in v2_table().items()}

    served = state_fixture.served_after(journey, table)

    want = expected()
    assert served["decisions"] == want["decisions"]
    assert served["profiles_after"] == want["profiles_after"]


def test_a_format_two_state_survives_another_round_trip_unchanged():
    for raw in v2_table().values():
        state = decode_state(raw)
        assert decode_state(encode(state)) == state
