"""Bytes of customer state per shopper, over the bench's data set replayed through the pure
core (``domain.offline``, the oracle of the tests): ``python bench/state_size.py``.

It measures the customers table only (values as the worker stores them: orjson bytes); the
loyalty and activity windows are not in the offline core.
"""

from __future__ import annotations

import collections
import statistics
import sys

import orjson

from touchstream.bench.replay import replayed


def main(events: int = 50_000, customers: int = 5_000) -> None:
    stage = replayed(events, customers)
    kinds: collections.Counter[str] = collections.Counter()
    sizes = {key: len(orjson.dumps(state)) for key, state in stage.table.items()}
    live = sorted(size for key, size in sizes.items() if "into" not in stage.table[key])
    kinds.update("redirect" if "into" in s else "live" for s in stage.table.values())
    print(
        f"{events:,} events of {customers:,} shoppers: {kinds['live']:,} live profiles, "
        f"{kinds['redirect']:,} redirects"
    )
    print(
        f"live profile bytes: mean {statistics.mean(live):,.0f}, p50 {live[len(live) // 2]:,}, "
        f"p99 {live[int(len(live) * 0.99)]:,}, max {live[-1]:,}"
    )
    print(f"all records per live profile: {sum(sizes.values()) / len(live):,.0f} bytes")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
