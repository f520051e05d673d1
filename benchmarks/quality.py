"""Retrieval and answer quality on a question set, side by side with the retrievers a team would otherwise use.

    python benchmarks/quality.py QUESTIONS.jsonl [--corpus PATH] [--data-dir DIR] [--quick] [--json-out FILE]
        [--plot FILE.png] [--per-question FILE.jsonl] [--port N --grpc-port N]

The corpus (JSONL: id, title, text, lang) is imported as approved entries through the service layer
(re-importing unchanged documents is free, and embeddings are cached by text), then every question goes
through ``search`` (recall@5, MRR@10) and ``ask`` (refusals). A question's ``relevant`` lists corpus ids,
the primary answer first; ``[]`` means the right reply is "I don't know".

The peers, in the same run on the same documents and questions (see quality_peers.py): plain BM25 (rank_bm25);
vector-only search over our index (same embeddings, plain near_vector, documents by best chunk); LangChain's
WeaviateVectorStore with its defaults, our embedding model and our Weaviate server, in a collection of its own
that later runs reuse (its vectors are cached by text in the SQL store, like ours).

It also counts the relevant documents left outside our top 5, by question and document language, and with
``--per-question`` writes one JSON line per question (our top 10, each relevant document's rank, the refusal, each
peer's recall@5 and reciprocal rank): what to read when a figure moves.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rank_bm25 import BM25Okapi

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality_peers import LangChainPeer, langchain_missing, vector_only_ranker  # noqa: E402
from benchmarks.quick import quick_subset  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.services import KnowledgeService  # noqa: E402
from bot.wiring import build_service  # noqa: E402

QUICK_DOCS = 10
# The peers, in the order of the table's columns: (key, column header, label).
PEERS = [("bm25", "bm25", "BM25 (rank_bm25)"), ("vector", "vec", "vector-only"),
         ("langchain", "lc", "LangChain Weaviate")]
_TOKEN = re.compile(r"[a-z0-9]+|[\uac00-\ud7a3]+")


@dataclass
class Question:
    qid: str
    text: str
    lang: str
    kind: str
    relevant: list[str]
    primary_lang: str | None = None
    relevant_langs: dict[str, str] = field(default_factory=dict)

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
    vector_recall5: float | None = None
    vector_mrr10: float | None = None
    langchain_recall5: float | None = None
    langchain_mrr10: float | None = None
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
            relevant_langs={r: doc_lang.get(r, "?") for r in relevant},
        ))
    return questions


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


def import_corpus(service: KnowledgeService, documents: list[dict[str, Any]], data_dir: Path, *,
                  approved_by: str = "quality-benchmark") -> str:
    source = data_dir / "corpus-import.jsonl"
    source.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents), encoding="utf-8")
    started = time.monotonic()
    report = service.import_paths([source], approved_by=approved_by)
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


def figures(questions: list[Question], ours: dict[str, Outcome], peers: dict[str, dict[str, Outcome]]) -> Figures:
    """``peers`` maps a key of PEERS to its outcomes; a peer that did not run is absent (its figures None)."""
    answerable = [q for q in questions if q.answerable]
    unanswerable = [q for q in questions if not q.answerable]
    refusals = {q.qid: bool(ours[q.qid].refused) for q in questions}
    found = Figures(
        questions=len(questions), answerable=len(answerable), unanswerable=len(unanswerable),
        recall5=_mean(recall_at(q, ours[q.qid].ranked) for q in answerable),
        mrr10=_mean(reciprocal_rank(q, ours[q.qid].ranked) for q in answerable),
        refused_unanswerable=_mean(float(refusals[q.qid]) for q in unanswerable),
        wrongly_refused=_mean(float(refusals[q.qid]) for q in answerable),
    )
    for key, outcomes in peers.items():
        setattr(found, f"{key}_recall5", _mean(recall_at(q, outcomes[q.qid].ranked) for q in answerable))
        setattr(found, f"{key}_mrr10", _mean(reciprocal_rank(q, outcomes[q.qid].ranked) for q in answerable))
    return found


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


def missed(questions: list[Question], ours: dict[str, Outcome], k: int = 5) -> str:
    """The relevant documents outside our top ``k``, counted by question language -> document language."""
    pairs: Counter[str] = Counter()
    total = 0
    for question in questions:
        total += len(question.relevant)
        pairs.update(f"{question.lang}->{question.relevant_langs.get(ref, '?')}" for ref in question.relevant
                     if ref not in ours[question.qid].ranked[:k])
    by_pair = ", ".join(f"{pair} {count}" for pair, count in sorted(pairs.items(), key=lambda item: -item[1]))
    return (f"relevant documents outside our top {k}: {sum(pairs.values())} of {total}"
            + (f" ({by_pair})" if by_pair else ""))


def per_question(questions: list[Question], ours: dict[str, Outcome], peers: dict[str, dict[str, Outcome]]
                 ) -> list[dict[str, Any]]:
    rows = []
    for question in questions:
        ranked = ours[question.qid].ranked
        row: dict[str, Any] = {
            "qid": question.qid, "lang": question.lang, "kind": question.kind, "question": question.text,
            "refused": ours[question.qid].refused, "top10": ranked[:10],
            "relevant": {ref: (ranked.index(ref) + 1 if ref in ranked else None) for ref in question.relevant},
        }
        if question.answerable:
            row["recall5"] = recall_at(question, ranked)
            row["rr10"] = reciprocal_rank(question, ranked)
            row["peers"] = {key: {"recall5": recall_at(question, outcomes[question.qid].ranked),
                                  "rr10": reciprocal_rank(question, outcomes[question.qid].ranked)}
                            for key, outcomes in peers.items()}
        rows.append(row)
    return rows


# --- output ----------------------------------------------------------------------------------------
def _cell(value: float | None) -> str:
    return "   -" if value is None else f"{value:.2f}"


def _ratio(ours: float | None, base: float | None) -> str:
    if ours is None or base is None:
        return "    -"
    return "  inf" if base == 0 else f"{ours / base:5.2f}"


def _metric_cells(f: Figures, metric: str) -> str:
    """Ours, then each peer's figure and the ratio ours / peer."""
    ours = getattr(f, metric)
    cells = [f"{_cell(ours):>5}"]
    for key, _, _ in PEERS:
        peer = getattr(f, f"{key}_{metric}")
        cells.append(f"{_cell(peer):>5} {_ratio(ours, peer)}")
    return " ".join(cells)


def table(results: dict[str, Figures]) -> str:
    def metric_head(name: str) -> str:
        return " ".join([f"{name:>5}", *(f"{column:>5} {'x':>5}" for _, column, _ in PEERS)])

    head = (f"{'group':22} {'n':>3} {'ans':>3} | {metric_head('R@5')} | {metric_head('MRR')} | "
            f"{'IDK-unans':>9} {'IDK-ans':>7}")
    lines = [head, "-" * len(head)]
    for name, f in results.items():
        lines.append(
            f"{name:22} {f.questions:>3} {f.answerable:>3} | {_metric_cells(f, 'recall5')} | "
            f"{_metric_cells(f, 'mrr10')} | {_cell(f.refused_unanswerable):>9} {_cell(f.wrongly_refused):>7}"
        )
    peers = ", ".join(f"{column} = {label}" for _, column, label in PEERS)
    lines.append(f"R@5 = recall@5, MRR = MRR@10 (answerable questions); the first column is ours, then {peers}, "
                 "each followed by x = ours / that peer;")
    lines.append("IDK-unans = unanswerable questions answered \"I don't know\"; IDK-ans = answerable questions "
                 "wrongly refused (ours only: the peers only retrieve).")
    return "\n".join(lines)


def plot(results: dict[str, Figures], path: Path, *, title: str) -> None:
    from benchmarks.quality_plot import plot_recall_by_kind

    wanted = {name: f for name, f in results.items() if name == "overall" or name.startswith("kind=")}
    rows = {name: {"ours": f.recall5, **{key: getattr(f, f"{key}_recall5") for key, _, _ in PEERS}}
            for name, f in wanted.items()}
    systems = [("ours", "ours (kb-bot)"), *((key, label) for key, _, label in PEERS)]
    plot_recall_by_kind(rows, {name: f.answerable for name, f in wanted.items()}, systems, path, title=title)


def run_peer(rank: Callable[[str], list[str]], questions: list[Question]) -> dict[str, Outcome]:
    return {q.qid: Outcome(ranked=rank(q.text)) for q in questions}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", type=Path)
    parser.add_argument("--corpus", type=Path, default=None,
                        help="corpus JSONL (default: corpus.jsonl next to the questions)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the benchmark's SQLite and Weaviate live (default: a folder under /tmp)")
    parser.add_argument("--quick", action="store_true", help="~10 documents and a few questions: a smoke test")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--plot", type=Path, default=None,
                        help="also draw recall@5 by question kind, ours beside each peer, as a PNG here")
    parser.add_argument("--per-question", type=Path, default=None,
                        help="also write each question's ranking, relevant ranks and refusal as JSON lines here")
    parser.add_argument("--port", type=int, default=None, help="embedded Weaviate HTTP port (default: settings)")
    parser.add_argument("--grpc-port", type=int, default=None, help="embedded Weaviate gRPC port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    corpus = args.corpus or args.questions.with_name("corpus.jsonl")
    documents = read_jsonl(corpus)
    questions = load_questions(args.questions, {str(d["id"]): str(d.get("lang") or "en") for d in documents})
    if args.quick:
        documents, questions = quick_subset({str(d["id"]): d for d in documents}, questions, limit=QUICK_DOCS)
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / ("kb-quality-quick" if args.quick else "kb-quality")
    data_dir.mkdir(parents=True, exist_ok=True)
    run_started = time.monotonic()
    service = open_service(data_dir, args.port, args.grpc_port)
    peers: dict[str, dict[str, Outcome]] = {}
    notes: list[str] = []
    try:
        print(import_corpus(service, documents, data_dir), f"({len(documents)} documents, data in {data_dir})")
        started = time.monotonic()
        ours = run_ours(service, questions)
        notes.append(f"ours: search + ask in {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        peers["vector"] = run_peer(vector_only_ranker(service.index, service.embedder), questions)
        notes.append(f"vector-only: near_vector over our index's chunks in {time.monotonic() - started:.1f}s")
        missing = langchain_missing()
        if missing is None:
            langchain = LangChainPeer(service.index.client, service.embedder)
            # Weaviate 1.35's BM25 misses postings still in a memtable (weaviate#11780): after its bulk insert the
            # collection gets the settling time our service waits after its own (index_settle_seconds).
            setup = langchain.build(documents, settle_seconds=service.settings.index_settle_seconds)
            started = time.monotonic()
            peers["langchain"] = run_peer(langchain.rank, questions)
            notes.append(f"{setup.describe()}; queries in {time.monotonic() - started:.1f}s")
        else:
            notes.append(f"LangChain peer skipped ({missing}): its columns show -")
    finally:
        service.close()
    started = time.monotonic()
    peers["bm25"] = run_peer(bm25_ranker(documents), questions)
    notes.append(f"BM25: rank_bm25 BM25Okapi over title + text, lowercased, Hangul as character bigrams, "
                 f"in {time.monotonic() - started:.1f}s")
    results = {name: figures(items, ours, peers) for name, items in groups(questions).items()}
    print(f"{len(questions)} questions")
    print("\n".join(f"- {note}" for note in notes) + "\n")
    print(table(results))
    print(missed([q for q in questions if q.answerable], ours))
    if args.json_out:
        payload = {name: vars(f) for name, f in results.items()}
        args.json_out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if args.per_question:
        args.per_question.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n"
                                             for row in per_question(questions, ours, peers)), encoding="utf-8")
    if args.plot:
        plot(results, args.plot, title=f"recall@5 by question kind: {args.questions.name}, {len(documents)} "
                                        f"documents, {len(questions)} questions")
        print(f"plot written to {args.plot}")
    print(f"wall time {time.monotonic() - run_started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
