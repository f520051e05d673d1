"""Plain-text and JSON renderings of service results, for the CLI and the console."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.retrieval import EntryHit
from bot.roles.answerer import Answer
from bot.services import Decided, EntryDetail, ProposalDetail
from store.models import Entry, Proposal, Task


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def entry_json(entry: Entry) -> dict[str, Any]:
    return {"id": entry.id, "title": entry.title, "version": entry.current_version, "status": entry.status.value,
            "owner": entry.owner, "language": entry.language, "tags": entry.tags, "source_ref": entry.source_ref,
            "review_after": _iso(entry.review_after)}


def proposal_json(proposal: Proposal) -> dict[str, Any]:
    return {"id": proposal.id, "kind": proposal.kind.value, "title": proposal.title,
            "status": proposal.status.value, "proposer": proposal.proposer, "entry_id": proposal.entry_id,
            "base_version": proposal.base_version, "revision": proposal.revision, "origin": proposal.origin.value,
            "review_notes": proposal.review_notes, "review": proposal.review,
            "created_at": _iso(proposal.created_at)}


def entry_detail_json(detail: EntryDetail) -> dict[str, Any]:
    current = detail.current
    return {
        **entry_json(detail.entry),
        "body": current.body if current else "",
        "history": [{"version": v.version, "title": v.title, "proposed_by": v.proposed_by,
                     "approved_by": v.approved_by, "approved_at": _iso(v.approved_at), "change_note": v.change_note,
                     "proposal_id": v.proposal_id} for v in detail.versions],
        "proposals": [proposal_json(p) for p in detail.proposals],
        "audit": [{"at": _iso(a.at), "actor": a.actor, "action": a.action, **a.detail} for a in detail.audit],
    }


def proposal_detail_json(detail: ProposalDetail) -> dict[str, Any]:
    decision = detail.decision
    return {
        **proposal_json(detail.proposal),
        "body": detail.proposal.body,
        "tags": detail.proposal.tags,
        "revisions": [{"revision": r.revision, "title": r.title, "edited_by": r.edited_by,
                       "edited_at": _iso(r.edited_at)} for r in detail.revisions],
        "decision": None if decision is None else {
            "outcome": decision.outcome.value, "by": decision.decided_by, "at": _iso(decision.decided_at),
            "reason": decision.reason, "version": decision.resulting_version},
    }


def decided_json(decided: Decided) -> dict[str, Any]:
    result = decided.result
    return {"proposal_id": result.proposal.id, "status": result.proposal.status.value,
            "entry_id": result.entry.id, "version": result.decision.resulting_version,
            "approved_by": result.decision.decided_by, "indexed": decided.indexed,
            "index_error": decided.index_error}


def task_json(task: Task) -> dict[str, Any]:
    return {"id": task.id, "role": task.role, "command": task.command, "actor": task.actor,
            "input": task.input, "plan": task.plan, "steps": task.steps, "result": task.result,
            "status": task.status.value, "error": task.error, "started_at": _iso(task.started_at),
            "duration_ms": task.duration_ms}


def hits(found: list[EntryHit]) -> str:
    if not found:
        return "No approved entry matches."
    return "\n".join(
        f"{n}. #{h.entry_id} v{h.version} {h.title}  (score {h.score:.3f})\n   {h.snippet}"
        for n, h in enumerate(found, start=1)
    )


def answer(result: Answer, task_id: str) -> str:
    degraded = "(degraded: the language model was unavailable, so these are quoted passages)\n\n" \
        if result.degraded else ""
    sources = "\n".join(f"[{n}] {c.title} (entry #{c.entry_id} v{c.version})"
                        for n, c in enumerate(result.citations, 1)) if result.mode == "claude" else ""
    return f"{degraded}{result.text}\n\n{sources + chr(10) * 2 if sources else ''}(task {task_id})"


def decided(data: dict[str, Any]) -> str:
    line = f"Proposal #{data['proposal_id']} approved by {data['approved_by']}: entry #{data['entry_id']} " \
           f"v{data['version']}."
    if data["indexed"]:
        return line + " It is searchable now."
    return line + f" The index will catch up (queued): {data['index_error']}"


def import_report(data: dict[str, Any]) -> str:
    text = (f"Imported: {data['created']} new, {data['updated']} updated, {data['unchanged']} unchanged, "
            f"{data['proposed']} proposed for review. Indexed {data['indexed']}.")
    if data.get("keyword_ready_seconds") is not None:
        text += (f" Searchable by keyword after {data['keyword_ready_seconds']:.1f} s, with vectors (hybrid) after "
                 f"{data['hybrid_ready_seconds']:.1f} s ({data['vectorized']} of them embedded now).")
    for failure in data["failed"]:
        text += f"\nskipped {failure}"
    if data["index_errors"]:
        text += f"\nThe index could not be updated yet ({data['index_errors'][0]}); run `kb sync` later."
    return text


def drift(data: dict[str, Any]) -> str:
    if data["clean"]:
        return f"Index and SQL store agree. Outbox pending: {data['outbox_pending']}."
    lines = [f"missing from the index: {data['missing']}", f"stale in the index: {data['stale']}",
             f"indexed but not approved: {data['unapproved']}"]
    if data["schema_outdated"]:
        lines.append("index schema outdated: a rebuild is needed")
    lines.append("repaired." if data["repaired"] else "run `kb doctor --repair` to fix.")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in ("id", "kind", "status", "version", "title", "proposer", "owner") if k in rows[0]]
    return "\n".join("  ".join(f"{k}={row[k]}" for k in keys) for row in rows)


def detail(data: dict[str, Any]) -> str:
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}:")
            lines.extend("  - " + ", ".join(f"{k}={v}" for k, v in item.items()) for item in value)
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
