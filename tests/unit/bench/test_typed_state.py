"""The probe's other forms of the typed state (``bench/typed_state_records.py``) are derived
from the domain's records (``touchstream/domain/records.py``), so the probe keeps measuring
one shape: the slotted dataclasses hold every bench state and store the records' very bytes
(but for RFM marks never evaluated, whose absent figures the records omit and orjson writes as null),
and the tracked Structs differ from the domain's only in being tracked."""

from __future__ import annotations

import gc

import msgspec
import orjson

from bench import typed_state_records as forms
from touchstream.bench.replay import bench_events, replay
from touchstream.domain import records
from touchstream.tables.state_codec import encode, unpack

NOW_MS = 1_795_400_000_000


def test_the_probes_forms_hold_the_domains_shape() -> None:
    stage = replay(bench_events(1_000, 100, NOW_MS))
    tracked = forms.structs(gc=True)["CustomerState"]
    assert forms.structs(gc=False)["Live"] is records.Live
    # the flat dict of builtins, as stored (the core's dict holds leaf records: step 3)
    for state in (orjson.loads(unpack(encode(s))) for s in stage.table.values()):
        typed = records.from_flat(state)
        stored = msgspec.json.encode(typed)
        as_dataclasses = forms.dataclass_from_flat(state)
        if "rfm" not in state or state["rfm"].get("figures") is not None:
            assert orjson.dumps(as_dataclasses) == stored
        else:  # Rfm omits figures it does not have (as the dict did); orjson writes null
            rfm = orjson.loads(stored)["rfm"]
            assert orjson.loads(orjson.dumps(as_dataclasses))["rfm"] == {**rfm, "figures": None}
        assert forms.dataclass_to_flat(as_dataclasses) == state
        again = msgspec.json.decode(stored, type=tracked)
        assert msgspec.json.encode(again) == stored
        assert gc.is_tracked(again) and not gc.is_tracked(typed)
