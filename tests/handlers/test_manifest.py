"""manifest.yml is a valid Slack app manifest and agrees with what the app registers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import SecretStr
from slack_bolt.request import BoltRequest

from bot.app import create_app
from bot.services import KnowledgeService
from handlers import ids
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_requests import event_callback, message_shortcut, sign, slash_command

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "slack" / "app-manifest.schema.json"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8")))


def test_manifest_is_valid_against_the_schema(manifest: dict[str, Any]) -> None:
    if not SCHEMA.exists():
        pytest.skip(f"no schema at {SCHEMA}")
    jsonschema.validate(manifest, json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_manifest_names_what_the_code_uses(manifest: dict[str, Any]) -> None:
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [ids.COMMAND]
    assert {s["callback_id"] for s in manifest["features"]["shortcuts"]} == {s.value for s in ids.Shortcut}
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == {"commands", "chat:write", "channels:history", "groups:history", "usergroups:read",
                      "app_mentions:read", "im:history", "reactions:read"}
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert events == {"app_home_opened", "app_mention", "message.channels", "message.groups", "message.im",
                      "reaction_added"}


def test_everything_in_the_manifest_is_handled_by_the_app(manifest: dict[str, Any],
                                                          sql_service: KnowledgeService) -> None:
    """A request Bolt has no listener for gets a 404: each command, shortcut and event must get a 200."""
    with FakeSlackApi() as fake:
        fake.set_thread("C1", "1700000000.000100", [{"user": "U2", "ts": "1700000000.000100", "text": "hi"}])
        settings = sql_service.settings.model_copy(update={
            "slack_api_url": fake.api_url, "slack_bot_token": SecretStr("xoxb-test")})
        app = create_app(settings, sql_service)

        def dispatch(body: str) -> int:
            headers = {k.lower(): [v] for k, v in sign(body, "unused").items()}
            return app.dispatch(BoltRequest(body=body, headers=headers)).status

        for entry in manifest["features"]["slash_commands"]:
            assert dispatch(slash_command("help", command=entry["command"])) == 200, entry
        for entry in manifest["features"]["shortcuts"]:
            body = message_shortcut(entry["callback_id"], channel_id="C1", message_ts="1700000000.000100")
            assert dispatch(body) == 200, entry
        for event_type in manifest["settings"]["event_subscriptions"]["bot_events"]:
            # message.channels/groups/im arrive as `message` events with that channel_type
            kind, _, channel_type = event_type.partition(".")
            event = {"type": kind, "user": "U1", "tab": "home", "channel": "D1", "event_ts": "1.0", "ts": "1.0",
                     "text": "", "channel_type": {"channels": "channel", "groups": "group"}.get(
                         channel_type, channel_type), "reaction": "thumbsup", "item": {"type": "message"}}
            assert dispatch(event_callback(event, event_id=f"Ev{event_type}")) == 200, event_type
        assert dispatch(slash_command("help", command="/not-ours")) == 404
