"""FakeAnthropic against the real ``anthropic`` SDK: what the SDK parses from the fake, and what the fake records
of what the SDK sends."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic import Omit
from anthropic.types import (
    CitationsSearchResultLocation,
    Message,
    MessageParam,
    TextBlock,
    ToolParam,
    ToolUseBlock,
)

from tests.fakes import anthropic_api as fa
from tests.fakes.anthropic_api import FakeAnthropic

MODEL = "claude-sonnet-4-6"
SYSTEM = "Answer from the runbooks only, citing them."
SOURCE = "kb://runbooks/rotate-keys"
TITLE = "Rotating API keys"
PASSAGE = "Run `kb rotate --all` from the ops host, then restart the workers."
ANSWER = "Rotate the keys with `kb rotate --all` on the ops host, then restart the workers so they pick them up."
QUESTION: list[MessageParam] = [
    {
        "role": "user",
        "content": [
            {
                "type": "search_result",
                "source": SOURCE,
                "title": TITLE,
                "content": [{"type": "text", "text": PASSAGE}],
                "citations": {"enabled": True},
            },
            {"type": "text", "text": "How do I rotate keys?"},
        ],
    }
]
RUNBOOK_TOOL: ToolParam = {
    "name": "record_answer",
    "description": "Record the answer and the runbooks it came from.",
    "input_schema": {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}}},
        "required": ["answer", "sources"],
    },
}
TOOL_INPUT: dict[str, Any] = {"answer": ANSWER, "sources": [SOURCE, "kb://runbooks/restart-workers"]}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as api:
        yield api


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as sdk:
        yield sdk


def cited_answer(**overrides: Any) -> fa.Message:
    citation = fa.search_result_citation(0, SOURCE, TITLE, PASSAGE)
    return fa.Message([fa.text_block(ANSWER, [citation])], **overrides)


def ask(client: anthropic.Anthropic, **kwargs: Any) -> Message:
    """A non-streaming ``messages.create`` of QUESTION; ``kwargs`` are more of its arguments."""
    reply: Message = client.messages.create(model=MODEL, max_tokens=512, system=SYSTEM, messages=QUESTION, **kwargs)
    return reply


def handler_threads() -> list[threading.Thread]:
    """The fake's request handler threads still running."""
    return [t for t in threading.enumerate() if "process_request" in t.name]


def assert_cited(block: object) -> None:
    assert isinstance(block, TextBlock) and block.text == ANSWER
    assert block.citations is not None and len(block.citations) == 1
    citation = block.citations[0]
    assert isinstance(citation, CitationsSearchResultLocation)
    assert (citation.search_result_index, citation.source, citation.title) == (0, SOURCE, TITLE)
    assert citation.cited_text == PASSAGE
    assert (citation.start_block_index, citation.end_block_index) == (0, 1)


# ---------------------------------------------------------------------- messages.create


def test_create_parses_a_cited_answer_and_the_request_is_recorded(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.script(cited_answer(input_tokens=321, output_tokens=45))

    reply = ask(client)

    assert_cited(reply.content[0])
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (321, 45)
    assert reply.model == MODEL and reply.role == "assistant" and reply.stop_reason == "end_turn"
    assert reply.id.startswith("msg_")

    [request] = fake.message_requests()
    assert request.method == "POST" and request.path == "/v1/messages"
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", request.headers["anthropic-version"])
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.raw) == request.body
    assert request.body["model"] == MODEL and request.body["max_tokens"] == 512
    assert request.body["system"] == SYSTEM
    assert request.body["messages"] == QUESTION
    assert request.body["messages"][0]["content"][0]["type"] == "search_result"
    assert "stream" not in request.body
    assert fake.last_request() == request


def test_message_model_overrides_the_requested_one(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script(fa.Message([fa.text_block("hi")], model="claude-haiku-4-5", stop_reason="max_tokens"))

    reply = ask(client)

    assert reply.model == "claude-haiku-4-5" and reply.stop_reason == "max_tokens"
    assert isinstance(reply.content[0], TextBlock) and reply.content[0].citations is None


# ---------------------------------------------------------------------- streaming


def test_stream_yields_text_in_pieces_and_a_final_message_with_citations(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.script(cited_answer(input_tokens=400, output_tokens=60))

    with client.messages.stream(model=MODEL, max_tokens=512, system=SYSTEM, messages=QUESTION) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1 and "".join(pieces) == ANSWER
    assert_cited(final.content[0])
    assert (final.usage.input_tokens, final.usage.output_tokens) == (400, 60)
    assert final.stop_reason == "end_turn" and final.model == MODEL
    assert fake.last_request().body["stream"] is True


def test_raw_stream_events_come_in_the_api_order(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script(cited_answer(input_tokens=7))

    with client.messages.create(model=MODEL, max_tokens=512, messages=QUESTION, stream=True) as events:
        seen = list(events)

    kinds = [event.delta.type if event.type == "content_block_delta" else event.type for event in seen]
    pieces = len(ANSWER) // fa.CHUNK_CHARS + 1
    assert kinds == [
        "message_start",
        "content_block_start",
        "citations_delta",
        *["text_delta"] * pieces,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, block_start = seen[0], seen[1]
    assert start.type == "message_start" and start.message.usage.input_tokens == 7
    assert start.message.content == [] and start.message.stop_reason is None
    assert block_start.type == "content_block_start"
    assert block_start.content_block.to_dict() == {"type": "text", "text": "", "citations": []}


# ---------------------------------------------------------------------- tool use


def test_forced_tool_use(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script(fa.Message([fa.tool_use_block("record_answer", TOOL_INPUT, id="toolu_1")], stop_reason="tool_use"))

    reply = ask(client, tools=[RUNBOOK_TOOL], tool_choice={"type": "tool", "name": "record_answer"})

    [block] = reply.content
    assert isinstance(block, ToolUseBlock)
    assert (block.id, block.name, block.input) == ("toolu_1", "record_answer", TOOL_INPUT)
    assert reply.stop_reason == "tool_use"
    body = fake.last_request().body
    assert body["tool_choice"] == {"type": "tool", "name": "record_answer"}
    assert body["tools"] == [RUNBOOK_TOOL]


def test_forced_tool_use_streamed_as_json_pieces(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script(fa.Message([fa.tool_use_block("record_answer", TOOL_INPUT)], stop_reason="tool_use"))

    with client.messages.stream(
        model=MODEL,
        max_tokens=512,
        messages=QUESTION,
        tools=[RUNBOOK_TOOL],
        tool_choice={"type": "tool", "name": "record_answer"},
    ) as stream:
        partial = [event.partial_json for event in stream if event.type == "input_json"]
        final = stream.get_final_message()

    assert len(partial) > 1 and json.loads("".join(partial)) == TOOL_INPUT
    [block] = final.content
    assert isinstance(block, ToolUseBlock) and block.name == "record_answer" and block.input == TOOL_INPUT
    assert block.id.startswith("toolu_") and final.stop_reason == "tool_use"


# ---------------------------------------------------------------------- errors, retries, timeouts


def test_rate_limit_is_retried_after_retry_after_ms(fake: FakeAnthropic) -> None:
    fake.script(fa.Error(429, "rate_limit_error", retry_after_ms=1), cited_answer())

    started = time.monotonic()
    with anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url, max_retries=2) as sdk:
        reply = ask(sdk)
    elapsed = time.monotonic() - started

    assert_cited(reply.content[0])
    first, second = fake.message_requests()
    assert (first.headers["x-stainless-retry-count"], second.headers["x-stainless-retry-count"]) == ("0", "1")
    assert first.body == second.body
    assert elapsed < 0.3  # the SDK's own first backoff is at least 0.375 s


def test_overloaded_every_time_raises_after_the_retries(fake: FakeAnthropic) -> None:
    fake.set_responder(lambda body: fa.Error(529, "overloaded_error"))

    with (
        anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url, max_retries=1) as sdk,
        pytest.raises(anthropic.APIStatusError) as raised,
    ):
        ask(sdk)

    assert raised.value.status_code == 529 and isinstance(raised.value, anthropic.OverloadedError)
    assert raised.value.type == "overloaded_error" and raised.value.api_message == "Overloaded"
    assert raised.value.request_id is not None and raised.value.request_id.startswith("req_")
    assert len(fake.message_requests()) == 2


def test_hang_trips_the_client_timeout(fake: FakeAnthropic) -> None:
    fake.script(fa.Hang(2), cited_answer())

    started = time.monotonic()
    with anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url, timeout=0.3, max_retries=0) as sdk:
        with pytest.raises(anthropic.APITimeoutError):
            ask(sdk)
        assert time.monotonic() - started < 1.5
        assert_cited(ask(sdk).content[0])  # the hung handler gave up quietly; the next reply is served

    assert len(fake.message_requests()) == 2
    deadline = time.monotonic() + 1.0  # the hung handler noticed the client leave: it does not sleep out its 2 s
    while handler_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not handler_threads()


def test_hang_then_replies(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script(fa.Hang(0.2, then=cited_answer()))

    started = time.monotonic()
    reply = ask(client)

    assert time.monotonic() - started >= 0.2
    assert_cited(reply.content[0])


def test_wrong_key_is_an_authentication_error(fake: FakeAnthropic) -> None:
    fake.script(cited_answer())

    with (
        anthropic.Anthropic(api_key="sk-ant-wrong", base_url=fake.base_url, max_retries=2) as sdk,
        pytest.raises(anthropic.AuthenticationError) as raised,
    ):
        ask(sdk)

    assert raised.value.status_code == 401 and raised.value.type == "authentication_error"
    [request] = fake.requests  # recorded, not retried
    assert request.headers["authorization"] == "Bearer sk-ant-wrong"
    assert fake.pending == 1  # a rejected request consumes no scripted reply


def test_x_api_key_header_is_accepted_too(fake: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake.script(cited_answer())

    reply = ask(client, extra_headers={"Authorization": Omit(), "x-api-key": fake.api_key})

    assert_cited(reply.content[0])
    assert "authorization" not in fake.last_request().headers
    with pytest.raises(anthropic.AuthenticationError):
        ask(client, extra_headers={"Authorization": Omit(), "x-api-key": "sk-ant-wrong"})


def test_nothing_scripted_fails_at_once(fake: FakeAnthropic) -> None:
    started = time.monotonic()
    with (
        anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url, max_retries=2) as sdk,
        pytest.raises(anthropic.InternalServerError, match="no scripted reply"),
    ):
        ask(sdk)

    assert time.monotonic() - started < 0.3
    assert len(fake.requests) == 1  # x-should-retry: false stops the SDK retrying a test's own mistake


def test_requests_without_version_or_required_fields_are_rejected(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.script(cited_answer())

    with pytest.raises(anthropic.BadRequestError, match="anthropic-version"):
        ask(client, extra_headers={"anthropic-version": Omit()})
    with pytest.raises(anthropic.BadRequestError, match="model: Field required"):
        client.post("/v1/messages", cast_to=Message, body={"max_tokens": 5, "messages": QUESTION})
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        client.post("/v1/messages", cast_to=Message, body={"model": MODEL, "messages": QUESTION})
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        client.messages.create(model=MODEL, max_tokens=5, messages=[])
    with pytest.raises(anthropic.NotFoundError):
        client.models.list()

    assert len(fake.requests) == 5 and fake.message_requests()[0].headers.get("anthropic-version") is None
    assert fake.pending == 1


# ---------------------------------------------------------------------- scripting and configuration


def test_script_comes_before_the_responder_and_reset_clears_both(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    def echo(body: dict[str, Any]) -> fa.Reply:
        question = body["messages"][-1]["content"][-1]["text"]
        return fa.Message([fa.text_block(f"echo: {question}")])

    fake.set_responder(echo)
    fake.script(fa.Message([fa.text_block("scripted")]))

    texts = []
    for _ in range(3):
        block = ask(client).content[0]
        assert isinstance(block, TextBlock)
        texts.append(block.text)

    assert texts == ["scripted", "echo: How do I rotate keys?", "echo: How do I rotate keys?"]
    fake.reset()
    assert fake.requests == [] and fake.pending == 0
    with pytest.raises(anthropic.InternalServerError):
        ask(client)


def test_client_from_the_environment(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    fake.script(cited_answer())

    with anthropic.Anthropic(max_retries=0) as sdk:
        assert_cited(ask(sdk).content[0])

    assert fake.wait_for_requests(1)[0].headers["authorization"] == f"Bearer {fake.api_key}"


def test_stop_ends_a_hang_and_leaves_no_thread() -> None:
    fake = FakeAnthropic().start()
    fake.script(fa.Hang(30))
    errors: list[BaseException] = []

    def call() -> None:
        with anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url, timeout=10, max_retries=0) as sdk:
            try:
                ask(sdk)
            except anthropic.APIConnectionError as exc:
                errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    fake.wait_for_requests(1)
    started = time.monotonic()
    fake.stop()
    caller.join(timeout=5)

    assert time.monotonic() - started < 1.0
    assert not caller.is_alive() and len(errors) == 1
    assert not handler_threads() and not [t for t in threading.enumerate() if t.name == "fake-anthropic"]
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.base_url
    fake.stop()  # idempotent
