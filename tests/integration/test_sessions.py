"""Sessions end to end: the summary on `sessions`, the activity windows on the profile,
browse abandonment, and an erasure that leaves tombstones in the activity changelogs."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from touchstream.runtime.kafka_io import produce_inputs, read_topic
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import event

pytestmark = pytest.mark.integration

RULES = """
[sessions]
gap_minutes = 0.05
"""


def test_a_browsing_session_is_summarised_counted_and_erased_everywhere(
    stack: Stack, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    worker = stack.start_worker(rules=str(rules), idle_fallback_s="1")
    worker.wait_ready()
    prefix = stack.settings["topic_prefix"]
    shopper = {"customer_id": "CRM-81", "device_id": "app-81"}
    now = int(time.time() * 1000)
    visit = [
        event("consent_updated", shopper, {"purposes": {"email_marketing": True}}, occurred_at=now),
        event("page_view", shopper, {"url": "/"}, occurred_at=now + 1, channel="app"),
        *(
            event("product_view", shopper, {"sku": "BOOT-9"}, occurred_at=now + 2 + i)
            for i in range(3)
        ),
        event("search", shopper, {"query": "boots"}, occurred_at=now + 10),
    ]
    produce_inputs(stack.broker.bootstrap, prefix + "touchpoints", [(b"s", e) for e in visit])

    (summary,) = [
        r.json() for r in read_topic(stack.broker.bootstrap, prefix + "sessions", expect=1)
    ]
    assert summary["customer_id"] == "CRM-81"
    assert (summary["page_views"], summary["product_views"], summary["searches"]) == (1, 3, 1)
    assert summary["channel"] == "app" and summary["converted"] is False
    browse = read_topic(stack.broker.bootstrap, prefix + "triggers.browse_abandoned", expect=1)
    assert browse[0].json()["evidence"]["products"] == [{"sku": "BOOT-9", "views": 3}]

    deadline = time.monotonic() + 20
    profile: dict = {}
    while profile.get("sessions_today") != 1:
        assert time.monotonic() < deadline, f"no session on the profile: {profile}"
        status, body = worker.get("/customers/CRM-81")
        profile = orjson.loads(body) if status == 200 else {}
        time.sleep(0.2)
    assert (profile["page_views_today"], profile["product_views_today"]) == (1, 3)

    erasure = event("erasure_requested", {"customer_id": "CRM-81"}, {"request_id": "E-81"})
    produce_inputs(stack.broker.bootstrap, prefix + "touchpoints", [(b"s", erasure)])
    read_topic(stack.broker.bootstrap, prefix + "privacy.receipts", expect=1)
    for table in ("activity-hourly", "activity-daily"):
        changelog = f"{prefix}touchstream-{table}-changelog"
        records = read_topic(stack.broker.bootstrap, changelog, expect=2, timeout_s=10)
        mine = [r for r in records if b"CRM-81" in (r.key or b"")]
        assert mine, f"no activity of the shopper in {changelog}"
        assert mine[-1].value is None  # the last word on the window is a tombstone
