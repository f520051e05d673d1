"""Pure Block Kit builders on slack_sdk's models: data in, blocks out, no I/O."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.channel import RunbookMatch
from bot.home import CitationDetail, HomeSummary
from bot.roles.answerer import Answer
from bot.services import EntryDetail
from handlers import ids
from handlers.text import MAX_BLOCKS_MESSAGE, MAX_BLOCKS_MODAL, MAX_INPUT_CHARS, clip, escape, split_text
from handlers.values import AnswerRef, EntryRef, ProposalRef, encode_answer, encode_entry, encode_proposal
from store.models import CaptureDraft, Decision, Entry, Proposal, Task

HELP = (
    "*kb* answers from approved runbooks, with citations.\n"
    "• `/kb ask <question>`: an answer citing entry@version, or \"I don't know\"\n"
    "• `/kb propose <title>` then the text on the next lines: propose an entry for approval\n"
    "• *Propose to KB* (message shortcut, ⋯ on any message): draft a proposal from the whole thread\n"
    "• `/kb show <entry id>`: an entry and its history\n"
    "• `/kb pending`: proposals waiting for approval (approvers)\n"
    "• `/kb trace <task id>`: what a command did, step by step\n"
    "• `/kb channel [off|answer|alert|both]`: where the bot speaks up unasked (approvers set it)\n"
    "• `@kb <question>` in a thread, or a DM: answered in the thread; follow-ups there too\n"
    "• React with :books: on a message: draft a proposal from its thread (sent to you by DM)\n"
    "• `/kb help`: this message"
)


DEGRADED_NOTE = (":warning: Degraded answer: the language model was unavailable, so these are the key lines of "
                 "the approved passages, quoted.")
REVIEW_ICONS = {"update": ":arrows_counterclockwise:", "duplicate": ":twisted_rightwards_arrows:",
                "contradiction": ":warning:", "risky": ":rotating_light:", "stale": ":hourglass:"}


def _mrkdwn_sections(text: str) -> list[Block]:
    """Escaped user text as sections of at most 3,000 characters each."""
    return [SectionBlock(text=MarkdownTextObject(text=clip(escape(piece), 3000)))
            for piece in split_text(text, 2400)]


def _who(user: str) -> str:
    """A Slack user id becomes a mention; anything else (a CLI user, "kb-import") is shown as text."""
    return f"<@{user}>" if re.fullmatch(r"[UW][A-Z0-9]{2,}", user) else escape(user)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "never"


def _button(text: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(text=PlainTextObject(text=text), action_id=action_id, value=value, style=style)


def _fit(blocks: list[Block], limit: int = MAX_BLOCKS_MESSAGE) -> list[Block]:
    """Keep the last block (the buttons) when trimming to Slack's cap."""
    if len(blocks) <= limit:
        return blocks
    note = ContextBlock(elements=[MarkdownTextObject(text="_(shortened to fit Slack; see `/kb show`)_")])
    return [*blocks[: limit - 2], note, blocks[-1]]


def help_blocks(prefix: str = "") -> list[Block]:
    text = f"{escape(prefix)}\n\n{HELP}" if prefix else HELP
    return [SectionBlock(text=MarkdownTextObject(text=text))]


def progress_blocks(text: str) -> list[Block]:
    return [ContextBlock(elements=[MarkdownTextObject(text=f":hourglass_flowing_sand: {escape(text)}")])]


def citation_line(detail: CitationDetail) -> str:
    overdue = " :warning: _overdue for re-verification_" if detail.overdue else ""
    return (f"*{escape(detail.title)}* (entry #{detail.entry_id} v{detail.version}) · approved by "
            f"{_who(detail.approved_by)} · last verified {_when(detail.approved_at)}{overdue}")


def answer_blocks(answer: Answer, details: Sequence[CitationDetail], task_id: str, *, shared: bool = False
                  ) -> list[Block]:
    blocks: list[Block] = [*_mrkdwn_sections(answer.text)]
    if answer.degraded:
        blocks.insert(0, ContextBlock(elements=[MarkdownTextObject(text=DEGRADED_NOTE)]))
    if details:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=clip("\n".join(f"[{n}] {citation_line(d)}" for n, d in enumerate(details, 1)), 3000))]))
    value = encode_answer(AnswerRef(task_id))
    buttons = []
    if not answer.grounded:
        buttons.append(_button("Propose an answer", ids.AnswerAction.PROPOSE, value, "primary"))
    elif not shared:
        buttons.append(_button("Share to channel", ids.AnswerAction.SHARE, value, "primary"))
    if answer.grounded:
        buttons += [_button("Helpful", ids.AnswerAction.HELPFUL, value),
                    _button("Not helpful", ids.AnswerAction.NOT_HELPFUL, value)]
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"task `{task_id}`")]))
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    return _fit(blocks)


def card_blocks(proposal: Proposal, *, permalink: str | None, decision: Decision | None = None) -> list[Block]:
    """The approval card: the draft, who proposed it, where it came from, and the decision buttons."""
    kind = {"new": "New entry", "update": f"Update of entry #{proposal.entry_id} (from v{proposal.base_version})",
            "deprecate": f"Deprecation of entry #{proposal.entry_id}"}[proposal.kind.value]
    source = f" · <{permalink}|source thread>" if permalink else ""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(f"#{proposal.id}: {proposal.title}", 150))),
        ContextBlock(elements=[MarkdownTextObject(
            text=f"{kind} · proposed by {_who(proposal.proposer)} · revision {proposal.revision}{source}")]),
        *_mrkdwn_sections(proposal.body)[:40],
    ]
    if proposal.tags:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="tags: " + escape(", ".join(proposal.tags)))]))
    for note in proposal.review_notes[:3]:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f":mag: {clip(escape(note), 2900)}")]))
    blocks += review_blocks(proposal.review)
    blocks.append(DividerBlock())
    if decision is None:
        value = encode_proposal(ProposalRef(proposal.id or 0, proposal.revision))
        blocks.append(ActionsBlock(elements=[
            _button("Approve", ids.ApprovalAction.APPROVE, value, "primary"),
            _button("Edit", ids.ApprovalAction.EDIT, value),
            _button("Reject", ids.ApprovalAction.REJECT, value, "danger"),
        ]))
    else:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=decision_line(decision))))
    return _fit(blocks)


def review_blocks(review: dict[str, Any]) -> list[Block]:
    """The Reviewer's findings on the card: what the approver should check. The Reviewer never decides."""
    if not review:
        return [ContextBlock(elements=[MarkdownTextObject(text=":grey_question: Not reviewed yet.")])]
    who = "Reviewer" if review.get("mode") == "claude" else "Reviewer (similarity check only)"
    findings = review.get("findings") or []
    if not findings:
        lines = [f":white_check_mark: *{who}:* no near-duplicate, contradiction or risky content found."]
    else:
        lines = [f"*{who}:*"] + [f"{REVIEW_ICONS.get(f.get('kind', ''), ':mag:')} {escape(str(f.get('text', '')))}"
                                 for f in findings[:8]]
    return [SectionBlock(text=MarkdownTextObject(text=clip("\n".join(lines), 3000)))]


def streaming_blocks(text: str) -> list[Block]:
    """An answer still being written: shown as it grows, citations and buttons come with the final version."""
    return [*_mrkdwn_sections(text)[:20],
            ContextBlock(elements=[MarkdownTextObject(text=":writing_hand: writing…")])]


def drafting_modal(title: str) -> View:
    """Shown at once while the Curator drafts (Slack allows 3 s to open a modal; drafting takes longer)."""
    return View(type="modal", callback_id=ids.View.DRAFTING, title=PlainTextObject(text=title),
                close=PlainTextObject(text="Cancel"), blocks=[
                    SectionBlock(text=MarkdownTextObject(text=":hourglass_flowing_sand: The Curator is drafting an "
                                                         "entry from this thread…"))])


def decision_line(decision: Decision) -> str:
    when = decision.decided_at.strftime("%Y-%m-%d %H:%M UTC")
    if decision.outcome.value == "approved":
        return (f":white_check_mark: Approved by {_who(decision.decided_by)} at {when}: "
                f"now entry version v{decision.resulting_version}.")
    reason = f": {escape(decision.reason)}" if decision.reason else ""
    return f":x: {decision.outcome.value.capitalize()} by {_who(decision.decided_by)} at {when}{reason}"


def _text_input(block_id: str, action_id: str, label: str, initial: str, *, multiline: bool = False,
                optional: bool = False) -> InputBlock:
    return InputBlock(
        block_id=block_id, label=PlainTextObject(text=label), optional=optional,
        element=PlainTextInputElement(action_id=action_id, multiline=multiline, initial_value=initial or None,
                                      max_length=MAX_INPUT_CHARS),
    )


def draft_modal(callback_id: str, title: str, *, draft_title: str, body: str, tags: Sequence[str],
                private_metadata: str, submit: str, notes: Sequence[str] = ()) -> View:
    """A modal with the draft's fields; a body longer than one input holds is split across several. Notes (what
    the Curator could not vouch for, what was redacted) come first, for the proposer to check."""
    parts = split_text(body, MAX_INPUT_CHARS) or [""]
    blocks: list[Block] = [ContextBlock(elements=[MarkdownTextObject(text=f":mag: {clip(escape(note), 2900)}")])
                           for note in notes[:2]]
    blocks.append(_text_input(ids.Block.TITLE, ids.Field.TITLE, "Title", clip(draft_title, 300)))
    for n, part in enumerate(parts[: MAX_BLOCKS_MODAL - 5]):
        label = "Problem, symptoms and steps" + (f" (part {n + 1} of {len(parts)})" if len(parts) > 1 else "")
        blocks.append(_text_input(f"{ids.Block.BODY}_{n}", ids.Field.BODY, label, part, multiline=True,
                                  optional=n > 0))
    blocks.append(_text_input(ids.Block.TAGS, ids.Field.TAGS, "Tags (comma-separated)", ", ".join(tags),
                              optional=True))
    return View(type="modal", callback_id=callback_id, title=PlainTextObject(text=title),
                submit=PlainTextObject(text=submit), close=PlainTextObject(text="Cancel"),
                private_metadata=private_metadata, blocks=blocks)


def reject_modal(proposal: Proposal, private_metadata: str) -> View:
    return View(type="modal", callback_id=ids.View.REJECT, title=PlainTextObject(text="Reject proposal"),
                submit=PlainTextObject(text="Reject"), close=PlainTextObject(text="Cancel"),
                private_metadata=private_metadata, blocks=[
                    SectionBlock(text=MarkdownTextObject(text=f"*#{proposal.id}: {escape(proposal.title)}*")),
                    _text_input(ids.Block.REASON, ids.Field.REASON, "Why? The proposer will see this.", "",
                                multiline=True),
                ])


def entry_detail_blocks(detail: EntryDetail) -> list[Block]:
    """An entry as `/kb show` and "Show the whole entry" present it: its current text and its history."""
    history = [(v.version, v.approved_by, v.change_note, v.approved_at) for v in detail.versions]
    return entry_blocks(detail.entry, detail.current.body if detail.current else "", history)


def entry_blocks(entry: Entry, body: str, history: Sequence[tuple[int, str, str, datetime | None]]) -> list[Block]:
    lines = "\n".join(f"v{v} approved by {_who(by)} on {_when(at)}: {escape(note or 'no note')}"
                      for v, by, note, at in history)
    return _fit([
        HeaderBlock(text=PlainTextObject(text=clip(f"#{entry.id} {entry.title}", 150))),
        ContextBlock(elements=[MarkdownTextObject(
            text=f"v{entry.current_version} · {entry.status.value} · owner {_who(entry.owner)} · "
                 f"review after {_when(entry.review_after)}")]),
        *_mrkdwn_sections(body)[:40],
        ContextBlock(elements=[MarkdownTextObject(text=clip(lines or "no history", 3000))]),
    ])


def pending_blocks(proposals: Sequence[Proposal]) -> list[Block]:
    if not proposals:
        return [SectionBlock(text=MarkdownTextObject(text="No proposals are waiting for approval."))]
    lines = [f"• #{p.id} *{escape(p.title)}* by {_who(p.proposer)} ({p.kind.value})" for p in proposals]
    sections: list[Block] = [SectionBlock(text=MarkdownTextObject(text=clip(piece, 3000)))
                             for piece in split_text("\n".join(lines), 2900)]
    return sections[:MAX_BLOCKS_MESSAGE]


def _step_detail(step: dict[str, Any]) -> str:
    """What a step used and decided: its mode, model and tokens, the entries it retrieved, and any error."""
    parts = []
    if step.get("mode"):
        parts.append(str(step["mode"]))
    if step.get("model"):
        parts.append(f"{step['model']} ({step.get('input_tokens', 0)} in / {step.get('output_tokens', 0)} out tokens)")
    if step.get("entries"):
        parts.append("entries " + ", ".join(f"#{e[0]}@v{e[1]}" if isinstance(e, list) else f"#{e}"
                                            for e in step["entries"][:8]))
    for key in ("llm_error", "error"):
        if step.get(key):
            parts.append(f"{key.replace('_', ' ')}: {escape(str(step[key]))}")
    return f" · {' · '.join(parts)}" if parts else ""


def trace_blocks(task: Task) -> list[Block]:
    lines = [f"• {s.get('name')}: {s.get('status')} in {s.get('ms')} ms{_step_detail(s)}" for s in task.steps]
    text = (f"*Task `{task.id}`* · {task.role} · {task.command} by {_who(task.actor)} · "
            f"{task.status.value} in {task.duration_ms} ms\n*Plan:* {', '.join(task.plan)}\n" + "\n".join(lines))
    if task.error:
        text += f"\n*Error:* {escape(task.error)}"
    return [SectionBlock(text=MarkdownTextObject(text=clip(text, 3000)))]


def review_due_blocks(entry: Entry, body: str, *, to_owner: bool = True) -> list[Block]:
    """The owner's DM (or, for an owner who is no Slack user, the approval channel's post): the entry as it
    stands, and what to do about it."""
    value = encode_entry(EntryRef(entry.id or 0, entry.current_version))
    whose = ("You own it." if to_owner
             else f"Its owner ({_who(entry.owner)}) is not a Slack user: an approver re-verifies it.")
    return _fit([
        SectionBlock(text=MarkdownTextObject(text=clip(
            f":hourglass: *Is this still true?* Entry #{entry.id} *{escape(entry.title)}* (v{entry.current_version}) "
            f"was due for re-verification on {_when(entry.review_after)}. {whose}", 3000))),
        *_mrkdwn_sections(body)[:10],
        ActionsBlock(elements=[
            _button("Re-verify", ids.ReviewAction.REVERIFY, value, "primary"),
            _button("Edit", ids.ReviewAction.EDIT, value),
            _button("Deprecate", ids.ReviewAction.DEPRECATE, value, "danger"),
        ]),
    ])


def approval_digest_blocks(proposals: Sequence[Proposal], *, older_than_hours: float) -> list[Block]:
    lines = [f"• #{p.id} *{escape(p.title)}* by {_who(p.proposer)}, waiting since {_when(p.created_at)}"
             for p in proposals]
    header = (f":bell: *{len(proposals)} proposal{'s' if len(proposals) != 1 else ''} waiting more than "
              f"{older_than_hours:g} h for an approver*")
    return [SectionBlock(text=MarkdownTextObject(text=clip(header + "\n" + "\n".join(lines), 3000)))]


def gaps_digest_blocks(gaps: Sequence[Task]) -> list[Block]:
    """This week's unanswered questions, each with "Propose an answer"."""
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(
        text=f":mag: *{len(gaps)} question{'s' if len(gaps) != 1 else ''} the knowledge base could not answer "
             "this week.* Know the answer? Propose it."))]
    for gap in gaps[: (MAX_BLOCKS_MESSAGE - 1) // 2]:
        label = "Propose a runbook" if gap.command == "alert" else "Propose an answer"
        blocks.append(SectionBlock(
            text=MarkdownTextObject(text=clip(f"“{escape(gap.input)}” asked by {_who(gap.actor)}", 3000)),
            accessory=_button(label, ids.AnswerAction.PROPOSE, encode_answer(AnswerRef(gap.id)))))
    return blocks


def runbook_blocks(match: RunbookMatch, alert_name: str) -> list[Block]:
    """The reply in an alert's thread: the runbook's key steps, entry@version, and the whole entry a click away."""
    how = {"title": "its title is the alert's name", "alias": "it is tagged with the alert's name",
           "search": "search"}[match.how]
    elements = [_button("Show the whole entry", ids.ChannelAction.SHOW_ENTRY,
                        encode_entry(EntryRef(match.entry_id, match.version)))]
    if match.source_ref and match.source_ref.startswith(("https://", "http://")):
        elements.append(ButtonElement(text=PlainTextObject(text="Source"), url=match.source_ref[:3000],
                                      action_id="entry_source"))
    return _fit([
        SectionBlock(text=MarkdownTextObject(text=clip(
            f":books: Runbook for *{escape(alert_name)}*: *{escape(match.title)}* "
            f"(entry #{match.entry_id} v{match.version})", 3000))),
        *_mrkdwn_sections(match.steps)[:10],
        ContextBlock(elements=[MarkdownTextObject(
            text=f"entry #{match.entry_id}@v{match.version} · found because {how} · approved knowledge only")]),
        ActionsBlock(elements=elements),
    ])


def capture_blocks(draft: CaptureDraft) -> list[Block]:
    """The reactor's DM: the Curator's draft of the thread, to submit, edit or discard."""
    value = str(draft.id)
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=clip(
            f":books: You captured a thread. The Curator's draft: *{escape(draft.title)}*", 3000))),
        *_mrkdwn_sections(draft.body)[:20],
        *[ContextBlock(elements=[MarkdownTextObject(text=f":mag: {clip(escape(n), 2900)}")]) for n in draft.notes[:2]],
        ActionsBlock(elements=[
            _button("Submit for approval", ids.ChannelAction.CAPTURE_SUBMIT, value, "primary"),
            _button("Edit first", ids.ChannelAction.CAPTURE_EDIT, value),
            _button("Discard", ids.ChannelAction.CAPTURE_DISCARD, value),
        ]),
    ]
    return _fit(blocks)


def channel_mode_text(channel: str, mode: str) -> str:
    meaning = {"off": "the bot only answers when asked (@kb, /kb)",
               "answer": "the bot answers questions here when it finds a grounded, confident answer",
               "alert": "the bot replies to alerts here with their approved runbook",
               "both": "the bot answers confident questions and replies to alerts with their runbook"}[mode]
    return f"<#{channel}> is in *{mode}* mode: {meaning}."


def deprecate_modal(entry: Entry, private_metadata: str) -> View:
    return View(type="modal", callback_id=ids.View.DEPRECATE_ENTRY, title=PlainTextObject(text="Deprecate entry"),
                submit=PlainTextObject(text="Propose"), close=PlainTextObject(text="Cancel"),
                private_metadata=private_metadata, blocks=[
                    SectionBlock(text=MarkdownTextObject(
                        text=f"*#{entry.id}: {escape(entry.title)}*\nAn approver decides; once approved, the entry "
                             "leaves the index.")),
                    _text_input(ids.Block.REASON, ids.Field.REASON, "Why is it no longer true?", "", multiline=True),
                ])


def home_view(summary: HomeSummary, channel_modes: dict[str, str] | None = None) -> View:
    def listing(title: str, lines: list[str], empty: str) -> list[Block]:
        body = "\n".join(lines) if lines else f"_{empty}_"
        return [SectionBlock(text=MarkdownTextObject(text=clip(f"*{title}*\n{body}", 3000)))]

    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="Knowledge base")),
        ContextBlock(elements=[MarkdownTextObject(
            text=f"{summary.active_entries} approved entries · {summary.pending_proposals} proposals pending · "
                 f"{summary.answers_7d} questions this week, {summary.grounded_7d} answered from entries")]),
        DividerBlock(),
        *listing("Waiting for your approval",
                 [f"• #{p.id} {escape(p.title)} by {_who(p.proposer)}" for p in summary.waiting_for_me],
                 "nothing waits for you"),
        *listing("Your proposals", [f"• #{p.id} {escape(p.title)}: {p.status.value}" for p in summary.my_proposals],
                 "you have proposed nothing yet"),
        *listing("Your entries due for re-verification",
                 [f"• #{e.id} {escape(e.title)} (v{e.current_version}, due {_when(e.review_after)})"
                  for e in summary.my_due_entries], "none due"),
        *listing("Channels where the bot speaks up", [f"• <#{c}>: {m}" for c, m in (channel_modes or {}).items()],
                 "none: it only answers when asked (`/kb channel answer|alert|both` in a channel)"),
    ]
    return View(type="home", blocks=blocks[:MAX_BLOCKS_MODAL])
