"""The bot in channels, through signed Events API requests into the running app; the loopback Web API records
every call. Replies must land in the right thread and cite entry@version; where silence is right, nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from handlers import ids
from store.lifecycle import Draft
from store.models import JobMark, Task, TaskStatus
from store.presence import AUTO_ANSWER_JOB
from store.weaviate_conn import WeaviateTarget
from tests.fakes.alert_messages import (
    alertmanager_message,
    deploy_message,
    grafana_message,
    opsgenie_message,
    pagerduty_message,
)
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_requests import block_action, event_callback, post, sign, slash_command
from tests.handlers.conftest import APPROVAL_CHANNEL, SECRET, RunningApp, app_settings, serve
from tests.handlers.test_slack_scenarios import APPROVER, all_text, buttons

pytestmark = pytest.mark.weaviate
ANSWERS, ALERTS, QUIET = "CANSWERS", "CALERTS", "CQUIET"
DISK = ("Runner disk full", "CI jobs fail with 'no space left on device' on the shared runners.\n\n"
        "Run `docker system prune -af` on the runner, then retry the job.")
DISK_QUESTION = "ci jobs fail with no space left on device on the shared runner, what do I do?"


@pytest.fixture
def channel_app(tmp_path: Path, weaviate_target: WeaviateTarget, fake_slack: FakeSlackApi) -> Iterator[RunningApp]:
    settings = app_settings(tmp_path, f"sqlite:///{tmp_path / 'kb.sqlite3'}", weaviate_target, fake_slack,
                            answer_channels=ANSWERS, alert_channels=ALERTS, auto_answers_per_hour=2)
    for app in serve(settings, fake_slack):
        proposal = app.service.propose(Draft(title=DISK[0], body=DISK[1]), proposer="UCURATOR", review=False)
        assert app.service.approve(proposal.id or 0, by=APPROVER).indexed
        yield app


def send(app: RunningApp, event: dict[str, Any], *, event_id: str | None = None) -> httpx.Response:
    response = post(app.url, event_callback({"event_ts": event.get("ts", "1.0"), **event}, event_id=event_id),
                    SECRET)
    assert response.status_code == 200
    return response


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def tasks(app: RunningApp, command: str) -> list[Task]:
    """The finished tasks of a command (a task row exists from its start, its steps are written at the end)."""
    with app.service.db.session() as session:
        return list(session.exec(select(Task).where(Task.command == command, Task.status != TaskStatus.RUNNING)))


def posts_in(app: RunningApp, channel: str) -> list[Any]:
    return [c for c in app.fake.calls_to("chat.postMessage") if c.args.get("channel") == channel]


def message(channel: str, text: str, ts: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "channel": channel, "user": "UASKER", "text": text, "ts": ts,
            "channel_type": "channel", **extra}


def test_a_mention_is_answered_in_its_thread_and_a_follow_up_there_too(channel_app: RunningApp) -> None:
    app = channel_app
    send(app, {"type": "app_mention", "channel": QUIET, "user": "UASKER", "ts": "1700000100.000100",
               "text": f"<@UBOT> {DISK_QUESTION}"})
    [reply] = app.fake.wait_for("chat.postMessage", timeout=30)
    assert (reply.args["channel"], reply.args["thread_ts"]) == (QUIET, "1700000100.000100")
    text = all_text(reply.args["blocks"])
    assert "entry #1 v1" in text and "docker system prune -af" in text
    assert set(buttons(reply.args["blocks"])) == {ids.AnswerAction.HELPFUL, ids.AnswerAction.NOT_HELPFUL}
    # The same message also arrives as a message event: the mention answers it, not twice.
    send(app, message(QUIET, f"<@UBOT> {DISK_QUESTION}", "1700000100.000100"))

    send(app, message(QUIET, "and if the prune does not free enough?", "1700000101.000100",
                      thread_ts="1700000100.000100"))
    wait_until(lambda: len(tasks(app, "follow_up")) == 1)
    follow_up = tasks(app, "follow_up")[0]
    assert follow_up.steps[0]["context_turns"] == 1  # the thread's earlier question and answer
    replies = app.fake.wait_for("chat.postMessage", count=2, timeout=30)
    assert all(r.args["thread_ts"] == "1700000100.000100" for r in replies) and len(replies) == 2


def test_a_dm_is_answered_and_a_thread_the_bot_was_not_in_gets_silence(channel_app: RunningApp) -> None:
    app = channel_app
    send(app, message("DASKER", DISK_QUESTION, "1700000300.000100", channel_type="im"))
    [reply] = app.fake.wait_for("chat.postMessage", timeout=30)
    assert (reply.args["channel"], reply.args["thread_ts"]) == ("DASKER", "1700000300.000100")
    send(app, message(ANSWERS, DISK_QUESTION, "1700000301.000100", thread_ts="1700000000.000001"))
    send(app, message(QUIET, DISK_QUESTION, "1700000302.000100"))  # mode off: only when asked
    time.sleep(1.5)
    assert len(app.fake.calls_to("chat.postMessage")) == 1
    assert tasks(app, "channel_answer") == []


def test_answer_channel_replies_when_confident_skips_otherwise_and_is_rate_limited(channel_app: RunningApp) -> None:
    app = channel_app
    send(app, message(ANSWERS, DISK_QUESTION, "1700000400.000100"))
    [reply] = app.fake.wait_for("chat.postMessage", timeout=30)
    assert (reply.args["channel"], reply.args["thread_ts"]) == (ANSWERS, "1700000400.000100")
    assert "entry #1 v1" in all_text(reply.args["blocks"])

    send(app, message(ANSWERS, "how do I rotate the kafka consumer offsets for billing?", "1700000401.000100"))
    send(app, message(ANSWERS, "lunch at noon, everyone", "1700000402.000100"))  # not a question: not looked at
    wait_until(lambda: len(tasks(app, "channel_answer")) == 2)
    skipped = next(t for t in tasks(app, "channel_answer") if t.result["action"] == "skip")
    assert skipped.result["reason"] == "not confident or not cited" and skipped.result["channel"] == ANSWERS
    assert skipped.id not in [g.id for g in app.service.knowledge_gaps()]  # nobody asked the bot

    for n in range(2):  # the budget is 2 replies an hour
        send(app, message(ANSWERS, DISK_QUESTION, f"17000005{n}0.000100"))
        wait_until(lambda n=n: len(tasks(app, "channel_answer")) == 3 + n)  # type: ignore[misc]
    reasons = sorted(t.result["reason"] for t in tasks(app, "channel_answer"))
    assert reasons == ["grounded", "grounded", "not confident or not cited", "rate limited"]
    assert len(posts_in(app, ANSWERS)) == 2
    metrics = httpx.get(f"{app.url}/metrics", timeout=10).text
    assert f'kb_channel_events_total{{action="answer_reply",channel="{ANSWERS}"}} 2.0' in metrics
    assert f'kb_channel_events_total{{action="answer_skip",channel="{ANSWERS}"}} 2.0' in metrics


def test_questions_at_the_same_instant_cannot_exceed_the_hourly_budget(
        channel_app: RunningApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """An incident: four questions land at once in an answer channel whose budget is 2 replies an hour."""
    app = channel_app
    answer = app.service.ask
    overlapping = threading.Barrier(2, timeout=10)

    def held_ask(*args: Any, **kwargs: Any) -> Any:
        overlapping.wait()  # both answers are in flight together before either is recorded
        return answer(*args, **kwargs)

    monkeypatch.setattr(app.service, "ask", held_ask)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: send(app, message(ANSWERS, DISK_QUESTION, f"17000007{n}0.000100")), range(4)))
    wait_until(lambda: len(tasks(app, "channel_answer")) == 4)
    reasons = sorted(t.result["reason"] for t in tasks(app, "channel_answer"))
    assert reasons == ["grounded", "grounded", "rate limited", "rate limited"]
    wait_until(lambda: len(posts_in(app, ANSWERS)) == 2)
    with app.service.db.session() as session:  # the in-flight slots are given back
        assert session.exec(select(JobMark).where(JobMark.job == AUTO_ANSWER_JOB)).all() == []


def test_own_messages_and_retried_events_are_ignored(channel_app: RunningApp) -> None:
    app = channel_app
    send(app, {**message(ANSWERS, DISK_QUESTION, "1700000600.000100"), "user": "UBOT", "bot_id": "BBOT"})
    send(app, message(ANSWERS, DISK_QUESTION, "1700000601.000100"), event_id="EvSAME")
    send(app, message(ANSWERS, DISK_QUESTION, "1700000601.000100"), event_id="EvSAME")  # Slack's retry
    wait_until(lambda: len(tasks(app, "channel_answer")) >= 1)
    time.sleep(1.0)
    assert len(tasks(app, "channel_answer")) == 1 and len(posts_in(app, ANSWERS)) == 1


def test_url_verification_is_answered(channel_app: RunningApp) -> None:
    body = json.dumps({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"})
    response = httpx.post(f"{channel_app.url}/slack/events", content=body, headers=sign(body, SECRET), timeout=10)
    assert response.status_code == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in response.text


def test_channel_mode_is_set_by_approvers_stored_and_shown_in_app_home(channel_app: RunningApp) -> None:
    app = channel_app
    refused = post(app.url, slash_command("channel answer", user_id="UNOBODY", channel_id=QUIET,
                                          response_url=app.fake.response_url("no")), SECRET)
    assert refused.status_code == 200
    assert "Only approvers" in app.fake.wait_for("response_url:no")[-1].args["text"]
    post(app.url, slash_command("channel both", user_id=APPROVER, channel_id=QUIET,
                                response_url=app.fake.response_url("yes")), SECRET)
    assert "*both* mode" in app.fake.wait_for("response_url:yes")[-1].args["text"]
    assert app.service.channel_mode(QUIET).value == "both"
    send(app, {"type": "app_home_opened", "user": APPROVER, "tab": "home", "channel": "D1", "ts": "1.0"})
    home = all_text(app.fake.wait_for("views.publish", timeout=30)[-1].args["view"]["blocks"])
    assert f"<#{QUIET}>: both" in home and f"<#{ANSWERS}>: answer" in home and f"<#{ALERTS}>: alert" in home


def test_a_books_reaction_drafts_the_thread_and_the_reactor_submits_it_by_dm(channel_app: RunningApp) -> None:
    app = channel_app
    app.fake.set_thread("CINCIDENT", "1700000700.000100", [
        {"user": "UOPS1", "ts": "1700000700.000100", "text": "pgbouncer refuses connections: too many clients"},
        {"user": "UOPS2", "ts": "1700000701.000100", "text": "Raised max_client_conn to 2000 and reloaded"},
    ])
    send(app, {"type": "reaction_added", "user": "UREACTOR", "reaction": "thumbsup", "ts": "1700000702.000100",
               "item": {"type": "message", "channel": "CINCIDENT", "ts": "1700000700.000100"}})
    send(app, {"type": "reaction_added", "user": "UREACTOR", "reaction": "books", "ts": "1700000703.000100",
               "item": {"type": "message", "channel": "CINCIDENT", "ts": "1700000700.000100"}})
    [dm] = app.fake.wait_for("chat.postMessage", timeout=30)
    assert dm.args["channel"] == "UREACTOR"
    text = all_text(dm.args["blocks"])
    assert "pgbouncer refuses connections" in text and "&lt;@UOPS2&gt;: Raised max_client_conn to 2000" in text
    choices = buttons(dm.args["blocks"])
    assert set(choices) == {ids.ChannelAction.CAPTURE_SUBMIT, ids.ChannelAction.CAPTURE_EDIT,
                            ids.ChannelAction.CAPTURE_DISCARD}

    def click(user: str, reply: str) -> None:
        body = block_action(ids.ChannelAction.CAPTURE_SUBMIT, choices[ids.ChannelAction.CAPTURE_SUBMIT],
                            user_id=user, channel_id="DUREACTOR", response_url=app.fake.response_url(reply))
        assert post(app.url, body, SECRET).status_code == 200

    click("USOMEONE", "stranger")
    assert "Only the person who captured" in app.fake.wait_for("response_url:stranger")[-1].args["text"]
    click("UREACTOR", "mine")
    assert "Submitted as proposal #2" in app.fake.wait_for("response_url:mine", timeout=30)[-1].args["text"]
    card = next(c for c in app.fake.wait_for("chat.postMessage", count=2, timeout=30)
                if c.args["channel"] == APPROVAL_CHANNEL)
    assert "pgbouncer refuses connections" in all_text(card.args["blocks"])
    proposal = app.service.show_proposal(2).proposal
    assert (proposal.proposer, proposal.origin.value) == ("UREACTOR", "thread")
    assert proposal.origin_ref and "CINCIDENT" in proposal.origin_ref


# --- runbook on alert -------------------------------------------------------------------------------------------

CRASHLOOP = ("KubePodCrashLooping", "# KubePodCrashLooping\n\nPod is in CrashLoopBackOff state.\n\n## Diagnosis\n\n"
             "- Check the pod's events with `kubectl describe pod`\n- Check its logs with `kubectl logs --previous`"
             "\n\n## Mitigation\n\n1. Fix the configuration the logs point at.\n2. Roll back the last deploy with "
             "`kubectl rollout undo`.")
LABELS = {"namespace": "payments", "pod": "checkout-7d9f", "severity": "warning"}


def _approve(app: RunningApp, title: str, body: str) -> int:
    proposal = app.service.propose(Draft(title=title, body=body), proposer="UCURATOR", review=False)
    decided = app.service.approve(proposal.id or 0, by=APPROVER)
    assert decided.indexed
    return decided.result.entry.id or 0


@pytest.mark.parametrize("shape", ["alertmanager", "grafana", "pagerduty"])
def test_an_alert_with_an_approved_runbook_gets_its_steps_in_the_thread(channel_app: RunningApp, shape: str) -> None:
    app = channel_app
    entry_id = _approve(app, *CRASHLOOP)
    build = {"alertmanager": alertmanager_message, "grafana": grafana_message, "pagerduty": pagerduty_message}[shape]
    event = build("KubePodCrashLooping", LABELS, channel=ALERTS, ts="1700000800.000100")
    send(app, event)
    [reply] = app.fake.wait_for("chat.postMessage", timeout=30)
    assert (reply.args["channel"], reply.args["thread_ts"]) == (ALERTS, "1700000800.000100")
    text = all_text(reply.args["blocks"])
    assert f"entry #{entry_id}@v1" in text and "kubectl rollout undo" in text  # the Mitigation section
    assert ids.ChannelAction.SHOW_ENTRY in buttons(reply.args["blocks"])

    send(app, build("KubePodCrashLooping", LABELS, channel=ALERTS, ts="1700000801.000100"))  # fires again
    resolved = {"alertmanager": "resolved", "grafana": "resolved", "pagerduty": "resolved"}[shape]
    send(app, build("KubePodCrashLooping", LABELS, status=resolved, channel=ALERTS, ts="1700000802.000100"))
    wait_until(lambda: len(tasks(app, "alert")) == 3)
    assert sorted(t.result["reason"] for t in tasks(app, "alert")) == [
        "repeat within the window", "resolved", "runbook found"]
    assert len(posts_in(app, ALERTS)) == 1


def test_an_alert_without_a_runbook_gets_silence_and_becomes_a_gap(channel_app: RunningApp) -> None:
    app = channel_app
    send(app, alertmanager_message("EtcdHighFsyncDurations", {"job": "etcd", "severity": "warning"},
                                   channel=ALERTS, ts="1700000900.000100"))
    send(app, opsgenie_message("EtcdHighFsyncDurations", {"job": "etcd"}, channel=QUIET, ts="1700000901.000100"))
    send(app, deploy_message(channel=ALERTS, ts="1700000902.000100"))  # a bot, but not an alert
    wait_until(lambda: len(tasks(app, "alert")) == 1)
    time.sleep(1.0)
    assert app.fake.calls_to("chat.postMessage") == []
    [gap] = app.service.knowledge_gaps()
    assert gap.command == "alert" and "EtcdHighFsyncDurations" in gap.input
