"""Bytes of customer state per shopper, over the bench's data set replayed through the pure
core (``touchstream.offline``, the oracle of the tests): ``python bench/state_size.py``.

It measures the customers table only, as the worker stores it (``tables.state_codec``: orjson,
compressed) and as plain JSON; the loyalty and activity windows are not in the offline core.
"""

from __future__ import annotations

import collections
import statistics
import sys
from typing import Any

import orjson

from touchstream.bench.replay import replayed
from touchstream.domain.records import json_default
from touchstream.tables import state_codec


def main(events: int = 50_000, customers: int = 5_000) -> None:
    stage = replayed(events, customers)
    kinds: collections.Counter[str] = collections.Counter()
    kinds.update("redirect" if "into" in s else "live" for s in stage.table.values())
    print(
        f"{events:,} events of {customers:,} shoppers: {kinds['live']:,} live profiles, "
        f"{kinds['redirect']:,} redirects"
    )

    def as_json(state: dict[str, Any]) -> bytes:  # the state's records as their dicts
        return orjson.dumps(state, default=json_default)

    for form, encode in (("stored", state_codec.encode), ("JSON", as_json)):
        sizes = {key: len(encode(state)) for key, state in stage.table.items()}
        live = sorted(size for key, size in sizes.items() if "into" not in stage.table[key])
        print(
            f"{form}: live profile bytes mean {statistics.mean(live):,.0f}, "
            f"p50 {live[len(live) // 2]:,}, p99 {live[int(len(live) * 0.99)]:,}, "
            f"max {live[-1]:,}; all records per live profile "
            f"{sum(sizes.values()) / len(live):,.0f} bytes"
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
