"""Fixtures of the deployment checks: the repository's deploy files and Prometheus's promtool."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def deploy() -> Path:
    return DEPLOY


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def alert_rules() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())


@pytest.fixture(scope="session")
def promtool() -> str:
    # a missing promtool fails the test rather than skipping it: `make test` installs it
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found on PATH: run `make test-tools` (Debian's prometheus)")
    return found
