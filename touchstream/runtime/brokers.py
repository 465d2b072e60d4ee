"""Which broker a local stack runs on: Apache Kafka or the embedded Tansu.

``touchstream demo`` defaults to the embedded broker (it needs nothing but ``pip install``);
``touchstream bench`` defaults to Apache Kafka, the broker users run, so its numbers are theirs.
Both say which broker and which version they ran on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from touchstream.runtime.apache_kafka import KafkaUnavailable, start_kafka
from touchstream.runtime.embedded import start_broker
from touchstream.runtime.processes import Child

KAFKA = "kafka"
EMBEDDED = "embedded"
KINDS = (KAFKA, EMBEDDED)
_PRODUCTS = {KAFKA: "Apache Kafka", EMBEDDED: "embedded Tansu"}


class Broker(Protocol):
    """What a stack needs of its broker: the embedded one or Apache Kafka."""

    kind: str
    version: str
    child: Child

    @property
    def bootstrap(self) -> str: ...

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def start(kind: str, workdir: Path) -> Broker:
    """A fresh broker of ``kind`` on free loopback ports; its log is ``workdir/broker.log``.

    Raises ``KafkaUnavailable`` (naming what to install) when Apache Kafka cannot run here."""
    log_path = workdir / "broker.log"
    if kind == EMBEDDED:
        return start_broker(log_path=log_path)
    if kind == KAFKA:
        return start_kafka(workdir / "kafka", log_path=log_path)
    raise ValueError(f"unknown broker kind {kind!r}; known: {', '.join(KINDS)}")


def describe(kind: str, version: str) -> str:
    """A broker as a reader of a report wants it: product and version."""
    return f"{_PRODUCTS.get(kind, kind)} {version}"


def unavailable(command: str, exc: KafkaUnavailable) -> str:
    """The error of ``touchstream COMMAND --broker kafka`` on a machine without a JDK or Maven:
    what to install, and the broker that runs without either."""
    return (
        f"touchstream {command}: {exc}\n"
        f"touchstream {command}: or run on the embedded broker, which needs neither: "
        f"touchstream {command} --broker {EMBEDDED}"
    )
