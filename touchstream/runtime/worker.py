"""The production entry point: one Faust worker configured from env + rules file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import faust

from touchstream.config.rules import Rules
from touchstream.config.settings import Settings
from touchstream.streams.topology import Topology


def run_worker(settings: Settings, rules: Rules) -> None:
    logging.getLogger("touchstream").info("starting worker with %r", settings)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    topology = Topology(settings, rules)
    worker = faust.Worker(
        topology.app,
        loglevel=settings.log_level.upper(),
        stdout=sys.stdout,
        stderr=sys.stderr,
    )
    worker.execute_from_commandline()
