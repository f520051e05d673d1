"""Speed on the shared corpus: import throughput (embedding time apart), retrieval latency, approval-to-search.

    python benchmarks/speed.py [--corpus ../shared/corpus/corpus.jsonl] [--questions ../shared/corpus/dev.jsonl]
                               [--data-dir DIR] [--quick] [--json-out FILE]

Runs in a fresh data directory (a temporary one unless --data-dir is given), against the real embedded
Weaviate and SQLite, and prints median and p95 with the machine's core count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from bot.services import KnowledgeService  # noqa: E402
from bot.wiring import build_service  # noqa: E402
from store.embeddings import CachedEmbedder  # noqa: E402
from store.lifecycle import Draft  # noqa: E402

SHARED = ROOT.parent / "shared" / "corpus"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median_ms": round(statistics.median(values), 1),
            "p95_ms": round(percentile(values, 0.95), 1), "max_ms": round(max(values), 1)}


def measure_import(service: KnowledgeService, corpus: Path) -> dict[str, Any]:
    embedder = service.embedder
    assert isinstance(embedder, CachedEmbedder)
    started = time.perf_counter()
    report = service.import_paths([corpus], approved_by="bench")
    seconds = time.perf_counter() - started
    chunks = service.index.count()
    entries = report.created + report.updated
    return {"entries": entries, "chunks": chunks, "seconds": round(seconds, 1),
            "embedding_seconds": round(embedder.seconds, 1), "embedded_chunks": embedder.misses,
            "entries_per_s": round(entries / seconds, 2), "chunks_per_s": round(chunks / seconds, 2)}


def measure_reindex(service: KnowledgeService) -> dict[str, Any]:
    embedder = service.embedder
    assert isinstance(embedder, CachedEmbedder)
    before = embedder.seconds
    started = time.perf_counter()
    chunks = service.reindex()
    seconds = time.perf_counter() - started
    return {"chunks": chunks, "seconds": round(seconds, 1), "embedding_seconds": round(embedder.seconds - before, 1),
            "chunks_per_s": round(chunks / seconds, 1)}


def measure_search(service: KnowledgeService, questions: list[str], rounds: int) -> dict[str, float]:
    service.search(questions[0])  # warm: model loaded, connection open
    timings = []
    for _ in range(rounds):
        for question in questions:
            started = time.perf_counter()
            service.retriever.search(question, k=5)
            timings.append((time.perf_counter() - started) * 1000)
    return summary(timings)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus.jsonl")
    parser.add_argument("--questions", type=Path, default=SHARED / "dev.jsonl")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--quick", action="store_true", help="20 documents, one round: a smoke test")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="kb-speed-"))
    corpus = args.corpus
    if args.quick:
        corpus = data_dir / "quick.jsonl"
        data_dir.mkdir(parents=True, exist_ok=True)
        lines = args.corpus.read_text(encoding="utf-8").splitlines(keepends=True)
        corpus.write_text("".join(lines[:20]), encoding="utf-8")
    questions = [json.loads(line)["question"] for line in args.questions.read_text(encoding="utf-8").splitlines()]
    if args.quick:
        questions = questions[:5]

    service = build_service(Settings(data_dir=data_dir))  # type: ignore[call-arg]
    try:
        results = {
            "machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")},
            "import": measure_import(service, corpus),
            "reindex_cached": measure_reindex(service),
            "search": measure_search(service, questions, rounds=1 if args.quick else 3),
            "approval_to_searchable": measure_approval(service, runs=2 if args.quick else 10),
        }
    finally:
        service.close()
    print(f"machine: {results['machine']['cores']} cores, {results['machine']['date']}")
    for name in ("import", "reindex_cached", "search", "approval_to_searchable"):
        print(f"{name:24s} " + "  ".join(f"{k}={v}" for k, v in results[name].items()))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
