"""The shipped OpenAPI description (touchstream/serving/openapi.json) tested against a real
worker on Apache Kafka and a real Redis with schemathesis (pinned in the dev extras): every
answer conforms to the document (status, content type, headers, body), invalid input is
refused, and the endpoints that need a token refuse requests without one (ignored_auth)."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import orjson
import pytest

from touchstream.runtime.kafka_io import produce
from touchstream.runtime.stack import Stack
from touchstream.simulator.factory import purchase

pytestmark = pytest.mark.integration

STRONG_SECRET = "an-hmac-secret-of-at-least-32-characters"


def test_the_worker_answers_as_its_openapi_document_says(stack: Stack, tmp_path: Path) -> None:
    worker = stack.start_worker(
        env="production",  # the GET lookup answers 405 as documented
        allow_plaintext="true",
        hmac_secret=STRONG_SECRET,
        api_rate_per_s="100000",  # the fuzzer is one client; 429 is tested on its own
        api_rate_burst="100000",
    )
    worker.wait_ready()
    # the shoppers of the document's examples, so that the examples reach real profiles
    produce(
        stack.broker.bootstrap,
        stack.settings["topic_prefix"] + "touchpoints",
        [
            (b"crm-1001", purchase({"customer_id": "crm-1001"}, "o-1", 12_550)),
            (b"ann", purchase({"email": "ann.shopper@example.com"}, "o-2", 5_000)),
        ],
    )
    worker.wait_for("/customers/crm-1001", timeout_s=30)
    worker.poll(
        "/openapi.json", lambda _: worker.lookup("email", "ann.shopper@example.com")[0] == 200
    )
    served = orjson.loads(worker.get("/openapi.json")[1])
    shipped = resources.files("touchstream.serving").joinpath("openapi.json").read_bytes()
    assert served == orjson.loads(shipped)

    result = subprocess.run(
        [
            *(sys.executable, "-m", "schemathesis.cli", "run", str(worker.http + "/openapi.json")),
            *("--checks", "all", "--max-examples", "40", "--seed", "28", "--workers", "1"),
            *("--header", f"Authorization: Bearer {worker.token}", "--no-color"),
            *("--report", "junit", "--report-dir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis keeps its cache in the working directory
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout[result.stdout.index("SUMMARY") :]
    assert "Tested: 2" in summary and "✅ Examples" in summary and "No issues found" in summary
