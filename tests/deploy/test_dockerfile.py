"""The Dockerfile, its entrypoint and .dockerignore: what the image runs, as whom, and whether it can migrate."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.helpers import ROOT, known_env_names

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"the stage has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions by stage, with line continuations joined and global ARG defaults substituted in FROM."""
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            args = re.sub(r"--platform=\S+\s+", "", args)
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args.get(m[1] or m[2], ""), args.split()[0])
            parts = args.split()
            stages.append(Stage(base=base, name=parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
        elif not stages and instruction == "ARG":
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            assert stages, f"{instruction} before the first FROM"
            stages[-1].instructions.append((instruction, args))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return list(value)


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            assert sep, f"use ENV KEY=VALUE: {args}"
            env[key] = re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: env.get(m[1] or m[2], f"${m[1] or m[2]}"), value)
    return env


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from another stage)."""
    result = []
    for args in stage.all("COPY"):
        tokens = shlex.split(args)
        if any(t.startswith("--from=") for t in tokens):
            continue
        paths = [t for t in tokens if not t.startswith("--")]
        result.append((paths[:-1], paths[-1]))
    return result


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_every_stage_is_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 1
    for stage in stages:
        assert stage.base == "python:3.11-slim", stage.base


def test_the_package_is_installed_with_pip(stages: list[Stage]) -> None:
    runs = [args for stage in stages for args in stage.all("RUN")]
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in runs), runs


def test_runs_as_a_non_root_user(final: Stage) -> None:
    uid = final.last("USER").split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {uid}: use a numeric non-root uid (runAsNonRoot checks it)"
    creates = " ".join(final.all("RUN"))
    assert f"--uid {uid}" in creates, "the image must create the user it runs as"
    assert re.search(r"chown \S+ " + re.escape(env_of(final)["KB_DATA_DIR"]), creates), "KB_DATA_DIR must be writable"


def test_cmd_serves_http_mode_on_the_exposed_port(final: Stage) -> None:
    cmd = exec_form(final.last("CMD"))
    assert cmd[:2] == ["kb", "serve"]
    port = cmd[cmd.index("--port") + 1]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0", "listen on every interface inside the container"
    assert final.last("EXPOSE").split("/")[0] == port
    healthcheck = final.last("HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck
    assert "CMD" in healthcheck and "--start-period" in healthcheck
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    assert entrypoint == ["kb-entrypoint"]
    assert ("deploy/docker/entrypoint.sh", "/usr/local/bin/kb-entrypoint") in [
        (sources[0], destination) for sources, destination in copies(final)]


def test_data_dir_is_the_volume(final: Stage) -> None:
    env = env_of(final)
    assert json.loads(final.last("VOLUME")) == [env["KB_DATA_DIR"]]
    assert "/opt/kb/bin" in env["PATH"].split(":")[0]


def test_image_env_sets_only_real_settings(stages: list[Stage]) -> None:
    python_env = {"PATH", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    known = known_env_names()
    for stage in stages:
        for name in env_of(stage):
            assert name in known or name in python_env or name.startswith("PIP_"), f"ENV {name} is not a setting"


def run_entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(["sh", str(ENTRYPOINT), *command], env={**base, **env}, capture_output=True, text=True,
                          timeout=30, check=False)


def test_entrypoint_refuses_what_would_not_serve_http() -> None:
    http = {"SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1"}
    ok = run_entrypoint(http, "kb", "serve", "--port", "8080")
    # `kb` is not on this PATH: reaching exec proves the checks passed.
    assert ok.returncode == 127 and "kb-bot:" not in ok.stderr, ok.stderr
    socket = run_entrypoint({**http, "SLACK_APP_TOKEN": "xapp-1"}, "kb", "serve")
    assert socket.returncode == 64 and "Socket Mode" in socket.stderr
    unsigned = run_entrypoint({"SLACK_BOT_TOKEN": "xoxb-1"}, "kb", "serve")
    assert unsigned.returncode == 64 and "SLACK_SIGNING_SECRET" in unsigned.stderr
    tokenless = run_entrypoint({"KB_SLACK_SIGNING_SECRET": "s"}, "kb", "serve")
    assert tokenless.returncode == 64 and "SLACK_BOT_TOKEN" in tokenless.stderr
    other = run_entrypoint({}, "echo", "reindex")
    assert other.returncode == 0 and other.stdout.strip() == "reindex", "other commands run without the checks"


def test_entrypoint_is_executable_in_git() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/bin/sh\n")


def test_the_installed_package_can_migrate(tmp_path: Path) -> None:
    """Build the wheel the image's `pip install .` builds, unpack it alone (no source tree on the path), and run
    the migrations from it: what `kb serve` does first in the container."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300,
                           check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert "store/migrations/env.py" in names and "store/migrations/script.py.mako" in names
    assert any(n.startswith("store/migrations/versions/0001") for n in names)
    script = (
        "import store.db as db\n"
        f"assert db.__file__.startswith({str(site)!r}), db.__file__\n"
        f"db.migrate('sqlite:///{tmp_path / 'kb.sqlite3'}')\n"
        "from sqlalchemy import create_engine, inspect\n"
        f"print(sorted(inspect(create_engine('sqlite:///{tmp_path / 'kb.sqlite3'}')).get_table_names()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(site)}, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    tables = result.stdout
    assert "alembic_version" in tables and "index_outbox" in tables and "channel_settings" in tables, tables


def test_the_image_has_no_source_tree_on_the_import_path(final: Stage) -> None:
    assert "PYTHONPATH" not in env_of(final)
    copied = {source for sources, _ in copies(final) for source in sources}
    assert not copied & {"bot", "store", "handlers", "alembic"}, copied


def pattern_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex: `*` and `?` stay within one path segment, `**` spans any number."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = pattern_regex((pattern[1:] if negate else pattern).strip("/"))
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_admits_exactly_what_the_image_copies(stages: list[Stage]) -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    for stage in stages:
        for sources, _ in copies(stage):
            for source in sources:
                origin = ROOT / source
                files = [p for p in origin.rglob("*") if p.is_file()] if origin.is_dir() else [origin]
                files = [f for f in files if "__pycache__" not in f.parts]
                assert files, f"{source} is empty"
                for file in files:
                    relative = file.relative_to(ROOT).as_posix()
                    assert not dockerignore_excludes(patterns, relative), f".dockerignore excludes {relative}"
    for secret_or_bulk in (".env", ".venv/bin/python", ".git/config", "tests/conftest.py", "benchmarks/speed.py",
                           "bot/roles/__pycache__/x.cpython-311.pyc"):
        assert dockerignore_excludes(patterns, secret_or_bulk), f".dockerignore lets {secret_or_bulk} in"
