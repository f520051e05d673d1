"""Ack latency in HTTP mode: the real bot, a loopback Slack, signed `/kb ask` slash commands.

The bot runs as `kb serve` (Starlette + uvicorn, Bolt's `/slack/events`) in a process of its own, as in
production, so its RSS is its own and the load generator does not share its GIL. Its Slack Web API
(``KB_SLACK_API_URL``) and every command's ``response_url`` point at a loopback fake in this process, which
notes when each answer arrives. A request's ack latency is the time until Slack's HTTP 200; its answer time is
the time until the lazy listener's post to the response_url. Claude is off (no ANTHROPIC_API_KEY passed on):
answers are extractive, so the answer time is retrieval plus formatting.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import httpx

from bot.config import Settings
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_requests import sign, slash_command

ROOT = Path(__file__).resolve().parents[1]
SECRET = "speed-benchmark-signing-secret"
# Never inherited by the bot under test: Socket Mode instead of HTTP, Claude (unreachable here, and not what
# is measured), Sentry.
CLEARED_ENV = ("SLACK_APP_TOKEN", "KB_SLACK_APP_TOKEN", "ANTHROPIC_API_KEY", "KB_ANTHROPIC_API_KEY",
               "ANTHROPIC_BASE_URL", "KB_ANTHROPIC_BASE_URL", "SENTRY_DSN", "KB_SENTRY_DSN")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TimedSlackApi(FakeSlackApi):
    """The loopback Slack fake, noting when the first post to each response_url arrived (``time.perf_counter``,
    the clock the sender stamps its requests with)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[str, float] = {}
        self._arrived = threading.Condition()

    def _handle(self, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        arrived = time.perf_counter()
        result = super()._handle(raw_path, headers, body)
        path = urlsplit(raw_path).path
        if path.startswith("/response_url/"):
            with self._arrived:
                self.arrivals.setdefault(unquote(path[len("/response_url/"):]), arrived)
                self._arrived.notify_all()
        return result

    def wait_for_answers(self, keys: list[str], timeout: float) -> dict[str, float]:
        """Arrival times of the answers to ``keys``; those not there within ``timeout`` are left out."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not all(key in self.arrivals for key in keys):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
            return {key: self.arrivals[key] for key in keys if key in self.arrivals}


class BotProcess:
    """`python -m bot serve` in HTTP mode on a free loopback port, on the benchmark's data dir and index."""

    def __init__(self, settings: Settings, *, api_url: str, log_path: Path) -> None:
        self.settings = settings
        self.api_url = api_url
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def environment(self) -> dict[str, str]:
        s = self.settings
        env = {key: value for key, value in os.environ.items() if key not in CLEARED_ENV}
        env.update({
            "KB_DATA_DIR": str(s.data_dir), "KB_INDEX_NAME": s.index_name,
            "KB_WEAVIATE_PORT": str(s.weaviate_port), "KB_WEAVIATE_GRPC_PORT": str(s.weaviate_grpc_port),
            "KB_SLACK_SIGNING_SECRET": SECRET, "KB_SLACK_BOT_TOKEN": "xoxb-speed-benchmark",
            "KB_SLACK_API_URL": self.api_url,
            "KB_SCHEDULER_ENABLED": "false",  # no scheduled jobs firing in the middle of a measurement
        })
        for name, value in (("KB_DATABASE_URL", s.database_url), ("KB_WEAVIATE_URL", s.weaviate_url),
                            ("KB_WEAVIATE_GRPC_URL", s.weaviate_grpc_url)):
            if value:
                env[name] = value
        return env

    def start(self, timeout: float = 180.0) -> float:
        """Start the bot and wait until /healthz answers; returns the seconds that took."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=self.environment(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the bot exited with {self.process.returncode}; see {self.log_path}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the bot did not answer /healthz within {timeout:.0f}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class AckRun:
    """Per request: ack latency (until HTTP 200) and answer time (until the response_url post), in ms."""

    acks_ms: list[float] = field(default_factory=list)
    answers_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0
    drains_s: list[float] = field(default_factory=list)  # per wave: first request sent to last answer in


def _signed(fake: TimedSlackApi, key: str, question: str, n: int) -> tuple[str, dict[str, str]]:
    body = slash_command(f"ask {question}", response_url=fake.response_url(key), user_id=f"UBENCH{n % 7}",
                         user_name=f"bench{n % 7}")
    return body, sign(body, SECRET)


def _record(run: AckRun, fake: TimedSlackApi, sent: Mapping[str, tuple[float, float, int]], timeout: float) -> None:
    """Wait for the answers to ``sent`` (key -> (started, acked, status)) and note every figure."""
    arrivals = fake.wait_for_answers(list(sent), timeout=timeout)
    for key, (started, acked, status) in sent.items():
        run.acks_ms.append((acked - started) * 1000)
        run.statuses[status] += 1
        if key in arrivals:
            run.answers_ms.append((arrivals[key] - started) * 1000)
        else:
            run.unanswered += 1
    if arrivals:
        run.drains_s.append(max(arrivals.values()) - min(started for started, _, _ in sent.values()))


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in the load generator while it times requests: after the speed run's searches its
    heap is large, and one full collection (177 ms, measured with ``gc.callbacks``) in the middle of a wave was
    timed as the bot's: a whole wave at ~230 ms, every run, while the bot itself used 30 ms of CPU in it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def sequential(url: str, fake: TimedSlackApi, questions: list[str], requests: int, *, prefix: str = "seq",
               answer_timeout: float = 120.0) -> AckRun:
    """One request at a time, each sent once the previous one's answer is in: the ack with nothing else running."""
    run = AckRun()
    with httpx.Client(trust_env=False, timeout=30.0) as client, collector_paused():
        for n in range(requests):
            key = f"{prefix}{n}"
            body, headers = _signed(fake, key, questions[n % len(questions)], n)
            started = time.perf_counter()
            status = client.post(url, content=body.encode(), headers=headers).status_code
            _record(run, fake, {key: (started, time.perf_counter(), status)}, answer_timeout)
    return run


async def _wave(url: str, prepared: list[tuple[str, str, dict[str, str]]]) -> dict[str, tuple[float, float, int]]:
    limits = httpx.Limits(max_connections=len(prepared), max_keepalive_connections=len(prepared))
    async with httpx.AsyncClient(trust_env=False, timeout=30.0, limits=limits) as client:
        async def one(key: str, body: str, headers: dict[str, str]) -> tuple[str, tuple[float, float, int]]:
            started = time.perf_counter()
            try:
                status = (await client.post(url, content=body.encode(), headers=headers)).status_code
            except httpx.TimeoutException:
                status = 0  # no answer within 30 s: Slack gave up long before (3 s)
            return key, (started, time.perf_counter(), status)

        return dict(await asyncio.gather(*(one(*item) for item in prepared)))


def concurrent(url: str, fake: TimedSlackApi, questions: list[str], *, concurrency: int, waves: int,
               answer_timeout: float = 300.0) -> AckRun:
    """``waves`` bursts of ``concurrency`` simultaneous requests; each burst starts once the previous one's
    answers (the lazy listeners' work) are all in."""
    run = AckRun()
    for wave in range(waves):
        prepared = []
        for i in range(concurrency):
            n = wave * concurrency + i
            key = f"wave{wave}-{i}"
            body, headers = _signed(fake, key, questions[n % len(questions)], n)
            prepared.append((key, body, headers))
        with collector_paused():
            sent = asyncio.run(_wave(url, prepared))
        _record(run, fake, sent, answer_timeout)
    return run


def warm_up(url: str, fake: TimedSlackApi, questions: list[str], requests: int = 3) -> None:
    """The bot's first asks connect to Weaviate and load what retrieval caches: not part of any figure."""
    run = sequential(url, fake, questions, requests, prefix="warm", answer_timeout=180.0)
    if run.unanswered:
        raise RuntimeError("the bot did not answer its warm-up questions; see its log")
