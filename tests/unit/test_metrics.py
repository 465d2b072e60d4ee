"""A batch's Tally must leave the registry exactly as the same updates made one by one."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from touchstream.metrics import Tally

BUCKETS = (0.005, 0.01, 0.1, 1)
# on a bound, between bounds, below the first, above the last (+Inf), zero
VALUES = [0.005, 0.0051, 0.0, 0.07, 0.1, 3.5, 0.001, 1.0, 250.0]


def _metrics(registry: CollectorRegistry) -> tuple[Counter, Counter, Histogram]:
    applied = Counter("applied", "events", ["type"], registry=registry)
    links = Counter("links", "links", registry=registry)
    latency = Histogram("latency", "seconds", buckets=BUCKETS, registry=registry)
    return applied, links, latency


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
    }


def test_a_tally_applies_what_one_update_at_a_time_would() -> None:
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    applied, links, latency = _metrics(one_by_one)
    for kind in ("purchase", "page_view", "purchase"):
        applied.labels(kind).inc()
    links.inc()
    for value in VALUES:
        latency.observe(value)

    applied, links, latency = _metrics(batched)
    tally = Tally()
    for kind in ("purchase", "page_view", "purchase"):
        tally.inc(applied, kind)
    tally.inc(links)
    for value in VALUES:
        tally.observe(latency, value)
    tally.apply()

    assert _samples(batched) == _samples(one_by_one)
    assert _samples(batched)[("applied_total", (("type", "purchase"),))] == 2
    assert _samples(batched)[("latency_bucket", (("le", "0.005"),))] == 3


def test_applying_again_adds_nothing() -> None:
    registry = CollectorRegistry()
    applied, _, latency = _metrics(registry)
    tally = Tally()
    tally.inc(applied, "purchase")
    tally.observe(latency, 0.2)
    tally.apply()
    tally.apply()
    assert _samples(registry)[("applied_total", (("type", "purchase"),))] == 1
    assert _samples(registry)[("latency_count", ())] == 1


def test_a_histogram_with_labels_must_be_given_them() -> None:
    registry = CollectorRegistry()
    labelled = Histogram("by_kind", "seconds", ["kind"], buckets=BUCKETS, registry=registry)
    tally = Tally()
    tally.observe(labelled, 0.2)
    with pytest.raises(ValueError):
        tally.apply()
