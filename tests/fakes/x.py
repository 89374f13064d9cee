"""Local fake of X's API v2 post creation (POST /2/tweets), plus the requests adapter that points tweepy at it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import requests
from oauthlib.oauth1.rfc5849 import signature
from oauthlib.oauth1.rfc5849.utils import escape, parse_authorization_header, unescape
from requests.adapters import HTTPAdapter
from twitter_text import parse_tweet

from tests.fakes import credentials
from tests.fakes.server import Delivery, FakeServer, Faults, RecordedRequest, Reply

MAX_WEIGHTED_LENGTH = 280
# Hosts a client may have signed an OAuth 1.0a request for before it was redirected here.
SIGNED_HOSTS = ("https://api.twitter.com", "https://api.x.com")
_PROBLEM = "application/problem+json"


class XFake(FakeServer):
    """X post creation: OAuth 1.0a (signature checked) or bearer auth, weighted length, threads, duplicate refusal.

    X has no recipients, so a delivery is keyed by the post's text; the real API refuses a repeat
    with 403, which is how a sender learns that a post whose answer it lost did go out.
    """

    provider = "x"

    def __init__(
        self,
        *,
        consumer_key: str = credentials.X_CONSUMER_KEY,
        consumer_secret: str = credentials.X_CONSUMER_SECRET,
        access_token: str = credentials.X_ACCESS_TOKEN,
        access_token_secret: str = credentials.X_ACCESS_TOKEN_SECRET,
        bearer_token: str = credentials.X_BEARER_TOKEN,
        validate: bool = True,
        latency: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.access_token = access_token
        self.access_token_secret = access_token_secret
        self.bearer_token = bearer_token
        self.tweets: dict[str, dict[str, Any]] = {}  # id -> {"id", "text", "in_reply_to_tweet_id"}
        self._ids = itertools.count(1_800_000_000_000_000_001)  # snowflake-sized, 19 digits
        super().__init__(validate=validate, latency=latency, faults=faults)

    def _reset_state(self) -> None:
        self.tweets.clear()

    def authorized(self, request: RecordedRequest) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return hmac.compare_digest(header[len("Bearer ") :], self.bearer_token)
        return self._oauth1_valid(request, header)

    def _oauth1_valid(self, request: RecordedRequest, header: str) -> bool:
        try:
            params = dict(parse_authorization_header(header))
        except ValueError:
            return False
        if params.get("oauth_consumer_key") != self.consumer_key or params.get("oauth_token") != self.access_token:
            return False
        # RFC 5849 signs the query and oauth_* values; a JSON body is not signed.
        collected = signature.collect_parameters(uri_query=urlencode(request.query), headers={"Authorization": header})
        normalized = signature.normalize_parameters(collected)
        key = f"{escape(self.consumer_secret)}&{escape(self.access_token_secret)}".encode()
        sent = unescape(params.get("oauth_signature", ""))
        for host in (*SIGNED_HOSTS, self.url):
            base = signature.signature_base_string(
                request.method, signature.base_string_uri(host + request.path), normalized
            )
            expected = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()
            if hmac.compare_digest(expected, sent):
                return True
        return False

    def unauthorized_reply(self) -> Reply:
        return self.error_reply(401, "Unauthorized")

    def error_reply(self, status: int, message: str) -> Reply:
        title = "Invalid Request" if status == 400 else HTTPStatus(status).phrase
        return Reply(
            status, {"title": title, "type": "about:blank", "status": status, "detail": message}, content_type=_PROBLEM
        )

    def invalid_reply(self, errors: list[str]) -> Reply:
        return Reply(
            400,
            {
                "errors": [{"parameters": {}, "message": error} for error in errors],
                "title": "Invalid Request",
                "detail": "One or more parameters to your request was invalid.",
                "type": "https://api.twitter.com/2/problems/invalid-request",
            },
            content_type=_PROBLEM,
        )

    def rate_limit_headers(self, retry_after: int) -> dict[str, str]:
        return {
            "Retry-After": str(retry_after),
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(int(time.time()) + retry_after),
        }

    def route(self, request: RecordedRequest) -> Reply:
        if request.path != "/2/tweets":
            return self.error_reply(404, f"Could not find {request.path}")
        if request.method != "POST":
            return self.error_reply(405, "Method Not Allowed")
        post = request.body if isinstance(request.body, dict) else {}
        text = post.get("text")
        if not isinstance(text, str) or not text.strip():
            return self.invalid_reply(["The `text` field is required and must not be empty when no media is attached."])
        weighted = parse_tweet(text).weightedLength
        if weighted > MAX_WEIGHTED_LENGTH:
            return self.invalid_reply(
                [
                    "Your Tweet text is too long. For more information on how Twitter determines text length "
                    f"see https://github.com/twitter/twitter-text. ({weighted} weighted characters, at most "
                    f"{MAX_WEIGHTED_LENGTH})"
                ]
            )
        parent = (post.get("reply") or {}).get("in_reply_to_tweet_id")
        if parent is not None and parent not in self.tweets:
            return self.error_reply(403, "You attempted to reply to a Tweet that is deleted or not visible to you.")
        if any(tweet["text"] == text for tweet in self.tweets.values()):
            return self.error_reply(403, "You are not allowed to create a Tweet with duplicate content.")

        tweet_id = str(next(self._ids))
        self.tweets[tweet_id] = {"id": tweet_id, "text": text, "in_reply_to_tweet_id": parent}
        auth = "bearer" if request.headers.get("authorization", "").startswith("Bearer ") else "oauth1"
        self.deliveries.append(Delivery(text, {"id": tweet_id, "in_reply_to_tweet_id": parent, "auth": auth}))
        return Reply(201, {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}})


class RedirectAdapter(HTTPAdapter):
    """Send requests for ``https://api.twitter.com`` to a local fake; tweepy.Client hard-codes that host.

    ``timeout`` applies when the caller gives none: tweepy never does, so without it a simulated
    timeout would hang the client for as long as the fake holds the answer.
    """

    def __init__(self, base_url: str, *, prefix: str = "https://api.twitter.com", timeout: float | None = None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        request.url = self.base_url + request.url[len(self.prefix) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def point_tweepy_at(session: requests.Session, base_url: str, *, timeout: float | None = None) -> None:
    """Mount a RedirectAdapter on a tweepy client's ``session`` so every call goes to ``base_url``."""
    session.mount("https://api.twitter.com", RedirectAdapter(base_url, timeout=timeout))
