"""Local fake of Slack-style incoming webhooks (Slack's /services/A/B/C; Mattermost's /hooks/ID speaks the same JSON)."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.server import Delivery, FakeServer, RecordedRequest, Reply

#: the top-level fields Slack documents for an incoming webhook's JSON payload (api.slack.com/messaging/webhooks,
#: chat.postMessage's arguments a webhook accepts); Mattermost documents the same names for its incoming webhooks
_FIELDS = {
    "text": str, "blocks": list, "attachments": list, "username": str, "icon_url": str, "icon_emoji": str,
    "channel": str, "mrkdwn": bool, "thread_ts": str, "unfurl_links": bool, "unfurl_media": bool,
    "props": dict, "type": str, "priority": dict,
}
#: Slack's answers to a webhook that cannot post, as plain text with the status it documents
_REFUSALS = {404: "no_service", 403: "invalid_token", 410: "channel_is_archived", 400: "invalid_payload"}


class SlackWebhookFake(FakeServer):
    """Incoming webhooks on 127.0.0.1: each hook path is one chat. ``refused[path] = status`` makes a hook refuse
    (404 no_service, 410 channel_is_archived, …) as Slack does; ``deliveries`` records each accepted post, its
    recipient being the hook's path.

    Slack publishes no OpenAPI document for incoming webhooks, so the payload is checked here against the fields
    Slack documents: a JSON object, ``text`` or ``blocks``/``attachments`` present, each field of its type.
    """

    provider = "slack"

    def __init__(self, **options: Any) -> None:
        self.refused: dict[str, int] = {}
        super().__init__(validate=False, **options)

    def slack_url(self, chat: str) -> str:
        """An Apprise slack:// URL whose webhook path is /services/T<chat>/B<chat>/<token>, here."""
        return f"slack://T{chat.upper()}0001/B{chat.upper()}0002/secret{chat}token0003"

    @staticmethod
    def slack_path(chat: str) -> str:
        return f"/services/T{chat.upper()}0001/B{chat.upper()}0002/secret{chat}token0003"

    def mattermost_url(self, hook: str) -> str:
        """An Apprise mmost:// URL for a Mattermost incoming webhook /hooks/<hook> on this server."""
        return f"mmost://127.0.0.1:{self.url.rsplit(':', 1)[1]}/{hook}"

    def authorized(self, request: RecordedRequest) -> bool:
        return True  # the token is the path itself

    def unauthorized_reply(self) -> Reply:
        return self.error_reply(403, "invalid_token")

    def error_reply(self, status: int, message: str, code: int | None = None) -> Reply:
        word = _REFUSALS.get(status, message.lower().replace(" ", "_"))
        return Reply(status, word.encode(), content_type="text/plain; charset=utf-8")

    def route(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or not (request.path.startswith("/services/") or request.path.startswith("/hooks/")):
            return self.error_reply(404, "no_service")
        if request.path in self.refused:
            return self.error_reply(self.refused[request.path], "")
        problems = payload_problems(request.raw)
        if problems:
            self.invalid.append(_invalid(request, problems))
            return self.error_reply(400, "invalid_payload")
        payload = json.loads(request.raw)
        self.deliveries.append(Delivery(request.path, payload))
        return Reply(200, b"ok", content_type="text/plain; charset=utf-8")


def payload_problems(raw: bytes) -> list[str]:
    """What Slack would refuse in a webhook body; [] when it would post it."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return ["body is not JSON"]
    if not isinstance(payload, dict):
        return ["body is not a JSON object"]
    problems = [f"unknown field {name!r}" for name in payload if name not in _FIELDS]
    problems += [
        f"{name} must be {kind.__name__}" for name, kind in _FIELDS.items() if name in payload and not isinstance(payload[name], kind)
    ]
    if not payload.get("text") and not payload.get("blocks") and not payload.get("attachments"):
        problems.append("no text, blocks or attachments: nothing to post")
    return problems


def _invalid(request: RecordedRequest, problems: list[str]) -> Any:
    from tests.fakes.server import InvalidRequest

    return InvalidRequest(request.method, request.path, tuple(problems))


def point_apprise_at(monkeypatch: Any, fake: SlackWebhookFake) -> None:
    """Send Apprise's slack:// webhooks to ``fake``: Slack's plugin posts to the fixed hooks.slack.com address, its
    class attribute ``webhook_url``, which no Apprise URL can change."""
    from apprise.plugins.slack import NotifySlack

    monkeypatch.setattr(NotifySlack, "webhook_url", f"{fake.url}/services")


_shared: SlackWebhookFake | None = None


def shared_receiver() -> SlackWebhookFake:
    """One receiver for the whole test process, started on first use, for tests that send on every channel but
    look only at others; a test about team chat starts its own."""
    global _shared
    if _shared is None:
        _shared = SlackWebhookFake()
    return _shared
