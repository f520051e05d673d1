"""Lazy work held back while a burst of requests is still being acknowledged."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bot.lazy_work import AcksFirstExecutor


def test_a_burst_runs_only_once_submissions_pause() -> None:
    started: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        with lock:
            started.append(time.monotonic())

    executor = AcksFirstExecutor(ThreadPoolExecutor(max_workers=4), quiet=0.3, max_hold=5.0)
    futures = []
    for _ in range(10):
        futures.append(executor.submit(work))
        time.sleep(0.01)
    last_submit = time.monotonic()
    for future in futures:
        future.result(timeout=10)
    executor.shutdown()
    assert len(started) == 10
    assert min(started) >= last_submit  # none ran while the burst was still coming in
    assert min(started) - last_submit >= 0.3 - 0.05


def test_a_lone_submission_waits_the_quiet_interval_only() -> None:
    executor = AcksFirstExecutor(ThreadPoolExecutor(max_workers=1), quiet=0.1, max_hold=5.0)
    submitted = time.monotonic()
    ran_at = executor.submit(time.monotonic).result(timeout=10)
    executor.shutdown()
    assert 0.1 <= ran_at - submitted < 3.0


def test_a_steady_stream_cannot_hold_work_back_past_max_hold() -> None:
    executor = AcksFirstExecutor(ThreadPoolExecutor(max_workers=2), quiet=0.2, max_hold=0.3)
    first = executor.submit(time.monotonic)
    stream_end = time.monotonic() + 1.5
    while time.monotonic() < stream_end:  # a new submission every 20 ms: never quiet for 200 ms
        executor.submit(lambda: None)
        time.sleep(0.02)
    ran_at = first.result(timeout=10)
    executor.shutdown()
    assert ran_at < stream_end  # it ran while the stream went on


def test_results_and_errors_come_back_through_the_future() -> None:
    def add(a: int, b: int = 0) -> int:
        return a + b

    executor = AcksFirstExecutor(ThreadPoolExecutor(max_workers=1), quiet=0.01)
    assert executor.submit(add, 2, b=3).result(timeout=10) == 5
    failing = executor.submit(lambda: 1 / 0)
    executor.shutdown()
    assert isinstance(failing.exception(timeout=10), ZeroDivisionError)
