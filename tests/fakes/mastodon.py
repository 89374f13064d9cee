"""Local fake of a Mastodon instance: the instance entity, posting statuses (Idempotency-Key, threads), deleting."""

from __future__ import annotations

import hmac
import itertools
import re
from datetime import UTC, datetime
from typing import Any

from tests.fakes.server import Delivery, FakeServer, Faults, InvalidRequest, RecordedRequest, Reply

MASTODON_ACCESS_TOKEN = "fake-mastodon-secret-access-token-0123"
#: POST /api/v1/statuses form parameters (docs.joinmastodon.org/methods/statuses/#create)
STATUS_PARAMS = {
    "status", "media_ids[]", "poll[options][]", "poll[expires_in]", "poll[multiple]", "poll[hide_totals]",
    "in_reply_to_id", "sensitive", "spoiler_text", "visibility", "language", "scheduled_at", "quoted_status_id",
    "quote_approval_policy",
}
VISIBILITIES = {"public", "unlisted", "private", "direct"}
_STATUS = re.compile(r"/api/v1/statuses/([0-9]+)")
_URL = re.compile(r"https?://\S+")
#: the Status entity's attributes (docs.joinmastodon.org/entities/Status/), each filled below
STATUS_FIELDS = (
    "id", "uri", "created_at", "account", "content", "visibility", "sensitive", "spoiler_text", "media_attachments",
    "application", "mentions", "tags", "emojis", "reblogs_count", "favourites_count", "replies_count", "url",
    "in_reply_to_id", "in_reply_to_account_id", "reblog", "poll", "card", "language", "text", "edited_at",
)


class MastodonFake(FakeServer):
    """A Mastodon instance with one account: statuses within ``max_characters`` (links count 23), threads by
    in_reply_to_id, and Idempotency-Key: a repeat of a key returns the status it created, as Mastodon does for an hour.

    Mastodon publishes no OpenAPI document, so requests are checked here against its documented parameters.
    """

    provider = "mastodon"

    def __init__(self, *, access_token: str = MASTODON_ACCESS_TOKEN, max_characters: int = 500,
                 latency: float = 0.0, faults: Faults | None = None) -> None:
        self.access_token = access_token
        self.max_characters = max_characters
        self.statuses: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.deleted: list[str] = []
        self._ids = itertools.count(110_000_000_000_000_001)
        super().__init__(validate=False, latency=latency, faults=faults)

    def _reset_state(self) -> None:
        self.statuses.clear()
        self.keys.clear()

    def authorized(self, request: RecordedRequest) -> bool:
        if request.path.rstrip("/") == "/api/v2/instance":
            return True  # public
        header = request.headers.get("authorization", "")
        return header.startswith("Bearer ") and hmac.compare_digest(header[len("Bearer "):], self.access_token)

    def unauthorized_reply(self) -> Reply:
        return Reply(401, {"error": "The access token is invalid"})

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply(status, {"error": message})

    def route(self, request: RecordedRequest) -> Reply:
        if request.path.rstrip("/") == "/api/v2/instance" and request.method == "GET":
            return Reply(200, self._instance())
        if request.path == "/api/v1/statuses" and request.method == "POST":
            return self._create(request)
        found = _STATUS.fullmatch(request.path)
        if found and request.method == "DELETE":
            if found[1] not in self.statuses:
                return self.error_reply(404, "Record not found")
            self.deleted.append(found[1])
            return Reply(200, self.statuses.pop(found[1]))
        return self.error_reply(404, "Not Found")

    def _invalid(self, request: RecordedRequest, *errors: str) -> None:
        self.invalid.append(InvalidRequest(request.method, request.path, errors))

    def _create(self, request: RecordedRequest) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        unknown = sorted(set(body) - STATUS_PARAMS)
        if unknown:
            self._invalid(request, f"parameters Mastodon does not document: {unknown}")
        key = request.headers.get("idempotency-key")
        if key and key in self.keys and self.keys[key] in self.statuses:
            return Reply(200, self.statuses[self.keys[key]])  # the status this key created, not a second one
        text = str(body.get("status", ""))
        if not text.strip():
            return self.error_reply(422, "Validation failed: Text can't be blank")
        length = len(_URL.sub("x" * 23, text))
        if length > self.max_characters:
            return self.error_reply(422, f"Validation failed: Text character limit of {self.max_characters} exceeded")
        visibility = body.get("visibility", "public")
        language = body.get("language")
        parent = body.get("in_reply_to_id")
        if visibility not in VISIBILITIES:
            self._invalid(request, f"visibility {visibility!r} is not one of {sorted(VISIBILITIES)}")
        if language is not None and not re.fullmatch(r"[a-z]{2,3}", str(language)):
            self._invalid(request, f"language {language!r} is not an ISO 639 code")
        if parent is not None and parent not in self.statuses:
            return self.error_reply(404, "Record not found")
        status_id = str(next(self._ids))
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        status = {
            "id": status_id, "uri": f"https://mastodon.example/users/lakeside/statuses/{status_id}", "created_at": now,
            "account": {"id": "1", "username": "lakeside", "acct": "lakeside", "display_name": "Lakeside Water"},
            "content": f"<p>{text}</p>", "visibility": visibility, "sensitive": False, "spoiler_text": "",
            "media_attachments": [], "application": {"name": "broadcast", "website": None}, "mentions": [], "tags": [],
            "emojis": [], "reblogs_count": 0, "favourites_count": 0, "replies_count": 0,
            "url": f"https://mastodon.example/@lakeside/{status_id}", "in_reply_to_id": parent,
            "in_reply_to_account_id": "1" if parent else None, "reblog": None, "poll": None, "card": None,
            "language": language, "text": None, "edited_at": None,
        }
        self.statuses[status_id] = status
        if key:
            self.keys[key] = status_id
        self.deliveries.append(Delivery(text, {"id": status_id, "in_reply_to_id": parent, "language": language,
                                               "visibility": visibility, "idempotency_key": key}))
        return Reply(200, status)

    def _instance(self) -> dict[str, Any]:
        """The Instance entity (v2) with the fields a client reads for posting limits."""
        return {
            "domain": "mastodon.example", "title": "Mastodon example", "version": "4.3.0", "source_url":
            "https://github.com/mastodon/mastodon", "description": "", "usage": {"users": {"active_month": 1}},
            "thumbnail": {"url": "https://mastodon.example/thumb.png"}, "languages": ["en"],
            "configuration": {
                "urls": {"streaming": "wss://mastodon.example"},
                "accounts": {"max_featured_tags": 10},
                "statuses": {"max_characters": self.max_characters, "max_media_attachments": 4,
                             "characters_reserved_per_url": 23},
                "media_attachments": {}, "polls": {}, "translation": {"enabled": False},
            },
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            "contact": {"email": "", "account": None}, "rules": [],
        }
