"""Local fake of X's API v2 posting and own-timeline look-up, plus the requests adapter that points tweepy at it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import itertools
import re
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import requests
from oauthlib.oauth1.rfc5849 import signature
from oauthlib.oauth1.rfc5849.utils import escape, parse_authorization_header, unescape
from requests.adapters import HTTPAdapter
from twitter_text import extract_urls_with_indices, parse_tweet

from tests.fakes import credentials
from tests.fakes.server import Delivery, FakeServer, Faults, RecordedRequest, Reply

MAX_WEIGHTED_LENGTH = 280
# Hosts a client may have signed an OAuth 1.0a request for before it was redirected here.
SIGNED_HOSTS = ("https://api.twitter.com", "https://api.x.com")
_PROBLEM = "application/problem+json"
_USER_POSTS = re.compile(r"/2/users/([^/]+)/tweets")
_POST = re.compile(r"/2/tweets/([0-9]{1,19})")
#: post.fields this fake fills, of those the spec lets a timeline ask for (its enum has no referenced_tweets;
#: tweepy's tweet_fields sends a tweet.fields parameter, which the spec does not list for these paths)
_POST_FIELDS = ("conversation_id", "created_at")


class XFake(FakeServer):
    """X post creation: OAuth 1.0a (signature checked) or bearer auth, weighted length, threads, duplicate refusal.

    X has no recipients, so a delivery is keyed by the post's text; the real API refuses a repeat
    with 403, which is how a sender learns that a post whose answer it lost did go out. The account's
    own timeline (GET /2/users/me, GET /2/users/:id/tweets) is how it then learns that post's id.
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
        # an X access token starts with its user's id ("1234567890-…"); both kinds of auth act as that one account
        prefix = access_token.partition("-")[0]
        self.user_id = prefix if prefix.isdigit() else "1234567890"
        # id -> {"id", "text", "in_reply_to_tweet_id", "conversation_id", "created_at"}, oldest first
        self.tweets: dict[str, dict[str, Any]] = {}
        #: ids of posts deleted through DELETE /2/tweets/{id}, in order
        self.deleted: list[str] = []
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
        if request.path == "/2/tweets":
            return self._create(request) if request.method == "POST" else self.error_reply(405, "Method Not Allowed")
        if request.path == "/2/users/me":
            return self._me() if request.method == "GET" else self.error_reply(405, "Method Not Allowed")
        post = _POST.fullmatch(request.path)
        if post:
            return self._delete(post[1]) if request.method == "DELETE" else self.error_reply(405, "Method Not Allowed")
        timeline = _USER_POSTS.fullmatch(request.path)
        if timeline:
            if request.method != "GET":
                return self.error_reply(405, "Method Not Allowed")
            return self._timeline(timeline[1], request.query)
        return self.error_reply(404, f"Could not find {request.path}")

    def _create(self, request: RecordedRequest) -> Reply:
        post = request.body if isinstance(request.body, dict) else {}
        text = post.get("text")
        if not isinstance(text, str) or not text.strip():
            return self.invalid_reply(["The `text` field is required and must not be empty when no media is attached."])
        weighted = parse_tweet(text).weightedLength
        if weighted > MAX_WEIGHTED_LENGTH:
            return self.invalid_reply(
                [
                    (
                        "Your Tweet text is too long. For more information on how Twitter determines text length "
                        f"see https://github.com/twitter/twitter-text. ({weighted} weighted characters, at most "
                        f"{MAX_WEIGHTED_LENGTH})"
                    )
                ]
            )
        parent = (post.get("reply") or {}).get("in_reply_to_tweet_id")
        if parent is not None and parent not in self.tweets:
            return self.error_reply(403, "You attempted to reply to a Tweet that is deleted or not visible to you.")
        if any(tweet["text"] == text for tweet in self.tweets.values()):
            return self.error_reply(403, "You are not allowed to create a Tweet with duplicate content.")

        tweet_id = str(next(self._ids))
        self.tweets[tweet_id] = {
            "id": tweet_id,
            "text": text,
            "in_reply_to_tweet_id": parent,
            "conversation_id": self.tweets[parent]["conversation_id"] if parent else tweet_id,
            "created_at": datetime.now(UTC),
        }
        auth = "bearer" if request.headers.get("authorization", "").startswith("Bearer ") else "oauth1"
        self.deliveries.append(Delivery(text, {"id": tweet_id, "in_reply_to_tweet_id": parent, "auth": auth}))
        return Reply(201, {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}})

    def _delete(self, tweet_id: str) -> Reply:
        """DELETE /2/tweets/{id}: the account's own post is gone; one that is not there is a 404, as on X."""
        if tweet_id not in self.tweets:
            return self.error_reply(404, f"Could not find tweet with id: [{tweet_id}].")
        del self.tweets[tweet_id]
        self.deleted.append(tweet_id)
        return Reply(200, {"data": {"deleted": True}})

    def _me(self) -> Reply:
        # X's default user fields; more only when user.fields asks
        return Reply(200, {"data": {"id": self.user_id, "name": "Lakeside Water", "username": "lakeside_water"}})

    def _timeline(self, user_id: str, query: dict[str, str]) -> Reply:
        """The account's posts, newest first, a page at a time; the spec has already checked each parameter's shape."""
        if user_id != self.user_id:
            # X answers 200 with an error entry for a user it does not know; this fake knows one account
            return Reply(
                200,
                {
                    "errors": [
                        {
                            "value": user_id, "detail": f"Could not find user with id: [{user_id}].",
                            "title": "Not Found Error", "resource_type": "user", "parameter": "id",
                            "resource_id": user_id, "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    ]
                },
            )
        posts = list(reversed(self.tweets.values()))  # ids grow with time, as X's snowflake ids do
        try:
            bounds = _id_bounds(query)
            window = _time_window(query)
        except ValueError as exc:
            return self.invalid_reply([str(exc)])
        posts = [p for p in posts if bounds[0] < int(p["id"]) < bounds[1]]
        posts = [p for p in posts if window[0] <= p["created_at"].replace(microsecond=0) <= window[1]]
        if "replies" in query.get("exclude", "").split(","):
            posts = [p for p in posts if p["in_reply_to_tweet_id"] is None]
        size = int(query.get("max_results", "10"))
        page, more = posts[:size], len(posts) > size
        fields = set(query.get("post.fields", "").split(","))
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta.update(newest_id=page[0]["id"], oldest_id=page[-1]["id"])
        if more:
            meta["next_token"] = _token(page[-1]["id"])
        body: dict[str, Any] = {"meta": meta}
        if page:
            body["data"] = [self._view(post, fields) for post in page]
        return Reply(200, body)

    def _view(self, post: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        """A post as X shows it: the default fields, then those asked for."""
        view: dict[str, Any] = {"id": post["id"], "text": _shown(post["text"]), "edit_history_tweet_ids": [post["id"]]}
        extra = {
            "conversation_id": post["conversation_id"],
            "created_at": post["created_at"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        view.update({name: extra[name] for name in _POST_FIELDS if name in fields})
        return view


def _shown(text: str) -> str:
    """Post text as X's timelines return it: every link it recognises as a t.co link, then &, < and > escaped."""
    for url in reversed(extract_urls_with_indices(text)):
        start, end = url["indices"]
        text = text[:start] + "https://t.co/" + hashlib.sha1(url["url"].encode()).hexdigest()[:10] + text[end:]
    return html.escape(text, quote=False)


def _id_bounds(query: dict[str, str]) -> tuple[int, int]:
    """Exclusive (lowest, highest) post ids from since_id, until_id and a pagination token."""
    low = int(query.get("since_id", "0"))
    high = int(query.get("until_id", str(10**19)))
    if "pagination_token" in query:
        high = min(high, _untoken(query["pagination_token"]))
    return low, high


def _time_window(query: dict[str, str]) -> tuple[datetime, datetime]:
    """Inclusive (start, end) from start_time and end_time, to the second as X counts them."""
    start = datetime.fromisoformat(query["start_time"]) if "start_time" in query else datetime.min.replace(tzinfo=UTC)
    end = datetime.fromisoformat(query["end_time"]) if "end_time" in query else datetime.max.replace(tzinfo=UTC)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start_time and end_time must be UTC timestamps like 2026-01-31T12:00:00Z")
    return start, end


def _token(post_id: str) -> str:
    """A next_token: base32hex, as the spec describes X's, of the oldest id on the page."""
    return base64.b32hexencode(post_id.encode()).decode().rstrip("=").lower()


def _untoken(token: str) -> int:
    try:
        return int(base64.b32hexdecode(token.upper() + "=" * (-len(token) % 8)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError(f"The `pagination_token` query parameter value [{token}] is not valid") from None


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
