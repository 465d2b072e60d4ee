"""RocksDB sizing: a worker's databases together stay within TOUCHSTREAM_ROCKSDB_MEMORY_MB."""

from __future__ import annotations

import pytest

from touchstream.config.settings import load_settings
from touchstream.streams.topology import rocksdb_options

TABLES = 5  # customers, two activity windows, loyalty days and months


def settings(**env: str):
    return load_settings({"TOUCHSTREAM_ENV": "development", **env})


@pytest.mark.parametrize(("budget_mb", "partitions"), [(64, 1), (1024, 8), (4096, 64)])
def test_every_database_of_a_worker_together_fits_the_budget(budget_mb: int, partitions: int):
    options = rocksdb_options(
        settings(
            TOUCHSTREAM_STORE="rocksdb",
            TOUCHSTREAM_ROCKSDB_MEMORY_MB=str(budget_mb),
            TOUCHSTREAM_PARTITIONS=str(partitions),
        ),
        TABLES,
    )
    assert options is not None
    per_database = (
        options["block_cache_size"]
        + options["block_cache_compressed_size"]
        + options["write_buffer_size"] * options["max_write_buffer_number"]
    )
    assert per_database * TABLES * partitions <= budget_mb * 2**20
    assert per_database * TABLES * partitions > budget_mb * 2**20 * 0.99  # and uses it
    assert options["block_cache_size"] < 2 * 1024**3  # not Faust's default per database


def test_the_memory_store_leaves_faust_alone():
    assert rocksdb_options(settings(TOUCHSTREAM_STORE="memory"), TABLES) is None
