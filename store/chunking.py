"""Split markdown along its headings into passages of a useful size, keeping each passage's heading path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class Chunk:
    chunk_no: int
    heading_path: list[str]
    text: str


@dataclass
class _Section:
    path: list[str]
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip()


def _sections(markdown: str) -> list[_Section]:
    sections = [_Section(path=[])]
    stack: list[tuple[int, str]] = []
    in_fence = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            level, title = len(match.group(1)), match.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            sections.append(_Section(path=[t for _, t in stack]))
        else:
            sections[-1].lines.append(line)
    return [s for s in sections if s.text or s.path]


def _split_long(text: str, max_chars: int) -> list[str]:
    """Pack paragraphs into pieces of at most ``max_chars``; a giant paragraph is cut on line breaks."""
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        units = [paragraph] if len(paragraph) <= max_chars else paragraph.splitlines()
        for unit in units:
            while len(unit) > max_chars:
                pieces.append(unit[:max_chars])
                unit = unit[max_chars:]
            if current and len(current) + len(unit) + 2 > max_chars:
                pieces.append(current)
                current = unit
            else:
                current = f"{current}\n\n{unit}" if current else unit
    if current.strip():
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def chunk_markdown(markdown: str, *, max_chars: int = 1800, min_chars: int = 350) -> list[Chunk]:
    """Heading-sized chunks: small sections are merged into their neighbour, long ones split by paragraph."""
    merged: list[_Section] = []
    for section in _sections(markdown):
        body = section.text
        previous = merged[-1] if merged else None
        if previous is not None and (len(previous.text) < min_chars or not body) and (
            len(previous.text) + len(body) <= max_chars
        ):
            heading = section.path[-1] if section.path else ""
            previous.lines.append(f"\n{heading}\n{body}" if heading else body)
            continue
        merged.append(_Section(path=section.path, lines=[body]))
    chunks: list[Chunk] = []
    for section in merged:
        for piece in _split_long(section.text, max_chars):
            chunks.append(Chunk(chunk_no=len(chunks), heading_path=section.path, text=piece))
    if not chunks and markdown.strip():
        chunks.append(Chunk(chunk_no=0, heading_path=[], text=markdown.strip()[:max_chars]))
    return chunks
