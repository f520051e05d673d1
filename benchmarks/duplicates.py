"""Calibrates the Reviewer's near-duplicate threshold (KB_DUPLICATE_MIN_SIMILARITY) on the shared corpus.

For a sample of real runbooks, a "near-duplicate" draft is the same runbook with its opening paragraph dropped
(a re-telling of the same fix); it is compared, as the Reviewer does, with every sampled runbook's first
embedded chunk. Printed per threshold: the share of near-duplicates caught, and the share of drafts flagged
against a *different* runbook (false alarms on the approval card).

    .venv/bin/python benchmarks/duplicates.py --sample 150
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from store.embeddings import default_embedder

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "corpus.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--sample", type=int, default=150)
    parser.add_argument("--max-chars", type=int, default=600)
    args = parser.parse_args()
    documents = [json.loads(line) for line in args.corpus.open(encoding="utf-8")]
    sample = random.Random(7).sample(documents, min(args.sample, len(documents)))
    indexed = [f"{d['title']}\n{d['text']}"[: args.max_chars] for d in sample]
    drafts = []
    for d in sample:
        cut = d["text"].find("\n\n", 200)
        drafts.append(f"{d['title']}\n{d['text'][cut if cut > 0 else 200:]}"[: args.max_chars])
    embedder = default_embedder()
    similarity = embedder.embed_passages(drafts) @ embedder.embed_passages(indexed).T
    same = np.diag(similarity).copy()
    np.fill_diagonal(similarity, -1.0)
    other = similarity.max(axis=1)
    print(f"{len(sample)} runbooks; cosine of a near-duplicate to its own runbook: p10/p50/p90 "
          f"{np.percentile(same, [10, 50, 90]).round(3).tolist()}; best cosine to another runbook: p50/p90/p99 "
          f"{np.percentile(other, [50, 90, 99]).round(3).tolist()}")
    print("| threshold | near-duplicates caught | drafts flagged against another runbook |")
    print("| --- | --- | --- |")
    for threshold in (0.90, 0.92, 0.93, 0.94, 0.95):
        print(f"| {threshold:.2f} | {(same >= threshold).mean():.2f} | {(other >= threshold).mean():.3f} |")


if __name__ == "__main__":
    main()
