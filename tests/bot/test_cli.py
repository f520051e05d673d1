"""The `kb` command line as a user runs it: real processes, real SQLite and Weaviate."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.scheduler import LEASE
from store import leases
from store.db import Database
from store.weaviate_conn import WeaviateTarget
from tests.conftest import free_port
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_requests import post, slash_command

pytestmark = pytest.mark.weaviate
KB = [sys.executable, "-m", "bot"]


@pytest.fixture
def kb_env(tmp_path: Path, weaviate_target: WeaviateTarget) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "ANTHROPIC", "SLACK", "SENTRY"))}
    env.update(KB_DATA_DIR=str(tmp_path / "data"), KB_WEAVIATE_PORT=str(weaviate_target.port),
               KB_WEAVIATE_GRPC_PORT=str(weaviate_target.grpc_port),
               KB_INDEX_NAME="Cli" + "".join(ch for ch in tmp_path.name if ch.isalnum()))
    return env


def kb(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KB, *args], env=env, input=stdin, capture_output=True, text=True, timeout=300)


def test_propose_approve_search_ask_show_trace(kb_env: dict[str, str]) -> None:
    proposed = kb(kb_env, "propose", "--title", "Runner disk full", "--by", "alice", "--json",
                  "Jobs fail with 'no space left on device'. Run `docker system prune -af` on the runner.")
    assert proposed.returncode == 0, proposed.stderr
    proposal = json.loads(proposed.stdout)
    assert (proposal["status"], proposal["proposer"]) == ("pending", "alice")

    assert kb(kb_env, "search", "runner disk", "--json").stdout.strip() == json.dumps(
        {"query": "runner disk", "hits": []})

    own = kb(kb_env, "approve", str(proposal["id"]), "--by", "alice")
    assert own.returncode == 1 and own.stdout == ""
    assert own.stderr.strip().startswith("kb: You proposed") and own.stderr.count("\n") == 1

    approved = kb(kb_env, "approve", str(proposal["id"]), "--by", "bob", "--json")
    assert approved.returncode == 0, approved.stderr
    decided = json.loads(approved.stdout)
    assert (decided["status"], decided["version"], decided["indexed"]) == ("approved", 1, True)

    hits = json.loads(kb(kb_env, "search", "no space left on device", "--json").stdout)["hits"]
    assert hits[0]["entry_id"] == decided["entry_id"] and hits[0]["title"] == "Runner disk full"
    assert set(hits[0]) >= {"entry_id", "source_ref", "title", "score", "snippet"}

    answer = json.loads(kb(kb_env, "ask", "the runner says no space left on device", "--json").stdout)
    assert answer["grounded"] is True
    assert answer["citations"] == [{"entry_id": decided["entry_id"], "source_ref": None,
                                    "title": "Runner disk full", "version": 1}]

    shown = json.loads(kb(kb_env, "show", str(decided["entry_id"]), "--json").stdout)
    assert [(h["version"], h["proposed_by"], h["approved_by"]) for h in shown["history"]] == [(1, "alice", "bob")]
    assert [a["action"] for a in shown["audit"]] == ["proposal.submitted", "proposal.approve_refused",
                                                      "proposal.approved"]

    trace = json.loads(kb(kb_env, "trace", answer["task_id"], "--json").stdout)
    assert trace["role"] == "answerer" and [s["name"] for s in trace["steps"]] == ["retrieve", "answer"]

    unknown = json.loads(kb(kb_env, "ask", "how do I rotate the kafka consumer offsets", "--json").stdout)
    assert (unknown["grounded"], unknown["citations"]) == (False, [])
    gaps = json.loads(kb(kb_env, "gaps", "--json").stdout)
    assert [g["question"] for g in gaps] == ["how do I rotate the kafka consumer offsets"]

    doctor = kb(kb_env, "doctor", "--json")
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["clean"] is True


def test_import_markdown_folder_as_proposals_then_reject(kb_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "disk.md").write_text("# Disk full\n\n## Fix\nPrune images.\n", encoding="utf-8")
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    imported = json.loads(kb(kb_env, "import", str(folder), "--json").stdout)
    assert (imported["created"], imported["proposed"]) == (0, 1)
    pending = json.loads(kb(kb_env, "list", "--proposals", "--json").stdout)
    assert [(p["title"], p["origin"]) for p in pending] == [("Disk full", "import")]
    rejected = kb(kb_env, "reject", str(pending[0]["id"]), "--by", "bob", "--reason", "needs steps")
    assert rejected.returncode == 0, rejected.stderr
    assert json.loads(kb(kb_env, "list", "--proposals", "--json").stdout) == []
    assert json.loads(kb(kb_env, "list", "--json").stdout) == []


def test_search_reads_queries_from_stdin_one_json_line_each(kb_env: dict[str, str], tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(
        json.dumps({"id": "ops:cache.md", "title": "Cache stampede", "text": "Warm the cache before deploys."})
        + "\n" + json.dumps({"id": "ops:dns.md", "title": "DNS failures", "text": "Check resolv.conf and CoreDNS."}),
        encoding="utf-8")
    assert kb(kb_env, "import", str(corpus), "--approved-by", "eval").returncode == 0
    result = kb(kb_env, "search", "-", "--json", "-k", "1", stdin="cache stampede\n\ncoredns failing\n")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["cache stampede", "coredns failing"]
    assert [line["hits"][0]["source_ref"] for line in lines] == ["ops:cache.md", "ops:dns.md"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["approve", "abc", "--by", "bob"], 2, "'abc' is not a valid integer"),
        (["approve", "7"], 2, "Missing option '--by'"),
        (["show", "999"], 1, "There is no entry #999"),
        (["search", "   "], 1, "the question is empty"),
        (["search", "x", "-k", "500"], 1, "-k must be between 1 and 50"),
        (["import", "/nonexistent/runbooks"], 1, "does not exist"),
        (["reject", "1", "--by", "bob", "--reason", "x"], 1, "no proposal #1"),
        (["list", "--status", "weird"], 1, "--status must be one of"),
        (["frobnicate"], 2, "No such command 'frobnicate'"),
    ],
)
def test_bad_input_exits_non_zero_with_a_one_line_reason(kb_env: dict[str, str], args: list[str], code: int,
                                                          message: str) -> None:
    result = kb(kb_env, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_bad_jsonl_names_the_line(kb_env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "text": "fine"}\n{not json\n', encoding="utf-8")
    result = kb(kb_env, "import", str(broken))
    assert result.returncode == 1 and "broken.jsonl:2: not valid JSON" in result.stderr


def test_bad_configuration_is_one_line(kb_env: dict[str, str]) -> None:
    result = kb({**kb_env, "KB_KOREAN_TOKENIZER": "klingon"}, "list")
    assert result.returncode == 1
    assert result.stderr.startswith("kb: bad configuration: KB_KOREAN_TOKENIZER")


def test_every_command_has_help(kb_env: dict[str, str]) -> None:
    commands = ["import", "search", "ask", "propose", "edit", "approve", "reject", "deprecate", "list", "show",
                "reindex", "doctor", "sync", "trace", "serve", "gaps"]
    for command in commands:
        result = kb(kb_env, command, "--help")
        assert result.returncode == 0 and "Usage: kb " + command in result.stdout, command


def test_console_drives_the_real_app_through_stdin(kb_env: dict[str, str]) -> None:
    script = "\n".join([
        "/kb propose Queue backlog", "Scale the workers to 10 and watch the backlog drain.", ".",
        "approve 1",                      # the author may not approve
        "/as bob",
        "edit 1", "", "Scale the workers to 12 and watch the <!channel> backlog drain.", ".", "queues",
        "approve 1",
        "/kb ask the queue backlog keeps growing",
        "helpful",
        "/kb propose Flaky DNS", "Restart CoreDNS.", ".",
        "reject 2", "Too vague: which cluster?", ".",
        "/kb pending",
        "/kb frobnicate",
        "quit", ""])
    result = kb(kb_env, "serve", "--as", "alice", stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(#CAPPROVALS) #1: Queue backlog" in out and "[Approve] [Edit] [Reject]" in out
    assert "You proposed #1, so someone else has to approve it" in out
    assert "== Edit proposal ==" in out
    assert ":white_check_mark: Approved by bob" in out and "now entry version v1" in out
    assert "[1] Queue backlog (entry #1 v1)" in out and "Scale the workers to 12" in out
    assert "<!channel>" in out  # shown as typed: the card escaped it, so nobody was pinged
    assert "Thanks, noted." in out
    assert ":x: Rejected by bob" in out and "Too vague: which cluster?" in out
    assert "No proposals are waiting for approval." in out
    assert "I don't know the subcommand `frobnicate`" in out
    assert "Traceback" not in out + result.stderr


def test_serve_in_http_mode_answers_signed_requests(kb_env: dict[str, str]) -> None:
    import time

    import httpx

    from tests.conftest import free_port
    from tests.fakes.slack_api import FakeSlackApi
    from tests.fakes.slack_requests import post, slash_command

    port = free_port()
    with FakeSlackApi() as fake:
        env = {**kb_env, "SLACK_SIGNING_SECRET": "s3cret", "SLACK_BOT_TOKEN": "xoxb-test",
               "KB_SLACK_API_URL": fake.api_url}
        server = subprocess.Popen([*KB, "serve", "--port", str(port), "--host", "127.0.0.1"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert health.json() == {"ok": True}
            reply = post(f"http://127.0.0.1:{port}", slash_command("help"), "s3cret")
            assert reply.status_code == 200 and "/kb ask" in reply.text
            assert post(f"http://127.0.0.1:{port}", slash_command("help"), "wrong").status_code == 401
        finally:
            server.terminate()
            server.communicate(timeout=30)


def test_kb_ask_uses_claude_when_the_key_is_set(kb_env: dict[str, str]) -> None:
    from tests.fakes.anthropic_api import FakeAnthropic, Message, search_result_citation, text_block

    proposed = json.loads(kb(kb_env, "propose", "--title", "Runner disk full", "--by", "alice", "--json",
                             "Jobs fail with 'no space left on device'. Run `docker system prune -af`.").stdout)
    decided = json.loads(kb(kb_env, "approve", str(proposed["id"]), "--by", "bob", "--json").stdout)

    def cite_first(body: dict[str, object]) -> Message:
        first = next(b for b in body["messages"][0]["content"] if b["type"] == "search_result")  # type: ignore[index]
        return Message([text_block("Prune Docker on the runner.", [
            search_result_citation(0, first["source"], first["title"], first["content"][0]["text"])])],
            input_tokens=321, output_tokens=12)

    with FakeAnthropic() as claude:
        claude.set_responder(cite_first)
        env = {**kb_env, **claude.env(), "KB_ANTHROPIC_MODEL": "claude-opus-5-5"}
        asked = kb(env, "ask", "the runner says no space left on device", "--json")
        assert asked.returncode == 0, asked.stderr
        answer = json.loads(asked.stdout)
        assert answer["answer"] == "Prune Docker on the runner.[1]" and answer["grounded"] is True
        assert answer["citations"] == [{"entry_id": decided["entry_id"], "source_ref": None,
                                        "title": "Runner disk full", "version": 1}]
        [request] = claude.message_requests()
        assert request.body["model"] == "claude-opus-5-5"
        assert request.headers["authorization"] == f"Bearer {claude.api_key}"
    trace = json.loads(kb(kb_env, "trace", answer["task_id"], "--json").stdout)
    step = trace["steps"][1]
    assert (step["mode"], step["model"], step["input_tokens"], step["output_tokens"]) == (
        "claude", "claude-opus-5-5", 321, 12)


def test_kb_review_reruns_the_reviewer_on_a_pending_proposal(kb_env: dict[str, str]) -> None:
    proposed = json.loads(kb(kb_env, "propose", "--title", "Clean a full runner", "--by", "alice", "--json",
                             "Wipe it: `rm -rf /var/lib/docker` then reboot. TODO: check the cache first.").stdout)
    assert proposed["review"]["mode"] == "similarity"  # reviewed on submission, without a model
    reviewed = kb(kb_env, "review", str(proposed["id"]), "--json")
    assert reviewed.returncode == 0, reviewed.stderr
    kinds = sorted(f["kind"] for f in json.loads(reviewed.stdout)["findings"])
    assert kinds == ["risky", "stale"]
    kb(kb_env, "reject", str(proposed["id"]), "--by", "bob", "--reason", "unsafe")
    again = kb(kb_env, "review", str(proposed["id"]))
    assert again.returncode == 1 and "only pending proposals are reviewed" in again.stderr


def test_kb_job_runs_a_scheduled_job_by_hand(kb_env: dict[str, str]) -> None:
    proposed = json.loads(kb(kb_env, "propose", "--title", "Drain a node", "--by", "alice", "--json",
                             "Cordon the node, then `kubectl drain NODE --ignore-daemonsets`.").stdout)
    assert kb(kb_env, "approve", str(proposed["id"]), "--by", "bob").returncode == 0
    done = kb(kb_env, "job", "reconcile")
    assert done.returncode == 0 and done.stdout.strip() == "job reconcile done", done.stderr
    import sqlite3

    with sqlite3.connect(Path(kb_env["KB_DATA_DIR"]) / "kb.sqlite3") as db:
        rows = db.execute("SELECT role, actor, status FROM tasks WHERE command = 'reconcile'").fetchall()
    # the job's own task, and the reconcile task inside it (with the drift it compared and repaired)
    assert sorted(rows) == [("scheduler", "kb-scheduler", "succeeded"), ("scheduler", "kb-scheduler:cli", "succeeded")]
    unknown = kb(kb_env, "job", "make_coffee")
    assert unknown.returncode == 2 and "make_coffee" in unknown.stderr


def test_an_entry_gets_its_own_review_interval(kb_env: dict[str, str]) -> None:
    proposed = json.loads(kb(kb_env, "propose", "--title", "Rotate the TLS certificate", "--by", "alice", "--json",
                             "Run `certbot renew` on the edge hosts.").stdout)
    decided = json.loads(kb(kb_env, "approve", str(proposed["id"]), "--by", "bob", "--json").stdout)
    done = kb(kb_env, "review-interval", str(decided["entry_id"]), "30", "--by", "carol")
    assert done.returncode == 0, done.stderr
    shown = json.loads(kb(kb_env, "show", str(decided["entry_id"]), "--json").stdout)
    approved = shown["history"][0]["approved_at"][:10]
    from datetime import date, timedelta
    assert shown["review_after"][:10] == (date.fromisoformat(approved) + timedelta(days=30)).isoformat()
    assert "entry.review_interval_set" in [a["action"] for a in shown["audit"]]
    bad = kb(kb_env, "review-interval", str(decided["entry_id"]), "0")
    assert bad.returncode == 1 and "between 1 and 3650" in bad.stderr


def test_serve_shuts_down_cleanly_on_sigterm(tmp_path: Path) -> None:
    """Kubernetes stops a pod with SIGTERM: the bot must hand its scheduler lease on and stop the embedded
    Weaviate it started, not die with them held (uvicorn re-raises the signal after its own shutdown)."""
    with FakeSlackApi() as fake:
        _serve_then_sigterm(tmp_path, fake)


def _serve_then_sigterm(tmp_path: Path, fake: FakeSlackApi) -> None:
    http_port, weaviate_port, grpc_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "ANTHROPIC", "SLACK", "SENTRY"))}
    env.update(KB_DATA_DIR=str(tmp_path / "data"), KB_WEAVIATE_PORT=str(weaviate_port),
               KB_WEAVIATE_GRPC_PORT=str(grpc_port), KB_SLACK_SIGNING_SECRET="s3cret",
               KB_SLACK_BOT_TOKEN="xoxb-test", KB_SLACK_API_URL=fake.api_url)
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        bot = subprocess.Popen([*KB, "serve", "--host", "127.0.0.1", "--port", str(http_port)], env=env,
                               stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _healthy(http_port):
            assert bot.poll() is None and time.monotonic() < deadline, "kb serve did not come up"
            time.sleep(0.2)
        database = Database(f"sqlite:///{tmp_path / 'data' / 'kb.sqlite3'}")
        while _lease_holder(database) is None:  # the only replica leads
            assert time.monotonic() < deadline, "the scheduler never took its lease"
            time.sleep(0.2)
        asked = post(f"http://127.0.0.1:{http_port}/slack/events",
                     slash_command("ask why is the runner disk full?", response_url=fake.response_url("q")), "s3cret")
        assert asked.status_code == 200
        while not _listening(weaviate_port):  # the bot started its own embedded server
            assert time.monotonic() < deadline, "the bot never started Weaviate"
            time.sleep(0.2)
        answer = fake.wait_for("response_url:q", timeout=60)[0]  # searched by the worker (empty index: no answer)
        assert answer.args["text"].startswith("I don't know")
        helpers = [pid for pid in _children(bot.pid) if b"multiprocessing" in _cmdline(pid)]
        workers = [pid for pid in helpers if b"spawn_main" in _cmdline(pid)]
        assert len(workers) == 1, [_cmdline(pid) for pid in _children(bot.pid)]
        assert "search worker failed" not in log.read_text()
        bot.send_signal(signal.SIGTERM)
        assert bot.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert _lease_holder(database) is None  # released, not left to expire
        assert not _listening(weaviate_port)  # stopped with the bot, not orphaned
        while [pid for pid in helpers if Path(f"/proc/{pid}").exists()]:  # the search worker and its tracker too
            assert time.monotonic() < deadline, [_cmdline(pid) for pid in helpers if Path(f"/proc/{pid}").exists()]
            time.sleep(0.2)
        database.dispose()
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(timeout=30)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _lease_holder(database: Database) -> str | None:
    with database.session() as session:
        return leases.holder_of(session, LEASE)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
