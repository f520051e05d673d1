"""The running app with Claude behind it (the loopback Messages API): what Slack shows for each role."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.roles.curator import DRAFT_TOOL
from bot.roles.reviewer import REVIEW_TOOL
from handlers import blocks, ids
from handlers.commands import StreamToResponse
from store.lifecycle import Draft
from store.models import Task
from store.weaviate_conn import WeaviateTarget
from tests.fakes.anthropic_api import Error, FakeAnthropic, Message, search_result_citation, text_block, tool_use_block
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_requests import message_shortcut, post, view_submission
from tests.handlers.conftest import APPROVAL_CHANNEL, SECRET, RunningApp, app_settings, serve
from tests.handlers.test_slack_scenarios import all_text, buttons, command

pytestmark = pytest.mark.weaviate
RUNBOOK = ("Runner disk full", "CI jobs fail with 'no space left on device' on the shared runners.\n\n"
           "Run `docker system prune -af` on the runner, then retry the job.")


@pytest.fixture
def claude_app(tmp_path: Path, weaviate_target: WeaviateTarget, fake_slack: FakeSlackApi
               ) -> Iterator[tuple[RunningApp, FakeAnthropic]]:
    with FakeAnthropic() as claude:
        settings = app_settings(tmp_path, f"sqlite:///{tmp_path / 'kb.sqlite3'}", weaviate_target, fake_slack,
                                anthropic_api_key=claude.api_key, anthropic_base_url=claude.base_url,
                                llm_max_retries=1)
        for app in serve(settings, fake_slack):
            proposal = app.service.propose(Draft(title=RUNBOOK[0], body=RUNBOOK[1]), proposer="UCURATOR",
                                           review=False)
            app.service.approve(proposal.id or 0, by="UAPPROVER1")
            yield app, claude


def _cite_first(body: dict[str, Any]) -> Message:
    first = next(b for b in body["messages"][0]["content"] if b["type"] == "search_result")
    return Message([text_block("Prune Docker on the runner with `docker system prune -af`", [
        search_result_citation(0, first["source"], first["title"], first["content"][-1]["text"])]),
        text_block(", then retry the job.")])


def test_ask_shows_claudes_cited_answer(claude_app: tuple[RunningApp, FakeAnthropic]) -> None:
    app, claude = claude_app
    claude.set_responder(_cite_first)
    reply = command(app, "ask a ci job failed with no space left on device on the runner", reply="ask")
    text = all_text(reply.args["blocks"])
    assert "Prune Docker on the runner with `docker system prune -af`[1], then retry the job." in text
    assert "entry #1 v1" in text and "Degraded" not in text
    assert set(buttons(reply.args["blocks"])) == {ids.AnswerAction.SHARE, ids.AnswerAction.HELPFUL,
                                                  ids.AnswerAction.NOT_HELPFUL}
    assert len(claude.message_requests()) == 1


def test_ask_when_claude_is_overloaded_says_the_answer_is_degraded(
        claude_app: tuple[RunningApp, FakeAnthropic]) -> None:
    app, claude = claude_app
    claude.set_responder(lambda body: Error(529, "overloaded_error"))
    reply = command(app, "ask a ci job failed with no space left on device on the runner", reply="ask")
    text = all_text(reply.args["blocks"])
    assert "Degraded answer" in text and "docker system prune -af" in text and "entry #1 v1" in text
    assert "Traceback" not in text and len(claude.message_requests()) == 2


def test_shortcut_drafts_with_the_curator_and_the_card_shows_the_reviewer(
        claude_app: tuple[RunningApp, FakeAnthropic]) -> None:
    app, claude = claude_app
    app.fake.set_thread("CINCIDENT", "1700000100.000100", [
        {"user": "UOPS1", "ts": "1700000100.000100", "text": "runner jobs dying with no space left on device"},
        {"user": "UOPS2", "ts": "1700000101.000100", "text": "`docker system prune -af` on the runner fixed it"},
    ])

    def model(body: dict[str, Any]) -> Message:
        tool = body["tool_choice"]["name"]
        if tool == DRAFT_TOOL:
            return Message([tool_use_block(DRAFT_TOOL, {
                "title": "Runner out of disk: prune Docker", "problem": "Jobs died: no space left on device.",
                "resolution_steps": ["Run `docker system prune -af` on the runner"], "tags": ["ci"],
                "services": ["runners"], "language": "en",
                "attributions": [{"author": "UOPS2", "statement": "pruning Docker fixed it"}]})],
                stop_reason="tool_use")
        assert tool == REVIEW_TOOL
        # The Reviewer must run after Slack has its answer: held until the submission's HTTP response is in
        # (a handler that reviewed before acknowledging would hold its own response for the 10 s here).
        reviewed_after_ack.append(submission_answered.wait(timeout=10))
        return Message([tool_use_block(REVIEW_TOOL, {
            "duplicates": [{"entry_id": 1, "reason": "entry #1 already says to prune Docker on the runner"}],
            "update_of": 1, "concerns": []})], stop_reason="tool_use")

    submission_answered = threading.Event()
    reviewed_after_ack: list[bool] = []
    claude.set_responder(model)
    shortcut = message_shortcut(ids.Shortcut.PROPOSE_THREAD, user_id="UOPS1", channel_id="CINCIDENT",
                                message_ts="1700000101.000100", thread_ts="1700000100.000100")
    assert post(app.url, shortcut, SECRET).status_code == 200
    modal = app.fake.wait_for("views.update", timeout=30)[-1].args["view"]
    draft = {b["block_id"]: b["element"].get("initial_value") for b in modal["blocks"] if b["type"] == "input"}
    assert draft[ids.Block.TITLE] == "Runner out of disk: prune Docker"
    assert "## Resolution\n1. Run `docker system prune -af` on the runner" in draft[f"{ids.Block.BODY}_0"]
    assert draft[ids.Block.TAGS] == "ci, runners"

    submission = view_submission(ids.View.PROPOSE, {
        ids.Block.TITLE: {ids.Field.TITLE: draft[ids.Block.TITLE]},
        f"{ids.Block.BODY}_0": {ids.Field.BODY: draft[f"{ids.Block.BODY}_0"]},
        ids.Block.TAGS: {ids.Field.TAGS: draft[ids.Block.TAGS]}}, user_id="UOPS1",
        private_metadata=modal["private_metadata"])
    assert post(app.url, submission, SECRET).status_code == 200
    submission_answered.set()
    card = next(c for c in app.fake.wait_for("chat.postMessage", timeout=30) if c.args["channel"] == APPROVAL_CHANNEL)
    text = all_text(card.args["blocks"])
    assert "Reviewer:" in text and "update of entry #1" in text and "duplicates entry #1" in text
    assert set(buttons(card.args["blocks"])) == {ids.ApprovalAction.APPROVE, ids.ApprovalAction.EDIT,
                                                 ids.ApprovalAction.REJECT}
    assert [r.body["tool_choice"]["name"] for r in claude.message_requests()] == [DRAFT_TOOL, REVIEW_TOOL]
    assert reviewed_after_ack == [True]  # the modal closed before the Reviewer ran


def test_streaming_posts_a_few_growing_updates_then_stops() -> None:
    posted: list[dict[str, Any]] = []
    stream = StreamToResponse(lambda **kwargs: posted.append(kwargs), interval=0.0, max_updates=3)  # type: ignore[arg-type]
    for n in range(1, 10):
        stream("word " * n)
    assert [p["text"] for p in posted] == ["word " * 1, "word " * 2, "word " * 3]
    assert posted[0]["replace_original"] is True and posted[0]["response_type"] == "ephemeral"
    assert "writing" in all_text([b.to_dict() for b in blocks.streaming_blocks("x")])


def test_every_subcommand_is_a_task_and_trace_shows_model_and_tokens(
        claude_app: tuple[RunningApp, FakeAnthropic]) -> None:
    app, claude = claude_app
    claude.set_responder(_cite_first)
    asked = command(app, "ask a ci job failed with no space left on device on the runner", reply="ask")
    task_id = next(e["text"] for b in asked.args["blocks"] if b["type"] == "context"
                   for e in b["elements"] if e["text"].startswith("task `")).split("`")[1]
    traced = all_text(command(app, f"trace {task_id}", reply="trace").args["blocks"])
    model = app.settings.anthropic_model
    assert f"{model} (100 in / 50 out tokens)" in traced and "entries #1@v1" in traced and "claude" in traced
    shown = command(app, "show 1", reply="show")
    assert RUNBOOK[0] in all_text(shown.args["blocks"])
    with app.service.db.session() as session:
        tasks = {(t.role, t.command) for t in session.exec(select(Task))}
    assert {("answerer", "ask"), ("librarian", "trace"), ("librarian", "show")} <= tasks
