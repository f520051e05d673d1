"""Turn errors into messages a user can act on; never show a traceback in Slack."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import sentry_sdk
from slack_bolt import BoltResponse
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from store.errors import KbError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def user_message(error: BaseException) -> str:
    """The message for the user; unexpected errors get an id to quote, and go to Sentry and the log."""
    if isinstance(error, KbError):
        return f":warning: {error}"
    error_id = uuid.uuid4().hex[:8]
    sentry_sdk.set_tag("error_id", error_id)
    sentry_sdk.capture_exception(error)
    log.error("unexpected error %s", error_id, exc_info=error)
    return f":boom: Something went wrong on our side (error id `{error_id}`). Nothing you sent was lost; try again."


def reports_errors(listener: F) -> F:
    """For lazy listeners: the ack has gone already, so a failure is told through `respond`."""

    @functools.wraps(listener)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return listener(*args, **kwargs)
        except Exception as exc:  # every failure must reach the user, once
            respond = kwargs.get("respond")
            message = user_message(exc)
            if respond is not None:
                respond(text=message, response_type="ephemeral", replace_original=False)
            else:
                log.warning("no way to tell the user: %s", message)
            return None

    return wrapper  # type: ignore[return-value]


def global_error_handler(error: Exception, body: dict[str, Any], respond: Any) -> BoltResponse:
    """Bolt's @app.error: for failures in ack functions and middleware."""
    message = user_message(error)
    if body.get("response_url") and respond is not None:
        respond(text=message, response_type="ephemeral", replace_original=False)
    return BoltResponse(status=200, body="" if body.get("response_url") else message)


SLACK_UNREACHABLE = (":warning: kb-bot can't reach Slack's API just now, so it did not run your command. Nothing was "
                     "changed: try again in a minute. If it persists, tell the team that runs the bot.")
AUTH_TEST_TIMEOUT = 2  # seconds: Slack waits 3 for the whole response


class SlackApiGate:
    """Bolt's ``before_authorize`` middleware. Bolt authorizes the first request with ``auth.test`` and remembers
    the answer; while Slack's Web API can't be reached, that call raised: a generic error for the user at best, HTTP
    500 for events. Here a command gets the reason and an event HTTP 503 (Slack sends it again); once ``auth.test``
    has answered, requests pass straight through."""

    def __init__(self) -> None:
        self.reached = False

    def __call__(self, req: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse:
        if self.reached:
            return next()
        client = req.context.client
        if client is not None and client.token:
            probe = WebClient(token=client.token, base_url=client.base_url, timeout=AUTH_TEST_TIMEOUT)
            try:
                probe.auth_test()
            except SlackApiError:  # reachable, but the token is refused: Bolt's authorization says so
                pass
            except Exception as exc:  # URLError, timeouts, refused connections: the API is out of reach
                log.warning("Slack's Web API is unreachable (%s: %s)", type(exc).__name__, exc)
                if req.body.get("command"):
                    return BoltResponse(status=200, body=SLACK_UNREACHABLE)
                return BoltResponse(status=503, body="Slack's Web API is unreachable from kb-bot; retry later.")
        self.reached = True
        return next()
