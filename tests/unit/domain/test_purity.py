"""The pure core stays pure: importing every module of ``touchstream.domain`` loads no stream
processor, Kafka client, Redis client or metrics library, directly or through another module:
the rules run, and are tested, without a broker, and the offline replay of the core is the
oracle the running system is compared with. Checked in a fresh interpreter, so what other tests
imported cannot hide a reach; on failure the message names the chain of imports that pulled the
library in (``touchstream.domain.offline -> touchstream.streams.timer_index -> aiokafka`` before
the offline stage moved to ``touchstream/offline.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import touchstream.domain

FORBIDDEN = ("faust", "mode", "aiokafka", "kafka", "redis", "prometheus_client", "aiohttp")
# what the core may import from the rest of the package: its rules and settings, the error root
ALLOWED_PACKAGE = ("touchstream.domain", "touchstream.config", "touchstream.errors")

# Runs in the fresh interpreter: a meta-path finder notes, for every module, the module whose
# code asked for it first (the nearest frame outside importlib), then every domain module is
# imported and the importers, the modules loaded and the domain modules are printed as JSON.
PROBE = r"""
import importlib, json, pkgutil, sys

importer = {}

class Recorder:
    def find_spec(self, name, path=None, target=None):
        if name not in importer:
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith(
                "importlib"
            ):
                frame = frame.f_back
            importer[name] = frame.f_globals.get("__name__", "?") if frame else "?"
        return None

sys.meta_path.insert(0, Recorder())
import touchstream.domain as domain

names = ["touchstream.domain"] + [
    m.name for m in pkgutil.walk_packages(domain.__path__, "touchstream.domain.")
]
for name in names:
    importlib.import_module(name)
print(json.dumps({"importer": importer, "loaded": sorted(sys.modules), "domain": names}))
"""


def probe() -> dict:
    root = Path(touchstream.domain.__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=root, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def chain(found: dict, module: str) -> str:
    """``a -> b -> module``: who imported whom, back to the domain module that started it."""
    links = [module]
    while links[-1] in found["importer"] and found["importer"][links[-1]] not in links:
        parent = found["importer"][links[-1]]
        if parent in ("__main__", "pkgutil"):  # the probe itself (walk_packages imports too)
            break
        links.append(parent)
    return " -> ".join(reversed(links))


def test_every_domain_module_is_checked():
    """The probe really imports the core (a probe importing nothing would pass anything)."""
    found = probe()
    modules = set(found["loaded"])
    assert {"touchstream.domain.linking", "touchstream.domain.timers"} <= set(found["domain"])
    assert set(found["domain"]) <= modules
    root = Path(touchstream.domain.__file__).parent
    expected = {
        ".".join(("touchstream.domain", *p.relative_to(root).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for p in root.rglob("*.py")
    }
    assert set(found["domain"]) == expected


def test_the_domain_reaches_no_stream_kafka_redis_or_metrics_library():
    found = probe()
    reached = [
        name for name in found["loaded"] if name.split(".")[0] in FORBIDDEN and "." not in name
    ]
    assert reached == [], "the pure core imports " + "; ".join(
        chain(found, name) for name in reached
    )


def test_the_domain_imports_only_rules_settings_and_errors_from_the_package():
    """Layering: a module of streams/, tables/, agents/, serving/ or runtime/ reached from the
    core would carry the adapters (and sooner or later their libraries) into it."""
    found = probe()
    outside = [
        name
        for name in found["loaded"]
        if name.startswith("touchstream.") and not name.startswith(ALLOWED_PACKAGE)
    ]
    assert outside == [], "the pure core imports " + "; ".join(
        chain(found, name) for name in outside
    )
