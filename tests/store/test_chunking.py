"""Chunking along markdown headings."""

from __future__ import annotations

from store.chunking import chunk_markdown
from tests.conftest import corpus_documents

RUNBOOK = """# Disk full

Intro paragraph that explains the alert in a few words and why it matters to the on-call engineer.

## Symptoms

Jobs fail with `no space left on device` and the runner stops picking up new work for several minutes.

## Resolution

### Prune

```bash
# not a heading: a comment inside a code block
docker system prune -af
```

### Grow the volume

Resize the disk in the cloud console, then run `resize2fs` on the device.
"""


def test_sections_keep_their_heading_path_and_code_comments_are_not_headings() -> None:
    chunks = chunk_markdown(RUNBOOK, max_chars=400, min_chars=50)
    assert [c.heading_path for c in chunks] == [
        ["Disk full"], ["Disk full", "Symptoms"], ["Disk full", "Resolution", "Prune"],
        ["Disk full", "Resolution", "Grow the volume"],
    ]
    assert "# not a heading" in chunks[2].text
    assert [c.chunk_no for c in chunks] == [0, 1, 2, 3]


def test_small_sections_merge_into_their_neighbour() -> None:
    chunks = chunk_markdown(RUNBOOK, max_chars=2000, min_chars=1000)
    assert len(chunks) == 1
    assert "resize2fs" in chunks[0].text and "Symptoms" in chunks[0].text


def test_long_sections_are_split_by_paragraph_within_the_limit() -> None:
    paragraphs = "\n\n".join(f"Paragraph {i}: " + "word " * 60 for i in range(20))
    chunks = chunk_markdown(f"# Long\n\n{paragraphs}", max_chars=800, min_chars=100)
    assert len(chunks) > 5
    assert all(len(c.text) <= 800 for c in chunks)
    assert all(c.heading_path == ["Long"] for c in chunks)
    assert "Paragraph 19" in chunks[-1].text


def test_text_without_headings_is_one_chunk() -> None:
    assert [(c.heading_path, c.text) for c in chunk_markdown("just a note")] == [([], "just a note")]
    assert chunk_markdown("   ") == []


def test_every_corpus_document_chunks_within_bounds_and_loses_no_text() -> None:
    for document in corpus_documents()[::7]:
        chunks = chunk_markdown(document["text"], max_chars=1800)
        assert chunks, document["id"]
        assert all(len(c.text) <= 1800 for c in chunks)
        words = {w for w in document["text"].split() if w.strip("#")}
        kept = set(" ".join(c.text for c in chunks).split()) | {w for c in chunks for h in c.heading_path
                                                                 for w in h.split()}
        assert len(words - kept) <= len(words) * 0.02, document["id"]
