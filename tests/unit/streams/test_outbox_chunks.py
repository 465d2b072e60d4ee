"""A partition's output cut into the producer's batches: each batch sent is the one its records
were measured in (streams/outbox.py, ``_chunks``), holding exactly its run of records."""

from __future__ import annotations

import random

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from touchstream.streams.outbox import _chunks


class Producer:
    """The part of aiokafka's producer ``_chunks`` uses, with its real batch builder."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0, is_transactional=False)


def _sent(builder: BatchBuilder) -> list[tuple[bytes | None, bytes | None]]:
    batch = MemoryRecords(bytes(builder._build())).next_batch()
    return [(record.key, record.value) for record in batch]


@pytest.mark.parametrize("seed", range(20))
def test_each_batch_sent_holds_exactly_its_run_of_records_in_order(seed: int) -> None:
    rng = random.Random(seed)
    records = [
        (f"ts-{i}".encode(), rng.randbytes(rng.choice([10, 200, 1500, 5000])))
        for i in range(rng.randint(1, 60))
    ]
    limit = rng.choice([None, 2048, 8192, 20000])
    chunks = _chunks(Producer(rng.choice([4096, 16384])), records, limit)

    assert [record for run, _ in chunks for record in run] == records
    for run, builder in chunks:
        assert _sent(builder) == run
