"""Claude through the anthropic SDK: one client per process, the SDK's own retries and timeouts, and what each
call cost written onto the task step that made it. Any failure that survives the retries becomes
``LlmUnavailable``, which every role answers with its deterministic fallback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import anthropic
from anthropic.types import (
    Message,
    MessageParam,
    TextBlockParam,
    ToolChoiceParam,
    ToolChoiceToolParam,
    ToolParam,
    ToolUseBlock,
    UserMessageParam,
)
from pydantic import BaseModel

from bot.config import Settings
from bot.roles.registry import RoleSpec

log = logging.getLogger(__name__)
Report = TypeVar("Report", bound=BaseModel)


class LlmUnavailable(Exception):
    """Claude could not be reached or refused the call after the SDK's retries."""


class Claude:
    def __init__(self, settings: Settings) -> None:
        if settings.anthropic_api_key is None:
            raise ValueError("Claude needs ANTHROPIC_API_KEY")
        self.settings = settings
        self.client = anthropic.Anthropic(
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            max_retries=settings.llm_max_retries,
            timeout=settings.llm_timeout_seconds,
        )

    def close(self) -> None:
        self.client.close()

    def _params(self, role: RoleSpec, system: str, messages: Iterable[MessageParam],
                tools: list[ToolParam] | None, tool_choice: ToolChoiceParam | None) -> dict[str, Any]:
        model = role.model(self.settings)
        if model is None:
            raise LlmUnavailable(f"the {role.name} role uses no language model")
        params: dict[str, Any] = {
            "model": model, "max_tokens": role.max_tokens, "messages": list(messages),
            # The system prompt is a fixed instruction of ours: untrusted text only ever goes in user turns.
            "system": [TextBlockParam(type="text", text=system)],
            "timeout": role.timeout(self.settings),
        }
        if tools:
            params["tools"] = tools
        if tool_choice:
            params["tool_choice"] = tool_choice
        return params

    def create(self, role: RoleSpec, *, system: str, messages: Iterable[MessageParam], record: dict[str, Any],
               tools: list[ToolParam] | None = None, tool_choice: ToolChoiceParam | None = None) -> Message:
        params = self._params(role, system, messages, tools, tool_choice)
        started = time.perf_counter()
        try:
            message: Message = self.client.messages.create(**params)
        except anthropic.APIError as exc:
            raise self._unavailable(exc, record, started) from exc
        _record(record, message, started)
        return message

    def use_tool(self, role: RoleSpec, *, system: str, content: str, record: dict[str, Any], tool: str,
                 description: str, report: type[Report]) -> Report:
        """One user turn, answered by a call of the one tool offered (forced), whose input is ``report``'s JSON
        schema; its input validated. Raises ``ValueError`` (no such call) or pydantic's ``ValidationError``."""
        message = self.create(
            role, system=system, record=record,
            messages=[UserMessageParam(role="user", content=[TextBlockParam(type="text", text=content)])],
            tools=[ToolParam(name=tool, description=description, input_schema=report.model_json_schema())],
            tool_choice=ToolChoiceToolParam(type="tool", name=tool),
        )
        call = next((b for b in message.content if isinstance(b, ToolUseBlock) and b.name == tool), None)
        if call is None:
            raise ValueError(f"no {tool} tool call")
        return report.model_validate(call.input)

    def stream(self, role: RoleSpec, *, system: str, messages: Iterable[MessageParam], record: dict[str, Any],
               on_event: Callable[[Any], None]) -> Message:
        """Stream a reply, handing each SDK stream event (text, citation, ...) to ``on_event`` as it arrives."""
        params = self._params(role, system, messages, None, None)
        started = time.perf_counter()
        try:
            with self.client.messages.stream(**params) as stream:
                for event in stream:
                    on_event(event)
                message = stream.get_final_message()
        except anthropic.APIError as exc:
            raise self._unavailable(exc, record, started) from exc
        _record(record, message, started)
        return message

    def _unavailable(self, exc: anthropic.APIError, record: dict[str, Any], started: float) -> LlmUnavailable:
        status = getattr(exc, "status_code", None)
        reason = f"{type(exc).__name__}" + (f" {status}" if status else "")
        record.update(llm_error=reason, llm_ms=round((time.perf_counter() - started) * 1000, 1))
        # Authentication and bad requests are our configuration's fault: louder than an overload.
        level = logging.ERROR if isinstance(exc, anthropic.AuthenticationError | anthropic.BadRequestError) \
            else logging.WARNING
        log.log(level, "Claude unavailable after retries: %s", reason)
        return LlmUnavailable(reason)


def _record(record: dict[str, Any], message: Message, started: float) -> None:
    record.update(model=message.model, input_tokens=message.usage.input_tokens,
                  output_tokens=message.usage.output_tokens, stop_reason=message.stop_reason,
                  llm_ms=round((time.perf_counter() - started) * 1000, 1))


def make_claude(settings: Settings) -> Claude | None:
    """Claude when ANTHROPIC_API_KEY is set; otherwise None, and every role runs its fallback."""
    return Claude(settings) if settings.llm_enabled else None
