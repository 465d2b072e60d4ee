"""The Dockerfile runs a real worker command, as a non-root user, with a working health check."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from touchstream.config.settings import PREFIX, Settings
from touchstream.runtime.cli import build_parser
from touchstream.runtime.processes import free_port
from touchstream.runtime.stack import Stack, clean_env

Instruction = tuple[str, str]  # (KEYWORD, arguments)


def parse(text: str) -> list[list[Instruction]]:
    """Instructions of each build stage, continuation lines joined, comments dropped."""
    stages: list[list[Instruction]] = []
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        keyword, _, args = (logical + stripped).partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages(repo: Path) -> list[list[Instruction]]:
    return parse((repo / "Dockerfile").read_text())


def exec_form(stage: list[Instruction], keyword: str) -> list[str]:
    (args,) = [a for k, a in stage if k == keyword]
    if keyword == "HEALTHCHECK":
        args = args.partition(" CMD ")[2]
    value = json.loads(args)  # exec form: the JSON array, no shell in between
    assert isinstance(value, list)
    return value


def test_a_builder_stage_and_a_slim_final_stage(stages: list[list[Instruction]]) -> None:
    assert len(stages) == 2
    builder, final = stages
    assert builder[0] == ("FROM", "python:3.11-slim AS builder")
    assert final[0] == ("FROM", "python:3.11-slim")
    assert any(k == "RUN" and "pip wheel" in a for k, a in builder)
    final_runs = " ".join(a for k, a in final if k == "RUN")
    for tool in ("build-essential", "gcc", "apt-get install"):
        assert tool not in final_runs
    assert "--no-index" in final_runs and "from=builder" in final_runs


def test_the_image_runs_as_a_non_root_user(stages: list[list[Instruction]]) -> None:
    users = [a for k, a in stages[-1] if k == "USER"]
    assert users, "no USER: the worker would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_entrypoint_is_the_worker_command_of_the_console_script(
    repo: Path, stages: list[list[Instruction]]
) -> None:
    argv = exec_form(stages[-1], "ENTRYPOINT")
    cmd = [a for k, a in stages[-1] if k == "CMD"]
    argv += json.loads(cmd[0]) if cmd else []
    scripts = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts
    assert scripts[argv[0]] == "touchstream.runtime.cli:main"
    assert build_parser().parse_args(argv[1:]).command == "worker"


def test_the_entrypoint_command_exists_in_the_installed_cli(
    stages: list[list[Instruction]],
) -> None:
    argv = exec_form(stages[-1], "ENTRYPOINT")
    result = subprocess.run(
        [sys.executable, "-m", "touchstream", *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: touchstream worker")


def test_image_environment_holds_only_real_settings(stages: list[list[Instruction]]) -> None:
    settings = {PREFIX + f.name.upper() for f in fields(Settings)}
    names = set()
    for keyword, args in stages[-1]:
        if keyword == "ENV":
            names |= {pair.split("=", 1)[0] for pair in args.split()}
    ours = {n for n in names if n.startswith(PREFIX)}
    assert ours and ours <= settings
    assert {"TOUCHSTREAM_WEB_HOST", "TOUCHSTREAM_DATA_DIR"} <= ours


def test_dockerignore_keeps_what_the_build_copies(
    repo: Path, stages: list[list[Instruction]]
) -> None:
    rules = [
        line.strip()
        for line in (repo / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                verdict = not negate
        return verdict

    copied = []
    for keyword, args in stages[0]:
        if keyword == "COPY" and "--from" not in args:
            copied += args.split()[:-1]
    assert {"pyproject.toml", "README.md", "touchstream"} <= set(copied)
    for path in copied:
        assert not ignored(path), f"{path} is copied but excluded by .dockerignore"
    assert ignored(".venv") and ignored(".git") and ignored("tests")


def healthcheck(stages: list[list[Instruction]], port: int) -> subprocess.CompletedProcess[str]:
    argv = exec_form(stages[-1], "HEALTHCHECK")
    assert argv[0] == "python" and "/healthz" in argv[-1]
    env = {**clean_env(), "TOUCHSTREAM_OPS_PORT": str(port)}
    return subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30, env=env
    )


@pytest.mark.integration
def test_healthcheck_passes_on_a_live_worker_and_fails_without_one(
    stack: Stack, stages: list[list[Instruction]]
) -> None:
    assert healthcheck(stages, free_port()).returncode != 0
    worker = stack.start_worker()
    worker.wait_for("/healthz")
    assert healthcheck(stages, worker.web_port).returncode != 0  # the customer API has none
    result = healthcheck(stages, worker.ops_port)
    assert result.returncode == 0, result.stderr
