"""The social channel: one notice language as one X post or a numbered thread, through tweepy's API v2 client."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests
import tweepy
from requests.adapters import HTTPAdapter
from twitter_text import parse_tweet
from urllib3.exceptions import NewConnectionError

from broadcast.channels.base import Channel, Message, Receipt, Status
from broadcast.config import HIDDEN, SocialSettings, mask
from broadcast.errors import ChannelError, ConfigError

#: the host tweepy.Client hard-codes for every request
X_HOST = "https://api.twitter.com"
MAX_WEIGHTED_LENGTH = 280
TIMEOUT = 30.0

_OAUTH1_HINT = (
    "check X_CONSUMER_KEY, X_CONSUMER_SECRET, X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET, and that the X app has "
    "Read and Write permission (regenerate the access token after changing it)"
)
_BEARER_HINT = (
    "X_BEARER_TOKEN must be an OAuth 2.0 user access token with the tweet.write scope, not the app-only bearer "
    "token; user tokens expire after 2 hours, so fetch a fresh one"
)


class _XTransport(HTTPAdapter):
    """Gives every request to X a timeout (tweepy passes none) and, for a local or proxy endpoint, a new base URL."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.base_url and request.url and request.url.startswith(X_HOST):
            request.url = self.base_url + request.url[len(X_HOST) :]
            # the session chose proxies for api.twitter.com; NO_PROXY must be checked for the real destination
            kwargs["proxies"] = requests.utils.get_environ_proxies(request.url)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


@dataclass
class _Thread:
    """How far one message's thread got, kept across send.py's retries of that message."""

    ids: list[str] = field(default_factory=list)
    #: index of the post whose answer was lost (timeout, dropped connection, 5xx): it may be on X already
    uncertain: int | None = None


class XChannel(Channel):
    """Posts each language's text to X: the first post, then each next one as a reply to the one before."""

    name: ClassVar[str] = "social"
    max_batch: ClassVar[int] = 1
    # one language after another, so an account's followers see whole threads, not interleaved ones
    max_concurrency: ClassVar[int] = 1

    def __init__(self, settings: SocialSettings, *, timeout: float = TIMEOUT) -> None:
        oauth1 = (settings.consumer_key, settings.consumer_secret, settings.access_token, settings.access_token_secret)
        self._user_auth = all(oauth1)
        if not self._user_auth and not settings.bearer_token:
            raise ConfigError(
                "no X credentials",
                hint="set X_CONSUMER_KEY, X_CONSUMER_SECRET, X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET (OAuth 1.0a) "
                "or X_BEARER_TOKEN (OAuth 2.0 user token)",
            )
        self._secrets = [s for s in (*oauth1, settings.bearer_token) if s]
        self._hint = _OAUTH1_HINT if self._user_auth else _BEARER_HINT
        if self._user_auth:
            key, secret, token, token_secret = (s.reveal() for s in oauth1)
            self._client = tweepy.Client(
                consumer_key=key, consumer_secret=secret, access_token=token, access_token_secret=token_secret
            )
        else:
            # with user_auth=False tweepy sends this token as "Authorization: Bearer": X's OAuth 2.0 user context
            self._client = tweepy.Client(bearer_token=settings.bearer_token.reveal())
        self._client.session.mount(X_HOST, _XTransport(settings.base_url, timeout))
        self._threads: dict[str, _Thread] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"XChannel(auth={'oauth1' if self._user_auth else 'bearer'}, credentials={HIDDEN})"

    def close(self) -> None:
        self._client.session.close()

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        return [self._post(message) for message in messages]

    def _post(self, message: Message) -> Receipt:
        posts = message.personal().posts
        problem = _length_problem(posts)
        if problem:
            return self._receipt(message, "failed", reason=problem)
        with self._lock:
            thread = self._threads.setdefault(message.id, _Thread())
        total = len(posts)
        while len(thread.ids) < total:
            index = len(thread.ids)
            reply_to = thread.ids[-1] if thread.ids else None
            try:
                response = self._client.create_tweet(
                    text=posts[index], in_reply_to_tweet_id=reply_to, user_auth=self._user_auth
                )
            except tweepy.Forbidden as exc:
                if not _is_duplicate(exc):
                    raise self._stop(exc, thread, total) from None
                return self._duplicate(message, thread, index, total)
            except tweepy.Unauthorized as exc:
                raise self._stop(exc, thread, total) from None
            except tweepy.NotFound as exc:
                raise ChannelError(
                    f"X has no post endpoint at this address ({self._detail(exc)})",
                    hint="check X_API_BASE_URL, or unset it to use api.twitter.com",
                ) from None
            except tweepy.TooManyRequests as exc:
                what = "X rate limit reached (429)"
                return self._unfinished(message, thread, total, "retry", what, retry_after=_wait(exc))
            except tweepy.TwitterServerError as exc:
                # X sometimes creates the post and still answers 5xx; the retry's duplicate check tells
                thread.uncertain = index
                return self._unfinished(message, thread, total, "retry", f"X server error: {self._detail(exc)}")
            except tweepy.HTTPException as exc:
                self._forget(message)
                what = f"X refused post {index + 1} of {total}: {self._detail(exc)}"
                return self._unfinished(message, thread, total, "failed", what)
            except requests.RequestException as exc:
                # A read timeout or a dropped answer may hide a post that went out. "retry" is still safe on X,
                # unlike SMS or email: X refuses a repeat as duplicate content, which _duplicate reads as posted.
                if _may_have_reached_x(exc):
                    thread.uncertain = index
                return self._unfinished(message, thread, total, "retry", f"no answer from X ({type(exc).__name__})")
            thread.ids.append(str(response.data["id"]))
            thread.uncertain = None
        return self._finish(message, thread, total)

    def _finish(self, message: Message, thread: _Thread, total: int) -> Receipt:
        reason = None if total == 1 else f"thread of {total} posts: {', '.join(thread.ids)}"
        self._forget(message)
        return self._receipt(message, "sent", provider_id=thread.ids[0], reason=reason)

    def _duplicate(self, message: Message, thread: _Thread, index: int, total: int) -> Receipt:
        """X refused post ``index`` as duplicate content: it is on X already, with an id we cannot learn."""
        self._forget(message)
        if index == 0 and thread.uncertain != 0:
            return self._receipt(message, "skipped", reason="already posted on X (duplicate content)")
        # the post is ours (an earlier attempt whose answer was lost) or an identical older one; either way it is
        # on X, and without read scopes its id cannot be looked up, so the next post has nothing to reply to
        known = f"ids {', '.join(thread.ids)}" if thread.ids else "ids unknown"
        if total == 1:
            reason = "posted on X, but X's answer was lost, so the post's id is unknown"
        elif index == total - 1:
            reason = (
                f"all {total} posts are on X ({known}); the last was already there (duplicate content), "
                "so its id is unknown"
            )
        else:
            reason = (
                f"thread may be incomplete: {_span(1, index + 1)} of {total} on X ({known}); post {index + 1} was "
                f"already there (duplicate content) and its id is unknown, so {_span(index + 2, total)} had nothing "
                "to reply to and were not posted; post them by hand as replies"
            )
        first = thread.ids[0] if thread.ids else None
        return self._receipt(message, "sent", provider_id=first, reason=reason)

    def _unfinished(
        self, message: Message, thread: _Thread, total: int, status: Status, what: str, **fields: Any
    ) -> Receipt:
        """A thread that stopped short: the first post's id, if any went out, so a person can find it on X."""
        first = thread.ids[0] if thread.ids else None
        return self._receipt(message, status, provider_id=first, reason=self._progress(thread, total, what), **fields)

    def _stop(self, exc: tweepy.HTTPException, thread: _Thread, total: int) -> ChannelError:
        status = exc.response.status_code
        words = "refused the credentials" if status == 401 else "refused to post"
        what = f"X {words} ({status}): {self._detail(exc)}"
        return ChannelError(self._progress(thread, total, what), hint=self._hint)

    def _progress(self, thread: _Thread, total: int, what: str) -> str:
        if not thread.ids:
            return what
        return f"{what}; {_span(1, len(thread.ids))} of {total} already on X ({', '.join(thread.ids)})"

    def _detail(self, exc: tweepy.HTTPException) -> str:
        return self._clean("; ".join(exc.api_messages) or str(exc))

    def _clean(self, text: str) -> str:
        """mask() covers secrets from the environment; settings built in code carry their own."""
        text = mask(text)
        for secret in self._secrets:
            if len(secret.reveal()) >= 6:
                text = text.replace(secret.reveal(), HIDDEN)
        return text

    def _forget(self, message: Message) -> None:
        with self._lock:
            self._threads.pop(message.id, None)

    def _receipt(self, message: Message, status: Status, **fields: Any) -> Receipt:
        return Receipt(message.id, self.name, message.recipient, status, **fields)


def _length_problem(posts: Sequence[str]) -> str | None:
    """Why these posts cannot go out as they are, checked before the first one is posted; None when they can."""
    if not posts:
        return "the social rendering has no text; check the social template (nothing was posted)"
    for number, post in enumerate(posts, 1):
        if not post.strip():
            return f"post {number} of {len(posts)} is empty; check the social template (nothing was posted)"
        weighted = parse_tweet(post).weightedLength
        if weighted > MAX_WEIGHTED_LENGTH:
            return (
                f"post {number} of {len(posts)} is {weighted} weighted characters, over X's {MAX_WEIGHTED_LENGTH}; "
                "shorten the social template or the notice text (nothing was posted)"
            )
    return None


def _span(first: int, last: int) -> str:
    return f"post {first}" if first == last else f"posts {first}-{last}"


def _is_duplicate(exc: tweepy.Forbidden) -> bool:
    return any("duplicate content" in message.lower() for message in exc.api_messages)


def _wait(exc: tweepy.TooManyRequests) -> float | None:
    """Seconds until X's rate-limit window resets (x-rate-limit-reset is an epoch), else its Retry-After."""
    if exc.reset_time is not None:
        return max(0.0, exc.reset_time - time.time())
    retry_after = exc.response.headers.get("retry-after", "")
    return float(retry_after) if retry_after.isdigit() else None


def _may_have_reached_x(exc: requests.RequestException) -> bool:
    """False only when the connection was never made, so X cannot have seen the post."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, NewConnectionError)
