"""Loopback fakes of Slack for tests: the Web API (``slack_api``) and Slack's signed requests to an app
(``slack_requests``). Both speak real HTTP, so the real ``slack_sdk`` and ``slack_bolt`` run unmodified."""

from tests.fakes.slack_api import Call, FakeSlackApi, ScriptedFailure
from tests.fakes.slack_requests import BoltServer

__all__ = ["BoltServer", "Call", "FakeSlackApi", "ScriptedFailure"]
