"""Lazy listeners' work, held back while a burst of Slack requests is still being acknowledged.

Slack drops a request not acknowledged within 3 s; the answer behind it may take seconds. When 50 people ask at
once (an incident), the first answers' work (the search, Weaviate, rendering) took the cores and the interpreter
lock from the acks still queued: p99 76-84 ms on 2 cores, 56-61 ms with this hold (docs/benchmarks.md). So each
piece of lazy work waits until no new work has been submitted for ``quiet`` seconds (every ack submits its lazy
listener), but never more than ``max_hold`` seconds after its own submission, so a steady stream cannot starve the
answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

QUIET_SECONDS = 0.025  # a burst's acks come every 1-2 ms; a lone ask's answer starts 25 ms later
MAX_HOLD_SECONDS = 0.5


class AcksFirstExecutor(Executor):
    """Runs work on ``inner`` once submissions have paused for ``quiet`` seconds (at most ``max_hold`` late)."""

    def __init__(self, inner: Executor, *, quiet: float = QUIET_SECONDS, max_hold: float = MAX_HOLD_SECONDS) -> None:
        self.inner = inner
        self.quiet = quiet
        self.max_hold = max_hold
        self._lock = threading.Lock()
        self._last_submit = float("-inf")

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        submitted = time.monotonic()
        with self._lock:
            self._last_submit = max(self._last_submit, submitted)

        def held() -> T:
            self._wait_for_quiet(deadline=submitted + self.max_hold)
            return fn(*args, **kwargs)

        return self.inner.submit(held)

    def _wait_for_quiet(self, *, deadline: float) -> None:
        while True:
            now = time.monotonic()
            with self._lock:
                quiet_at = self._last_submit + self.quiet
            wait = min(quiet_at, deadline) - now
            if wait <= 0:
                return
            time.sleep(wait)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)
