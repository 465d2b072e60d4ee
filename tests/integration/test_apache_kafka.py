"""The broker under the tests is the Apache Kafka release the project pins (README)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import start_test_kafka
from touchstream.runtime.apache_kafka import KAFKA_VERSION, PINNED_VERSION, KafkaBroker
from touchstream.runtime.stack import Broker


def test_the_suite_runs_on_the_pinned_apache_kafka(broker: Broker, tmp_path: Path) -> None:
    # on the embedded broker, the Kafka-only tests start this same release
    kafka = broker if isinstance(broker, KafkaBroker) else start_test_kafka(tmp_path)
    try:
        deadline = time.monotonic() + 10
        while kafka.reported_version() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        reported = kafka.reported_version()
        assert reported is not None and KAFKA_VERSION.startswith(reported), reported
        assert kafka.version == KAFKA_VERSION
        assert kafka.running_jar() == f"kafka_2.13-{KAFKA_VERSION}.jar"
    finally:
        if kafka is not broker:
            kafka.stop()
    if not os.environ.get("TOUCHSTREAM_KAFKA_VERSION"):  # no release asked for by hand
        assert KAFKA_VERSION == PINNED_VERSION
