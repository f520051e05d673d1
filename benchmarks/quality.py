"""Retrieval and answer quality on a question set, side by side with a plain BM25 baseline.

    python benchmarks/quality.py QUESTIONS.jsonl [--corpus PATH] [--data-dir DIR] [--quick] [--json-out FILE]

The corpus (JSONL: id, title, text, lang) is imported as approved entries through the service layer
(re-importing unchanged documents is free, and embeddings are cached by text), then every question goes
through ``search`` (recall@5, MRR@10) and ``ask`` (refusals). A question's ``relevant`` lists corpus ids,
the primary answer first; ``[]`` means the right reply is "I don't know".
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rank_bm25 import BM25Okapi

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from bot.services import KnowledgeService  # noqa: E402
from bot.wiring import build_service  # noqa: E402

QUICK_DOCS = 10
_TOKEN = re.compile(r"[a-z0-9]+|[\uac00-\ud7a3]+")


@dataclass
class Question:
    qid: str
    text: str
    lang: str
    kind: str
    relevant: list[str]
    primary_lang: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.relevant)


@dataclass
class Outcome:
    """What one system did with one question."""

    ranked: list[str]
    refused: bool | None = None


@dataclass
class Figures:
    questions: int = 0
    answerable: int = 0
    unanswerable: int = 0
    recall5: float | None = None
    mrr10: float | None = None
    bm25_recall5: float | None = None
    bm25_mrr10: float | None = None
    refused_unanswerable: float | None = None
    wrongly_refused: float | None = None


# --- data ------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_questions(path: Path, doc_lang: dict[str, str]) -> list[Question]:
    questions = []
    for row in read_jsonl(path):
        relevant = [str(r) for r in row.get("relevant") or []]
        questions.append(Question(
            qid=str(row["qid"]), text=str(row["question"]), lang=str(row.get("lang") or "en"),
            kind=str(row.get("kind") or "?"), relevant=relevant,
            primary_lang=doc_lang.get(relevant[0]) if relevant else None,
        ))
    return questions


def quick_subset(documents: list[dict[str, Any]], questions: list[Question]
                 ) -> tuple[list[dict[str, Any]], list[Question]]:
    """The first ~10 documents the first questions point at, those questions, and one unanswerable one."""
    by_id = {str(d["id"]): d for d in documents}
    chosen: dict[str, dict[str, Any]] = {}
    kept: list[Question] = []
    for question in questions:
        if len(chosen) >= QUICK_DOCS:
            break
        if question.answerable and all(r in by_id for r in question.relevant):
            kept.append(question)
            chosen.update((r, by_id[r]) for r in question.relevant)
    kept.extend([q for q in questions if not q.answerable][:1])
    return list(chosen.values()), kept


# --- the BM25 baseline -----------------------------------------------------------------------------
def bm25_tokens(text: str) -> list[str]:
    """Lowercase words; Hangul runs as character bigrams."""
    tokens: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if token[0] >= "\uac00":
            tokens.extend(token[i : i + 2] for i in range(max(1, len(token) - 1)))
        else:
            tokens.append(token)
    return tokens


def bm25_ranker(documents: list[dict[str, Any]]) -> Callable[[str], list[str]]:
    ids = [str(d["id"]) for d in documents]
    model = BM25Okapi([bm25_tokens(f"{d.get('title') or ''}\n{d['text']}") for d in documents])

    def rank(query: str) -> list[str]:
        scores = np.asarray(model.get_scores(bm25_tokens(query)))
        return [ids[i] for i in np.argsort(-scores, kind="stable")[:10]]

    return rank


# --- our system ------------------------------------------------------------------------------------
def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def open_service(data_dir: Path, port: int | None, grpc_port: int | None) -> KnowledgeService:
    """The service on an embedded Weaviate of its own under ``data_dir``. The server's Raft state remembers its
    ports, so a data dir must always be served on the same ones (KB_WEAVIATE_PORT / KB_WEAVIATE_GRPC_PORT or
    --port / --grpc-port); a server already listening there would be shared, which may hold other data."""
    base = Settings(data_dir=data_dir)
    settings = base.model_copy(update={
        "weaviate_url": None, "weaviate_grpc_url": None, "database_url": None,
        "weaviate_port": port or base.weaviate_port, "weaviate_grpc_port": grpc_port or base.weaviate_grpc_port,
    })
    if port_in_use(settings.weaviate_port):
        raise SystemExit(f"port {settings.weaviate_port} is in use (another kb or Weaviate?): stop it, or pass "
                         "--port and --grpc-port (always the same ones for a given --data-dir)")
    return build_service(settings)


def import_corpus(service: KnowledgeService, documents: list[dict[str, Any]], data_dir: Path) -> str:
    source = data_dir / "corpus-import.jsonl"
    source.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents), encoding="utf-8")
    started = time.monotonic()
    report = service.import_paths([source], approved_by="quality-benchmark")
    if report.failed:
        raise SystemExit(f"import failed: {report.failed[:3]}")
    drift = service.doctor()
    if not drift.clean:  # e.g. an index built by an older schema: rebuild it from SQL (embeddings are cached)
        service.doctor(repair=True)
    return (f"imported {report.created} new, {report.updated} updated, {report.unchanged} unchanged "
            f"in {time.monotonic() - started:.0f}s")


def run_ours(service: KnowledgeService, questions: list[Question]) -> dict[str, Outcome]:
    outcomes = {}
    for question in questions:
        hits = service.search(question.text, k=10, actor="quality-benchmark")
        answer, _ = service.ask(question.text, actor="quality-benchmark")
        outcomes[question.qid] = Outcome(ranked=[h.source_ref for h in hits], refused=not answer.grounded)
    return outcomes


# --- figures ---------------------------------------------------------------------------------------
def recall_at(question: Question, ranked: list[str], k: int = 5) -> float:
    return len(set(question.relevant) & set(ranked[:k])) / len(set(question.relevant))


def reciprocal_rank(question: Question, ranked: list[str], k: int = 10) -> float:
    wanted = set(question.relevant)
    return next((1.0 / (i + 1) for i, ref in enumerate(ranked[:k]) if ref in wanted), 0.0)


def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return float(np.mean(items)) if items else None


def figures(questions: list[Question], ours: dict[str, Outcome], bm25: dict[str, Outcome]) -> Figures:
    answerable = [q for q in questions if q.answerable]
    unanswerable = [q for q in questions if not q.answerable]
    refusals = {q.qid: bool(ours[q.qid].refused) for q in questions}
    return Figures(
        questions=len(questions), answerable=len(answerable), unanswerable=len(unanswerable),
        recall5=_mean(recall_at(q, ours[q.qid].ranked) for q in answerable),
        mrr10=_mean(reciprocal_rank(q, ours[q.qid].ranked) for q in answerable),
        bm25_recall5=_mean(recall_at(q, bm25[q.qid].ranked) for q in answerable),
        bm25_mrr10=_mean(reciprocal_rank(q, bm25[q.qid].ranked) for q in answerable),
        refused_unanswerable=_mean(float(refusals[q.qid]) for q in unanswerable),
        wrongly_refused=_mean(float(refusals[q.qid]) for q in answerable),
    )


def groups(questions: list[Question]) -> dict[str, list[Question]]:
    """Overall, by question language, Korean questions answered by English runbooks, by kind, by half."""
    found: dict[str, list[Question]] = {"overall": list(questions)}
    for lang in sorted({q.lang for q in questions}):
        found[f"lang={lang}"] = [q for q in questions if q.lang == lang]
    found["ko->en"] = [q for q in questions if q.lang == "ko" and q.primary_lang == "en"]
    for kind in sorted({q.kind for q in questions}):
        found[f"kind={kind}"] = [q for q in questions if q.kind == kind]
    found["half=1"] = questions[0::2]
    found["half=2"] = questions[1::2]
    return {name: items for name, items in found.items() if items}


# --- output ----------------------------------------------------------------------------------------
def _cell(value: float | None) -> str:
    return "   -" if value is None else f"{value:.2f}"


def _ratio(ours: float | None, base: float | None) -> str:
    if ours is None or base is None:
        return "    -"
    return "  inf" if base == 0 else f"{ours / base:5.2f}"


def table(results: dict[str, Figures]) -> str:
    head = (f"{'group':22} {'n':>3} {'ans':>3} | {'R@5':>5} {'bm25':>5} {'x':>5} | {'MRR':>5} {'bm25':>5} "
            f"{'x':>5} | {'IDK-unans':>9} {'IDK-ans':>7}")
    lines = [head, "-" * len(head)]
    for name, f in results.items():
        lines.append(
            f"{name:22} {f.questions:>3} {f.answerable:>3} | {_cell(f.recall5):>5} {_cell(f.bm25_recall5):>5} "
            f"{_ratio(f.recall5, f.bm25_recall5)} | {_cell(f.mrr10):>5} {_cell(f.bm25_mrr10):>5} "
            f"{_ratio(f.mrr10, f.bm25_mrr10)} | {_cell(f.refused_unanswerable):>9} {_cell(f.wrongly_refused):>7}"
        )
    lines.append("R@5 = recall@5, MRR = MRR@10 (answerable questions); x = ours / BM25; IDK-unans = unanswerable "
                 "questions answered \"I don't know\"; IDK-ans = answerable questions wrongly refused.")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", type=Path)
    parser.add_argument("--corpus", type=Path, default=None,
                        help="corpus JSONL (default: corpus.jsonl next to the questions)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the benchmark's SQLite and Weaviate live (default: a folder under /tmp)")
    parser.add_argument("--quick", action="store_true", help="~10 documents and a few questions: a smoke test")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--port", type=int, default=None, help="embedded Weaviate HTTP port (default: settings)")
    parser.add_argument("--grpc-port", type=int, default=None, help="embedded Weaviate gRPC port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    corpus = args.corpus or args.questions.with_name("corpus.jsonl")
    documents = read_jsonl(corpus)
    questions = load_questions(args.questions, {str(d["id"]): str(d.get("lang") or "en") for d in documents})
    if args.quick:
        documents, questions = quick_subset(documents, questions)
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / ("kb-quality-quick" if args.quick else "kb-quality")
    data_dir.mkdir(parents=True, exist_ok=True)
    service = open_service(data_dir, args.port, args.grpc_port)
    try:
        print(import_corpus(service, documents, data_dir), f"({len(documents)} documents, data in {data_dir})")
        started = time.monotonic()
        ours = run_ours(service, questions)
        elapsed = time.monotonic() - started
    finally:
        service.close()
    baseline = bm25_ranker(documents)
    bm25 = {q.qid: Outcome(ranked=baseline(q.text)) for q in questions}
    results = {name: figures(items, ours, bm25) for name, items in groups(questions).items()}
    print(f"{len(questions)} questions, search + ask in {elapsed:.1f}s\n")
    print(table(results))
    if args.json_out:
        payload = {name: vars(f) for name, f in results.items()}
        args.json_out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
