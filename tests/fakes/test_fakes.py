"""The fakes against the real libraries: slack_sdk's WebClient talks to FakeSlackApi, and a real Bolt App, served
over HTTP, receives the signed requests slack_requests builds."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from slack_bolt import Ack, App, BoltContext, Respond, Say
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, SectionBlock
from slack_sdk.signature import SignatureVerifier

from tests.fakes import slack_requests as sr
from tests.fakes.slack_api import Call, FakeSlackApi

SECRET = "secret"
TOKEN = "xoxb-test"


@pytest.fixture
def fake() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as api:
        yield api


@pytest.fixture
def client(fake: FakeSlackApi) -> WebClient:
    return WebClient(token=TOKEN, base_url=fake.api_url)


@pytest.fixture
def app(client: WebClient) -> App:
    return App(signing_secret=SECRET, client=client, token_verification_enabled=False)


@pytest.fixture
def server(app: App) -> Iterator[sr.BoltServer]:
    with sr.BoltServer(app) as running:
        yield running


# ---------------------------------------------------------------------- FakeSlackApi with slack_sdk


def test_post_message_records_decoded_blocks_and_bearer_token(fake: FakeSlackApi, client: WebClient) -> None:
    blocks = [
        SectionBlock(block_id="answer", text="*Rotate keys* with `kb rotate`"),
        ActionsBlock(block_id="acts", elements=[ButtonElement(text="Approve", action_id="approve", value="42")]),
    ]
    first = client.chat_postMessage(channel="C1", text="fallback", blocks=blocks, thread_ts="1699999999.000001")
    second = client.chat_postMessage(channel="C1", text="again")

    assert first["ok"] and first["channel"] == "C1"
    assert first["ts"] == "1700000000.000100" and second["ts"] == "1700000000.000200"
    assert first["message"]["blocks"][0]["block_id"] == "answer" and first["message"]["user"] == "UBOT"

    call = fake.calls_to("chat.postMessage")[0]
    assert call.token == TOKEN
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"  # lookups are case-insensitive
    assert call.content_type.startswith("application/json")  # slack_sdk sends Block Kit methods as JSON
    assert call.args["thread_ts"] == "1699999999.000001"
    assert call.args["blocks"] == [block.to_dict() for block in blocks]
    assert call.args["blocks"][1]["elements"][0] == {
        "type": "button",
        "text": {"type": "plain_text", "text": "Approve", "emoji": True},
        "action_id": "approve",
        "value": "42",
    }


def test_form_encoded_calls_are_decoded(fake: FakeSlackApi, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    # api_call with params= is form-encoded; slack_sdk only JSON-encodes structured values for you in json= calls
    client.api_call("chat.postMessage", params={"channel": "C1", "blocks": json.dumps(blocks), "text": "[not json"})
    fake.set_thread("C1", "1.000001", [{"ts": "1.000001", "text": "q"}])
    client.conversations_replies(channel="C1", ts="1.000001", inclusive=True)

    post, replies = fake.calls
    assert post.content_type == "application/x-www-form-urlencoded"
    assert post.args == {"channel": "C1", "blocks": blocks, "text": "[not json"}
    assert replies.method == "conversations.replies"
    assert replies.args == {"channel": "C1", "ts": "1.000001", "inclusive": "1"}  # booleans become "1"/"0"


def test_get_multipart_and_gzip_requests_are_decoded(fake: FakeSlackApi, client: WebClient) -> None:
    client.api_call("files.fakeUpload", files={"file": b"\x00bytes"}, data={"channels": "C1", "title": "t"})
    with httpx.Client(trust_env=False) as http:
        assert http.get(f"{fake.api_url}users.info", params={"user": "U3"}).json()["user"]["id"] == "U3"
        gzipped = gzip.compress(json.dumps({"channel": "C1", "text": "z"}).encode())
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        assert http.post(f"{fake.api_url}chat.postMessage", content=gzipped, headers=headers).json()["ok"]
        assert http.post(f"{fake.url}/elsewhere").status_code == 404

    upload, info, post = fake.calls
    assert upload.content_type.startswith("multipart/form-data")
    assert upload.args == {"channels": "C1", "title": "t", "file": b"\x00bytes"}
    assert info.args == {"user": "U3"} and post.args == {"channel": "C1", "text": "z"}


def test_scripted_error_raises_slack_api_error_then_recovers(fake: FakeSlackApi, client: WebClient) -> None:
    fake.fail("chat.postMessage", error="channel_not_found")

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C404", text="hi")
    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "channel_not_found"

    assert client.chat_postMessage(channel="C1", text="hi")["ok"]
    assert [c.args["channel"] for c in fake.calls_to("chat.postMessage")] == ["C404", "C1"]  # failures are recorded


def test_rate_limit_sends_429_with_retry_after(fake: FakeSlackApi, client: WebClient) -> None:
    fake.fail("chat.update", status=429, retry_after=7, times=2)

    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            client.chat_update(channel="C1", ts="1.2", text="x")
        assert raised.value.response.status_code == 429
        assert raised.value.response.headers["Retry-After"] == "7"
        assert raised.value.response["error"] == "ratelimited"
    assert client.chat_update(channel="C1", ts="1.2", text="x")["ts"] == "1.2"


def test_slack_sdk_retry_handler_honours_the_fake_429(fake: FakeSlackApi) -> None:
    retrying = WebClient(
        token=TOKEN, base_url=fake.api_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)]
    )
    fake.fail("reactions.add", status=429, retry_after=0)
    assert retrying.reactions_add(channel="C1", timestamp="1.2", name="eyes")["ok"]
    assert len(fake.calls_to("reactions.add")) == 2


def test_canned_responses(fake: FakeSlackApi, client: WebClient) -> None:
    auth = client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T1")

    ephemeral = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert ephemeral["message_ts"].startswith("1700000000.")
    permalink = client.chat_getPermalink(channel="C1", message_ts="1700000000.000100")
    assert permalink["permalink"] == "https://example.slack.com/archives/C1/p1700000000000100"

    thread = [{"user": "U1", "text": "q", "ts": "1.1"}, {"user": "U2", "text": "a", "ts": "1.2", "thread_ts": "1.1"}]
    fake.set_thread("C1", "1.1", thread)
    messages = client.conversations_replies(channel="C1", ts="1.1")["messages"]
    assert [m["text"] for m in messages] == ["q", "a"] and messages[0]["type"] == "message"
    with pytest.raises(SlackApiError, match="thread_not_found"):
        client.conversations_replies(channel="C1", ts="9.9")
    page = client.conversations_replies(channel="C1", ts="1.1", limit=1)
    assert len(page["messages"]) == 1 and page["has_more"] and page["response_metadata"]["next_cursor"] == "1"

    fake.set_usergroup("S123", ["U1", "U2"])
    assert client.usergroups_users_list(usergroup="S123")["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        client.usergroups_users_list(usergroup="S999")

    fake.set_user("U1", name="alice", real_name="Alice Liddell", email="alice@example.com")
    alice = client.users_info(user="U1")["user"]
    assert (alice["name"], alice["real_name"], alice["profile"]["email"]) == (
        "alice",
        "Alice Liddell",
        "alice@example.com",
    )
    assert client.users_info(user="U7")["user"]["name"] == "u7"

    assert client.conversations_open(users="U1")["channel"]["id"] == "DU1"
    assert client.chat_postMessage(channel="U1", text="dm")["channel"] == "DU1"
    assert client.reactions_add(channel="C1", timestamp="1.1", name="eyes")["ok"]
    assert client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.1", status="is thinking...")["ok"]
    assert client.api_call("anything.else")["ok"]


def test_views_echo_with_ids(fake: FakeSlackApi, client: WebClient) -> None:
    modal = {"type": "modal", "callback_id": "ask", "title": {"type": "plain_text", "text": "Ask"}, "blocks": []}
    opened = client.views_open(trigger_id="1.2.abc", view=modal)["view"]
    assert opened["id"].startswith("V") and opened["callback_id"] == "ask" and opened["state"] == {"values": {}}
    assert fake.calls_to("views.open")[0].args["view"] == modal

    updated = client.views_update(view_id=opened["id"], view={**modal, "private_metadata": "x"})["view"]
    assert updated["id"] == opened["id"] and updated["private_metadata"] == "x"
    assert client.views_push(trigger_id="1.2.abc", view=modal)["view"]["id"] != opened["id"]
    home = client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["view"]
    assert home["type"] == "home"
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        client.views_open(trigger_id="", view=modal)


def test_files_upload_v2_round_trip(fake: FakeSlackApi, client: WebClient) -> None:
    result = client.files_upload_v2(channel="C1", content="hello", filename="notes.txt", title="Notes")
    assert result["file"]["title"] == "Notes"
    [get_url] = fake.calls_to("files.getUploadURLExternal")
    [upload] = fake.calls_to(f"upload:{result['file']['id']}")
    assert upload.args["content"] == b"hello" and get_url.args["filename"] == "notes.txt"
    [complete] = fake.calls_to("files.completeUploadExternal")
    assert complete.args["files"] == [{"id": result["file"]["id"], "title": "Notes"}]  # decoded from a form field


def test_respond_with_and_reset(fake: FakeSlackApi, client: WebClient) -> None:
    fake.respond_with("conversations.history", {"messages": [{"ts": "1.1", "text": "hi"}]})
    fake.respond_with("chat.postMessage", lambda call: {"channel": call.args["channel"], "ts": "5.5"})
    assert client.conversations_history(channel="C1")["messages"][0]["text"] == "hi"
    assert client.chat_postMessage(channel="C9", text="x")["ts"] == "5.5"

    fake.fail("auth.test")
    fake.reset()
    assert fake.calls == []
    assert client.auth_test()["ok"]  # the scripted failure is gone too
    assert client.chat_postMessage(channel="C9", text="x")["ts"] != "5.5"


def test_wait_for_blocks_until_calls_arrive_and_times_out_with_the_calls_seen(
    fake: FakeSlackApi, client: WebClient
) -> None:
    def later() -> None:
        time.sleep(0.05)
        client.chat_update(channel="C1", ts="1.1", text="done")

    worker = threading.Thread(target=later)
    worker.start()
    calls = fake.wait_for("chat.update", timeout=5.0)
    worker.join()
    assert calls[0].args["text"] == "done"

    with pytest.raises(AssertionError, match=r"(?s)expected 2 call\(s\) to 'chat.update'.*got 1.*chat.update"):
        fake.wait_for("chat.update", count=2, timeout=0.1)


def test_sign_matches_slack_sdk_signature_verifier() -> None:
    body = sr.slash_command("hello world")
    headers = sr.sign(body, SECRET)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sr.sign(sr.url_verification("c"), SECRET, timestamp=1)["Content-Type"] == "application/json"
    assert not verifier.is_valid(body, "1", sr.sign(body, SECRET, timestamp=1)["X-Slack-Signature"])  # too old


# ---------------------------------------------------------------------- a real Bolt app over HTTP


def test_slash_command_acks_and_responds_through_the_response_url(
    fake: FakeSlackApi, app: App, server: sr.BoltServer
) -> None:
    seen: dict[str, Any] = {}

    @app.command("/kb")
    def kb(ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        ack("Looking…")
        seen.update(command=command, bot_user_id=context.bot_user_id)
        respond(text=f"answer to {command['text']}", response_type="in_channel")

    body = sr.slash_command("how do I rotate keys", response_url=fake.response_url("r1"))
    fields = parse_qs(body)
    assert set(fields) == {
        "token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name", "command",
        "text", "api_app_id", "is_enterprise_install", "response_url", "trigger_id",
    }  # fmt: skip
    response = sr.post(server.url, body, SECRET)

    assert response.status_code == 200
    assert response.text == "Looking…"
    [reply] = fake.wait_for("response_url:r1")
    assert reply.args == {"text": "answer to how do I rotate keys", "response_type": "in_channel"}
    assert reply.content_type.startswith("application/json")
    assert seen["command"]["user_id"] == "U1" and seen["bot_user_id"] == "UBOT"
    [auth] = fake.calls_to("auth.test")  # Bolt's single-team authorization asked the fake, once, with the token
    assert auth.token == TOKEN


def test_bad_signature_and_stale_timestamp_are_rejected(fake: FakeSlackApi, app: App, server: sr.BoltServer) -> None:
    app.command("/kb")(lambda ack: ack())
    body = sr.slash_command("hi", response_url=fake.response_url("r1"))

    assert sr.post(server.url, body, SECRET, bad_signature=True).status_code == 401
    assert sr.post(server.url, body, SECRET, timestamp=int(time.time()) - 301).status_code == 401
    assert sr.post(server.base_url, body, SECRET).status_code == 200  # bare base URL: /slack/events is added
    assert fake.calls_to("response_url:r1") == []


def test_block_action_view_submission_and_shortcut_reach_their_listeners(
    fake: FakeSlackApi, app: App, server: sr.BoltServer
) -> None:
    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        container = body["container"]
        client.chat_update(
            channel=container["channel_id"], ts=container["message_ts"], text=f"approved {action['value']}"
        )
        respond(replace_original=False, text="thanks")

    @app.view("ask")
    def ask(ack: Ack, view: dict[str, Any], body: dict[str, Any]) -> None:
        question = view["state"]["values"]["q"]["q_input"]["value"]
        if not question:
            ack(response_action="errors", errors={"q": "Ask something"})
            return
        ack()

    @app.shortcut("save_to_kb")
    def save(ack: Ack, shortcut: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(
            trigger_id=shortcut["trigger_id"],
            view={"type": "modal", "callback_id": "ask", "title": {"type": "plain_text", "text": "Save"},
                  "private_metadata": shortcut["message"]["thread_ts"], "blocks": []},
        )  # fmt: skip

    click = sr.block_action("approve", "42", message_ts="1700000000.000500", response_url=fake.response_url("a1"))
    assert sr.post(server.url, click, SECRET).status_code == 200
    [update] = fake.wait_for("chat.update")
    # Bolt's per-request client adds the request's team_id to every Web API call it makes
    assert update.args == {"channel": "C1", "ts": "1700000000.000500", "text": "approved 42", "team_id": "T1"}
    assert fake.wait_for("response_url:a1")[0].args == {"text": "thanks", "replace_original": False}

    empty = sr.view_submission("ask", {"q": {"q_input": ""}}, private_metadata="1.1")
    errors = sr.post(server.url, empty, SECRET)
    assert errors.status_code == 200
    assert errors.json() == {"response_action": "errors", "errors": {"q": "Ask something"}}
    filled = sr.post(server.url, sr.view_submission("ask", {"q": {"q_input": "why?"}}), SECRET)
    assert (filled.status_code, filled.text) == (200, "")

    shortcut = sr.message_shortcut("save_to_kb", message_ts="1.2", thread_ts="1.1", text="the fix", trigger_id="t-9")
    assert sr.post(server.url, shortcut, SECRET).status_code == 200
    [opened] = fake.wait_for("views.open")
    assert opened.args["trigger_id"] == "t-9" and opened.args["view"]["private_metadata"] == "1.1"


def test_events_url_verification_and_app_mention(fake: FakeSlackApi, app: App, server: sr.BoltServer) -> None:
    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Say) -> None:
        say(text="on it", thread_ts=event.get("thread_ts") or event["ts"])

    challenge = sr.post(server.url, sr.url_verification("abc123"), SECRET)
    assert (challenge.status_code, challenge.json()) == (200, {"challenge": "abc123"})

    event = sr.app_mention_event("<@UBOT> how do I deploy?", ts="1700000001.000100")
    response = sr.post(server.url, sr.event_callback(event, event_id="Ev1"), SECRET)
    assert response.status_code == 200
    [posted] = fake.wait_for("chat.postMessage")
    assert posted.args == {"channel": "C1", "text": "on it", "thread_ts": "1700000001.000100", "team_id": "T1"}


def test_call_is_a_plain_dataclass() -> None:
    call = Call("chat.postMessage", {"channel": "C1"}, {"authorization": "Bearer xoxb-1"})
    assert call.token == "xoxb-1" and call.content_type == ""
