"""The Mastodon channel: one notice language as one public post or a numbered thread, through Mastodon.py."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from broadcast.channels.base import ThreadChannel
from broadcast.config import HIDDEN, Env, Secret, mask, provider_timeout
from broadcast.errors import ChannelError
from broadcast.message import INTERRUPTED, Message, Receipt, Status
from broadcast.text import split_thread

# Mastodon.py is imported where a post is made, so check and preview read this module cheaply
if TYPE_CHECKING:
    pass

#: Mastodon's default status length (configuration.statuses.max_characters of a stock instance)
DEFAULT_MAX_CHARACTERS = 500
#: what a link counts, whatever its length (configuration.statuses.characters_reserved_per_url)
URL_WEIGHT = 23
#: Mastodon keeps an Idempotency-Key for an hour (app/controllers/concerns ... Idempotency: redis setex 3600 s), so a
#: retry within it returns the status the first request created instead of posting it again
IDEMPOTENCY_WINDOW = 3600
#: a lost thread is posted again only if it was tried this much inside the window: room for the posting itself
RECONCILE_MARGIN = 600
# the links Mastodon counts as 23 (its Twitter::Extractor finds http(s) URLs); a bare domain counts as its letters
_URL = re.compile(r"https?://\S+")
_TOKEN_HINT = (
    "check MASTODON_ACCESS_TOKEN: an access token of the posting account with the write:statuses scope "
    "(Preferences > Development > your application)"
)


#: stands in for each character of a link that is counted in full: ASCII, so X's weighting counts it 1, and no link
_MASK = "\x01"


def split_counting_links(text: str, limit: int, tag: str, literal: Callable[[str], bool]) -> tuple[str, ...]:
    """The text as a thread within ``limit``, packed by text.split_thread, whose X weighting counts every link 23:
    each link ``literal`` says the service counts in full is masked with as many plain characters first, so the
    packing measures it at its real length, and put back after.
    """
    # Mastodon and Bluesky share this (text.py, which split_thread lives in, is the better home for it)
    from twitter_text import extract_urls_with_indices

    links = [u for u in extract_urls_with_indices(text) if literal(u["url"])]
    if not links:
        return split_thread(text, limit, tag)
    masked, stream = text, []
    for link in reversed(links):
        start, end = link["indices"]
        masked = masked[:start] + _MASK * (end - start) + masked[end:]
        stream.insert(0, text[start:end])
    chars = iter("".join(stream))
    return tuple("".join(next(chars) if c == _MASK else c for c in post) for post in split_thread(masked, limit, tag))


def status_length(text: str) -> int:
    """A post's length as Mastodon counts it: every link 23, everything else one per character.

    Mastodon counts grapheme clusters; code points are never fewer, so this never lets a post over the limit pass.
    """
    return len(_URL.sub("x" * URL_WEIGHT, text))


def split_statuses(text: str, limit: int, tag: str = "") -> tuple[str, ...]:
    """The text as posts of at most ``limit`` Mastodon characters: an http(s) link counts 23, as on X, but a bare
    domain (example.org/boil), which X also counts 23, is plain text to Mastodon and counts in full."""
    return split_counting_links(text, limit, tag, lambda link: not _URL.match(link))


@dataclass(frozen=True)
class MastodonSettings:
    api_base_url: str
    access_token: Secret

    @classmethod
    def from_env(cls, env: Env) -> MastodonSettings | None:
        """MASTODON_API_BASE_URL (the instance, https://mastodon.example) and MASTODON_ACCESS_TOKEN."""
        url = env.url("MASTODON_API_BASE_URL")
        token = env.secret("MASTODON_ACCESS_TOKEN")
        if not env.need("MASTODON_API_BASE_URL", "MASTODON_ACCESS_TOKEN") or not url or not token:
            return None
        return cls(url.rstrip("/"), token)


class _Interrupted(Exception):
    """Ctrl-C was pressed while a request waited for its turn: it never started."""


class MastodonChannel(ThreadChannel):
    """Posts each language's text to a Mastodon account: the first post, then each next one as a reply to the one
    before, each with its language and an Idempotency-Key, so a retry or a re-run never posts anything twice."""

    name: ClassVar[str] = "mastodon"
    title: ClassVar[str] = "Mastodon"
    provider: ClassVar[str] = "Mastodon"
    # an account people must set up first: used only when --channel names it
    by_default: ClassVar[bool] = False
    #: the stock instance's limit; a send reads the instance's own and refuses, before posting, a post over it
    max_post_weight: ClassVar[int] = DEFAULT_MAX_CHARACTERS
    settings: ClassVar[type[MastodonSettings]] = MastodonSettings
    secrets: ClassVar[tuple[str, ...]] = ("MASTODON_ACCESS_TOKEN",)
    host_variable: ClassVar[str] = "MASTODON_API_BASE_URL"
    # One post at a time (ThreadChannel.max_concurrency). Mastodon's published limits
    # (docs.joinmastodon.org/api/rate-limits): 300 requests per 5 minutes per account, and POST /api/v1/statuses
    # 300 per 3 hours per account; a notice posts a few threads, far below either.

    @classmethod
    def split(cls, text: str, limit: int, tag: str) -> tuple[str, ...]:
        return split_statuses(text, limit, tag)

    @classmethod
    def post_length(cls, post: str) -> int:
        return status_length(post)


    def __init__(self, settings: MastodonSettings, *, timeout: float | None = None, **run: Any) -> None:
        from mastodon import Mastodon

        super().__init__(settings, **run)
        self._settings = settings
        # ratelimit_method="throw": a 429 becomes a receipt that send.py retries (its deadline, its Ctrl-C), never
        # a sleep inside the SDK; version_check_mode="none": no extra request to learn the server's version
        self._api = Mastodon(
            access_token=settings.access_token.reveal(), api_base_url=settings.api_base_url,
            request_timeout=provider_timeout() if timeout is None else timeout, ratelimit_method="throw",
            version_check_mode="none",
        )
        self._limit: int | None = None
        self._threads: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MastodonChannel(instance={self._settings.api_base_url!r}, token={HIDDEN})"

    def close(self) -> None:
        self._api.session.close()

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        return [self._post(message) for message in messages]

    def _instance_limit(self) -> int:
        """The instance's status length limit, read once from GET /api/v2/instance."""
        import requests
        from mastodon import MastodonAPIError, MastodonNetworkError, MastodonServerError
        from mastodon.errors import MastodonReadTimeout

        if self._limit is None:
            try:
                instance = self._limited(self._api.instance_v2)
            except (MastodonServerError, MastodonReadTimeout):
                raise  # a moment's outage: the message is retried
            except MastodonNetworkError as exc:
                # Mastodon.py wraps the requests error it caught: no connection at all means a wrong address
                if not isinstance(exc.__context__, (requests.ConnectionError, requests.exceptions.InvalidURL)):
                    raise
                raise ChannelError(
                    f"MASTODON_API_BASE_URL={mask(self._settings.api_base_url)} cannot be reached "
                    f"({type(exc.__context__).__name__}); nothing was posted",
                    hint="check MASTODON_API_BASE_URL: the instance's address, e.g. https://mastodon.social",
                ) from None
            except MastodonAPIError as exc:
                raise ChannelError(
                    f"MASTODON_API_BASE_URL={mask(self._settings.api_base_url)} did not answer as a Mastodon instance "
                    f"({self._detail(exc)}); nothing was posted",
                    hint="set MASTODON_API_BASE_URL to the instance's address, e.g. https://mastodon.social",
                ) from None
            statuses = ((instance.get("configuration") or {}).get("statuses")) or {}
            self._limit = int(statuses.get("max_characters") or DEFAULT_MAX_CHARACTERS)
        return self._limit

    def _post(self, message: Message) -> Receipt:
        from mastodon import (
            MastodonAPIError,
            MastodonNetworkError,
            MastodonNotFoundError,
            MastodonRatelimitError,
            MastodonServerError,
            MastodonUnauthorizedError,
        )

        posts = message.personal().posts
        try:
            limit = self._instance_limit()
        except _Interrupted:
            return self._receipt(message, "not_started", reason=INTERRUPTED)
        except (MastodonServerError, MastodonNetworkError) as exc:
            return self._receipt(message, "retry", reason=f"no answer from the Mastodon instance ({self._detail(exc)})")
        problem = _length_problem(posts, limit)
        if problem:
            return self._receipt(message, "failed", reason=problem)
        with self._lock:
            ids = self._threads.setdefault(message.id, [])
        total = len(posts)
        while len(ids) < total:
            index = len(ids)
            # an update's first post replies to the notice's latest thread in this language
            reply_to = ids[-1] if ids else message.reply_to
            try:
                status = self._limited(
                    self._api.status_post, posts[index], in_reply_to_id=reply_to, visibility="public",
                    language=message.language, idempotency_key=idempotency_key(message, index),
                )
            except _Interrupted:
                return self._unfinished(message, ids, total, "retry" if ids else "not_started", INTERRUPTED)
            except MastodonUnauthorizedError as exc:
                raise ChannelError(self._progress(ids, total, f"Mastodon refused the access token (401): "
                                                              f"{self._detail(exc)}"), hint=_TOKEN_HINT) from None
            except MastodonNotFoundError as exc:
                if reply_to is not None and ids == [] and message.reply_to:
                    what = f"Mastodon has no post {reply_to} to reply to (deleted?): {self._detail(exc)}"
                    return self._unfinished(message, ids, total, "failed", what, forget=True)
                raise ChannelError(
                    f"MASTODON_API_BASE_URL={mask(self._settings.api_base_url)} has no status endpoint "
                    f"({self._detail(exc)})", hint="set MASTODON_API_BASE_URL to the instance's address",
                ) from None
            except MastodonRatelimitError:
                return self._unfinished(message, ids, total, "retry", "Mastodon rate limit reached (429)",
                                        retry_after=self._wait())
            except (MastodonServerError, MastodonNetworkError) as exc:
                # the post may have gone out; its Idempotency-Key makes the retry return it instead of a second one
                return self._unfinished(message, ids, total, "retry", f"no answer from Mastodon ({self._detail(exc)})")
            except MastodonAPIError as exc:
                if _status_code(exc) == 403:
                    raise ChannelError(self._progress(ids, total, f"Mastodon refused to post (403): "
                                                                  f"{self._detail(exc)}"), hint=_TOKEN_HINT) from None
                what = f"Mastodon refused post {index + 1} of {total}: {self._detail(exc)}"
                return self._unfinished(message, ids, total, "failed", what, forget=True)
            ids.append(str(status["id"]))
        self._forget(message)
        reason = None if total == 1 else f"thread of {total} posts: {', '.join(ids)}"
        if message.reply_to:
            reason = f"in reply to {message.reply_to}" + (f"; {reason}" if reason else "")
        return self._receipt(message, "sent", provider_id=ids[0], reason=reason, thread=tuple(ids))

    def reconcile(self, lost: Sequence[tuple[Message, datetime]]) -> list[Receipt]:
        """Messages a crashed run left unknown: posting again is safe while the instance still holds their posts'
        Idempotency-Keys (an hour), since each post already made comes back instead of a second one, so the thread
        goes on from where it stopped. After that it cannot tell: they stay unknown for a person to look."""
        now = datetime.now(timezone.utc)
        receipts = []
        for message, tried in lost:
            if (now - tried).total_seconds() < IDEMPOTENCY_WINDOW - RECONCILE_MARGIN:
                receipts.append(self._receipt(message, "retry", reason=(
                    "an earlier run stopped mid-thread; posting again continues the thread (Idempotency-Keys)")))
            else:
                receipts.append(self._receipt(message, "unknown", reason=(
                    f"tried at {tried:%Y-%m-%d %H:%M} UTC, over an hour ago: Mastodon has forgotten the posts' "
                    "Idempotency-Keys; look at the account, and send with --retry-unknown if the thread is not there")))
        return receipts

    def withdraw(self, messages: Sequence[Message], why: str) -> list[Receipt]:
        """Delete the posts each message names (``posted``): `cancel --delete-posts`. A post already gone counts
        as deleted; any other refusal fails that message and lists what is still up."""
        from mastodon import MastodonError, MastodonNotFoundError

        receipts = []
        for message in messages:
            left = list(message.posted)
            try:
                while left:
                    try:
                        self._limited(self._api.status_delete, left[0])
                    except MastodonNotFoundError:
                        pass  # deleted by hand, or by an earlier attempt whose answer was lost
                    left.pop(0)
            except _Interrupted:
                receipts.append(self._receipt(message, "not_started",
                                              reason=f"{INTERRUPTED}; still on Mastodon: {' '.join(left)}"))
                continue
            except MastodonError as exc:
                receipts.append(self._receipt(message, "failed", reason=(
                    f"Mastodon did not delete post {left[0]} ({self._detail(exc)}); still on Mastodon: {' '.join(left)}"
                )))
                continue
            receipts.append(self._receipt(message, "sent",
                                          reason=f"{why}: deleted {len(message.posted)} post(s) from Mastodon"))
        return receipts

    def _limited(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """One request to Mastodon, started when --rate / --concurrency allow it."""
        with self.request() as go:
            if not go:
                raise _Interrupted
            return call(*args, **kwargs)

    def _wait(self) -> float | None:
        """Seconds until the rate-limit window resets (X-RateLimit-Reset, which Mastodon.py reads)."""
        reset = getattr(self._api, "ratelimit_reset", None)
        return max(0.0, float(reset) - time.time()) if reset else None

    def _unfinished(self, message: Message, ids: list[str], total: int, status: Status, what: str, *,
                    forget: bool = False, **fields: Any) -> Receipt:
        if forget:
            self._forget(message)
        first = ids[0] if ids else None
        return self._receipt(message, status, provider_id=first, reason=self._progress(ids, total, what), **fields)

    def _progress(self, ids: list[str], total: int, what: str) -> str:
        if not ids:
            return what
        return f"{what}; {len(ids)} of {total} posts already on Mastodon ({', '.join(ids)})"

    def _detail(self, exc: Exception) -> str:
        """The SDK's error without the request's internals, and never the token."""
        args = [str(a) for a in getattr(exc, "args", ()) if a not in (None, "Mastodon API returned error")]
        text = mask(" ".join(args) or type(exc).__name__)
        return text.replace(self._settings.access_token.reveal(), HIDDEN)

    def _forget(self, message: Message) -> None:
        with self._lock:
            self._threads.pop(message.id, None)

    def _receipt(self, message: Message, status: Status, **fields: Any) -> Receipt:
        return Receipt(message.id, self.name, message.recipient, status, **fields)


def idempotency_key(message: Message, index: int) -> str:
    """The same key for the same post of the same message on every attempt and every run (Idempotency-Key)."""
    return hashlib.sha256(f"{message.id}\x00{index}".encode()).hexdigest()


def _status_code(exc: Exception) -> int | None:
    codes = [a for a in getattr(exc, "args", ()) if isinstance(a, int)]
    return codes[0] if codes else None


def _length_problem(posts: Sequence[str], limit: int) -> str | None:
    """Why these posts cannot go out as they are, checked before the first one is posted; None when they can."""
    if not posts:
        return "the Mastodon rendering has no text; check the social template (nothing was posted)"
    for number, post in enumerate(posts, 1):
        if not post.strip():
            return f"post {number} of {len(posts)} is empty; check the social template (nothing was posted)"
        length = status_length(post)
        if length > limit:
            return (
                f"post {number} of {len(posts)} is {length} characters, over this instance's limit of {limit} "
                f"(broadcast splits at {DEFAULT_MAX_CHARACTERS}, the default); shorten the social template or the "
                "notice text (nothing was posted)"
            )
    return None
