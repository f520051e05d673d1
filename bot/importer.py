"""Read documents to import: markdown files and folders, or JSONL with ``{"id","title","text",...}``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from store.errors import BadInput

MARKDOWN_SUFFIXES = {".md", ".markdown"}


@dataclass
class SourceDocument:
    source_ref: str
    title: str
    body: str
    tags: list[str] = field(default_factory=list)
    language: str | None = None


def _markdown_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip().strip("#").strip() or fallback
    return fallback


def read_markdown(path: Path, root: Path) -> SourceDocument:
    text = path.read_text(encoding="utf-8")
    ref = str(path.relative_to(root)) if path != root else path.name
    return SourceDocument(source_ref=ref, title=_markdown_title(text, path.stem.replace("-", " ")), body=text)


def read_jsonl(path: Path) -> Iterator[SourceDocument]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(f"{path}:{number}: not valid JSON ({exc.msg}); fix or remove that line.") from exc
            if not isinstance(record, dict) or not record.get("text") or not record.get("id"):
                raise BadInput(f'{path}:{number}: each line needs at least "id" and "text".')
            text = str(record["text"])
            tags = record.get("tags") or []
            yield SourceDocument(
                source_ref=str(record["id"]),
                title=str(record.get("title") or _markdown_title(text, str(record["id"]))),
                body=text,
                tags=[str(t) for t in tags] if isinstance(tags, list) else [],
                language=record.get("lang") or record.get("language"),
            )


def read_documents(paths: list[Path]) -> Iterator[SourceDocument]:
    for path in paths:
        if not path.exists():
            raise BadInput(f"{path} does not exist.")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in MARKDOWN_SUFFIXES)
            if not files:
                raise BadInput(f"{path} holds no markdown files (*.md).")
            for file in files:
                yield read_markdown(file, path)
        elif path.suffix.lower() in {".jsonl", ".ndjson"}:
            yield from read_jsonl(path)
        elif path.suffix.lower() in MARKDOWN_SUFFIXES:
            yield read_markdown(path, path.parent)
        else:
            raise BadInput(f"{path}: import takes markdown (.md) files, folders of them, or JSONL (.jsonl).")
