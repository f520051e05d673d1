"""Resident memory (RSS) of the processes the speed benchmark watches: sampled in a thread, peaks per window.

    sampler = RssSampler(interval=0.05).start()
    sampler.watch("weaviate", store.weaviate_conn.weaviate_process(8279))
    with sampler.window("search"):
        ...                                  # sampler.peaks["search"] == {"weaviate": 812.4, ...} (MB)
    sampler.stop()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

MB = 1024 * 1024


def search_worker(bot_pid: int) -> psutil.Process | None:
    """The bot's search worker (KB_SEARCH_PROCESSES, see bot/search_workers.py), if it runs one."""
    with suppress(psutil.Error):
        for child in psutil.Process(bot_pid).children():
            if any("spawn_main" in part for part in child.cmdline()):
                return child
    return None


def wait_until_quiet(process: psutil.Process | None, *, below_percent: float = 10.0, timeout: float = 180.0
                     ) -> float | None:
    """Seconds until ``process`` used under ``below_percent`` of a core over a second (None: no local process)."""
    if process is None:
        return None
    started = time.perf_counter()
    while time.perf_counter() - started < timeout and process.cpu_percent(interval=1.0) >= below_percent:
        pass
    return round(time.perf_counter() - started, 1)


class RssSampler:
    """Samples the RSS of every watched process every ``interval`` seconds; ``window(label)`` records the peak
    of each one while the block runs, in MB, into ``peaks[label]``."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peaks: dict[str, dict[str, float]] = {}
        self._procs: dict[str, psutil.Process] = {}
        self._open: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def watch(self, name: str, proc: psutil.Process | int | None) -> None:
        """Watch ``proc`` (a process or pid) as ``name``; None (e.g. Weaviate is a remote cluster) watches nothing."""
        if proc is None:
            return
        with self._lock:
            self._procs[name] = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)

    def unwatch(self, name: str) -> None:
        with self._lock:
            self._procs.pop(name, None)

    def rss_mb(self, name: str) -> float | None:
        """The current RSS of ``name`` in MB (None when not watched or gone)."""
        with self._lock:
            proc = self._procs.get(name)
        if proc is None:
            return None
        try:
            return round(float(proc.memory_info().rss) / MB, 1)
        except psutil.Error:
            return None

    def lifetime_peak_mb(self, name: str) -> float | None:
        """The kernel's high-water mark of ``name``'s RSS since it started (Linux ``VmHWM``; None elsewhere):
        catches spikes between samples, and includes whatever the process did before it was watched."""
        with self._lock:
            proc = self._procs.get(name)
        if proc is None:
            return None
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
        except OSError:
            pass
        return None

    def idle_mb(self, seconds: float = 1.0) -> dict[str, float]:
        """The median RSS of every watched process over ``seconds`` of (presumed) quiet, in MB."""
        samples: dict[str, list[float]] = {}
        deadline = time.monotonic() + seconds
        while True:
            for name in list(self._procs):
                value = self.rss_mb(name)
                if value is not None:
                    samples.setdefault(name, []).append(value)
            if time.monotonic() >= deadline:
                break
            time.sleep(self.interval)
        return {name: sorted(values)[len(values) // 2] for name, values in samples.items()}

    @contextmanager
    def window(self, label: str) -> Iterator[None]:
        with self._lock:
            self._open[label] = {}
        self._sample()
        try:
            yield
        finally:
            self._sample()
            with self._lock:
                found = self._open.pop(label)
            self.peaks[label] = {name: round(rss / MB, 1) for name, rss in sorted(found.items())}

    def _sample(self) -> None:
        with self._lock:
            procs = dict(self._procs)
        readings = {}
        for name, proc in procs.items():
            try:
                readings[name] = proc.memory_info().rss
            except psutil.Error:  # exited between samples
                continue
        with self._lock:
            for peaks in self._open.values():
                for name, rss in readings.items():
                    peaks[name] = max(peaks.get(name, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
