"""CPU time of ``schemas.decode`` alone over the bench's records: ``python bench/decode_speed.py``.

The bench's data set (``touchstream.simulator.traffic.generate``, the seed of
``touchstream bench``) is generated as bytes before the clock starts. Each round decodes every
record twice, alternating which goes first: with the Struct check (``decode``, the worker's path)
and with the schema alone (``decode(..., schema_only=True)``: orjson and fastjsonschema, the path
before the Structs). Both must give the same events; the best round of each is printed.
Optional arguments: events, rounds, and a share of malformed records in per mille (default 0;
the simulator's malformed kinds, every one refused).
"""

from __future__ import annotations

import sys
import time

from touchstream.bench.runner import DATA_SEED, STEP_MS
from touchstream.errors import PoisonEvent
from touchstream.schemas.decode import decode, load_validators
from touchstream.simulator.traffic import Traffic, generate

NOW_MS = 1_795_400_000_000
MAX_BYTES = 1 << 20


def records(events: int, malformed_per_mille: int) -> list[bytes]:
    if not malformed_per_mille:
        start = NOW_MS - events * STEP_MS
        return [r.value for r in generate(events, 5_000, DATA_SEED, start, STEP_MS)]
    traffic = Traffic(customers=5_000, seed=DATA_SEED, malformed=malformed_per_mille / 1000)
    return [traffic.next(NOW_MS - (events - i) * STEP_MS).value for i in range(events)]


def run(values: list[bytes], schema_only: bool) -> tuple[float, list[object]]:
    out: list[object] = []
    started = time.process_time()
    for value in values:
        try:
            out.append(decode(value, MAX_BYTES, schema_only))
        except PoisonEvent as exc:
            out.append((exc.reason, exc.message))
    return time.process_time() - started, out


def main(events: int = 20_000, rounds: int = 7, malformed_per_mille: int = 0) -> None:
    values = records(events, malformed_per_mille)
    load_validators()
    best = {False: float("inf"), True: float("inf")}
    for i in range(rounds):
        results = {}
        for schema_only in (False, True) if i % 2 else (True, False):
            spent, results[schema_only] = run(values, schema_only)
            best[schema_only] = min(best[schema_only], spent)
        if results[False] != results[True]:
            raise SystemExit("the two paths disagree")
    refused = sum(isinstance(r, tuple) for r in results[False])
    print(f"{events:,} records ({refused:,} refused), best of {rounds} alternating rounds:")
    for schema_only, name in ((True, "schema only (orjson + fastjsonschema)"), (False, "decode")):
        spent = best[schema_only]
        print(
            f"  {name:38s} {spent:6.3f} s CPU  {events / spent:10,.0f} records/s  "
            f"{spent / events * 1e6:5.2f} µs/record"
        )
    print(f"  speed-up {best[True] / best[False]:.2f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
