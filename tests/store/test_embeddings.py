"""Embeddings: the real local model, loaded once, and a cache that embeds no text twice."""

from __future__ import annotations

import numpy as np

from bot.services import KnowledgeService
from store.embeddings import CachedEmbedder, default_embedder


def test_model_is_loaded_once_and_multilingual() -> None:
    model = default_embedder()
    assert default_embedder() is model
    english, korean, unrelated = model.embed_passages([
        "The pod keeps restarting and is in CrashLoopBackOff.",
        "파드가 계속 재시작되며 CrashLoopBackOff 상태입니다.",
        "Quarterly revenue grew by four percent.",
    ])
    assert english.shape == (model.dim,) and abs(float(np.linalg.norm(english)) - 1.0) < 1e-3
    assert float(english @ korean) > float(english @ unrelated) + 0.05


def test_cache_returns_the_same_vectors_without_calling_the_model(sql_service: KnowledgeService) -> None:
    cached = CachedEmbedder(default_embedder(), sql_service.db)
    texts = ["restart the sidekiq workers", "디스크가 가득 찼습니다", "restart the sidekiq workers"]
    first = cached.embed_passages(texts)
    assert (cached.hits, cached.misses) == (1, 2)  # the repeated text is embedded once
    again = CachedEmbedder(default_embedder(), sql_service.db)
    second = again.embed_passages(texts)
    assert (again.hits, again.misses, again.seconds) == (3, 0, 0.0)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first[0], default_embedder().embed_passages([texts[0]])[0], atol=1e-6)
