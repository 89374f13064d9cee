"""The social channel: one notice language as one X post or a numbered thread, through tweepy's API v2 client."""

from __future__ import annotations

import html
import re
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from broadcast.channels.base import ThreadChannel
from broadcast.config import HIDDEN, Env, Secret, mask, provider_timeout
from broadcast.errors import ChannelError, ConfigError
from broadcast.message import INTERRUPTED, Message, Receipt, Status
from broadcast.text import split_thread, weighted_length

# tweepy, requests and twitter-text are imported where a post is made, so check and preview read this module cheaply
if TYPE_CHECKING:
    import requests
    import tweepy


#: the host tweepy.Client hard-codes for every request
X_HOST = "https://api.twitter.com"
#: posts asked for when looking up one X refused as duplicate content: the most one timeline page holds
LOOKUP_PAGE = 100

_OAUTH1_HINT = (
    "check X_CONSUMER_KEY, X_CONSUMER_SECRET, X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET, and that the X app has "
    "Read and Write permission (regenerate the access token after changing it)"
)
_BEARER_HINT = (
    "X_BEARER_TOKEN must be an OAuth 2.0 user access token with the tweet.write scope, not the app-only bearer "
    "token; user tokens expire after 2 hours, so fetch a fresh one"
)


def _transport(base_url: str | None, timeout: float) -> Any:
    """A requests adapter that gives every request to X a timeout (tweepy passes none) and, for a local or proxy
    endpoint, a new base URL."""
    import requests
    from requests.adapters import HTTPAdapter

    class XTransport(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            if base_url and request.url and request.url.startswith(X_HOST):
                request.url = base_url.rstrip("/") + request.url[len(X_HOST) :]
                # the session chose proxies for api.twitter.com; NO_PROXY must be checked for the real destination
                kwargs["proxies"] = requests.utils.get_environ_proxies(request.url)
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().send(request, **kwargs)

    return XTransport()


@dataclass(frozen=True)
class SocialSettings:
    consumer_key: Secret | None
    consumer_secret: Secret | None
    access_token: Secret | None
    access_token_secret: Secret | None
    bearer_token: Secret | None
    base_url: str | None

    @classmethod
    def from_env(cls, env: Env) -> SocialSettings | None:
        """The four OAuth 1.0a variables, or X_BEARER_TOKEN (an OAuth 2.0 user token)."""
        user = ("X_CONSUMER_KEY", "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET")
        secrets = {name: env.secret(name) for name in (*user, "X_BEARER_TOKEN")}
        base_url = env.url("X_API_BASE_URL")
        has_user = [name for name in user if secrets[name]]
        if not (secrets["X_BEARER_TOKEN"] and not has_user) and len(has_user) < len(user):
            if has_user:
                env.need(*user)
            else:
                env.missing.append(" + ".join(user) + " (OAuth 1.0a) or X_BEARER_TOKEN (OAuth 2.0 user token)")
            return None
        return cls(*(secrets[name] for name in user), bearer_token=secrets["X_BEARER_TOKEN"], base_url=base_url)


@dataclass
class _Thread:
    """How far one message's thread got, kept across send.py's retries of that message."""

    ids: list[str] = field(default_factory=list)
    #: index of the post whose answer was lost (timeout, dropped connection, 5xx): it may be on X already
    uncertain: int | None = None
    #: how many of ``ids`` this channel put on X; the others were there before (an earlier run, or an earlier version)
    posted: int = 0


class _LookupFailed(Exception):
    """X answered a look-up with errors instead of data."""


class _Interrupted(Exception):
    """Ctrl-C was pressed while a request waited for its turn: it never started."""


class XChannel(ThreadChannel):
    """Posts each language's text to X: the first post, then each next one as a reply to the one before."""

    name: ClassVar[str] = "social"
    title: ClassVar[str] = "X"
    provider: ClassVar[str] = "X"
    max_post_weight: ClassVar[int] = 280
    settings: ClassVar[type[SocialSettings]] = SocialSettings
    secrets: ClassVar[tuple[str, ...]] = (
        "X_CONSUMER_KEY", "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET", "X_BEARER_TOKEN",
    )
    host_variable: ClassVar[str] = "X_API_BASE_URL"

    @classmethod
    def split(cls, text: str, limit: int, tag: str) -> tuple[str, ...]:
        return split_thread(text, limit, tag)

    @classmethod
    def post_length(cls, post: str) -> int:
        return weighted_length(post)

    @classmethod
    def recipient(cls, language: str, target: str = "") -> str:
        return f"x:{language}"  # the account's followers; named for the platform since the first ledger row

    def __init__(self, settings: SocialSettings, *, timeout: float | None = None, **run: Any) -> None:
        import tweepy

        super().__init__(settings, **run)
        timeout = provider_timeout() if timeout is None else timeout
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
        self._client.session.mount(X_HOST, _transport(settings.base_url, timeout))
        self._threads: dict[str, _Thread] = {}
        self._lock = threading.Lock()
        self._user_id: str | None = None

    def __repr__(self) -> str:
        return f"XChannel(auth={'oauth1' if self._user_auth else 'bearer'}, credentials={HIDDEN})"

    def close(self) -> None:
        self._client.session.close()

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        return [self._post(message) for message in messages]

    def _post(self, message: Message) -> Receipt:
        import requests
        import tweepy

        posts = message.personal().posts
        problem = _length_problem(posts)
        if problem:
            return self._receipt(message, "failed", reason=problem)
        with self._lock:
            thread = self._threads.setdefault(message.id, _Thread())
        total = len(posts)
        while len(thread.ids) < total:
            index = len(thread.ids)
            # an update's first post replies to the notice's latest thread in this language, so followers read it there
            reply_to = thread.ids[-1] if thread.ids else message.reply_to
            try:
                response = self._limited(
                    self._client.create_tweet, text=posts[index], in_reply_to_tweet_id=reply_to, user_auth=self._user_auth
                )
            except _Interrupted:
                return self._unfinished(message, thread, total, "retry" if thread.ids else "not_started", INTERRUPTED)
            except tweepy.Forbidden as exc:
                if not _is_duplicate(exc):
                    raise self._stop(exc, thread, total) from None
                stopped = self._resume(message, thread, posts[index], index, total)
                if stopped is not None:
                    return stopped
                continue
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
                # unlike SMS or email: X refuses a repeat as duplicate content, and _resume finds the post's id.
                if _may_have_reached_x(exc):
                    thread.uncertain = index
                return self._unfinished(message, thread, total, "retry", f"no answer from X ({type(exc).__name__})")
            thread.ids.append(str(response.data["id"]))
            thread.posted += 1
            thread.uncertain = None
        return self._finish(message, thread, total)

    def _finish(self, message: Message, thread: _Thread, total: int) -> Receipt:
        self._forget(message)
        ids = ", ".join(thread.ids)
        if not thread.posted:
            # every post was on X before this attempt: the same text under an earlier notice version, or an
            # earlier run that posted the whole thread and died before recording it
            reason = "already posted on X (duplicate content)" + (f": thread of {total} posts: {ids}" if total > 1 else "")
            return self._receipt(message, "skipped", provider_id=thread.ids[0], reason=reason, thread=tuple(thread.ids))
        reason = None if total == 1 else f"thread of {total} posts: {ids}"
        if reason and thread.posted < total:
            reason += f" ({total - thread.posted} of them already on X from an earlier attempt)"
        if message.reply_to:
            reason = f"in reply to {message.reply_to}" + (f"; {reason}" if reason else "")
        return self._receipt(message, "sent", provider_id=thread.ids[0], reason=reason, thread=tuple(thread.ids))

    def _resume(self, message: Message, thread: _Thread, text: str, index: int, total: int) -> Receipt | None:
        """X refused post ``index`` as duplicate content, so it is on X already: find its id and go on from it.

        Returns None when found (the next post replies to it), else the receipt that ends this attempt.
        """
        import requests
        import tweepy

        where = f"post {index + 1} of {total} is on X already (duplicate content)"
        try:
            found = self._find(text, after=thread.ids[-1] if thread.ids else None)
        except _Interrupted:
            return self._unfinished(message, thread, total, "retry" if thread.ids else "not_started", INTERRUPTED)
        # X still refuses the repeat, so sending the post again to reach this look-up again is safe
        except tweepy.TooManyRequests as exc:
            what = f"{where}; looking up its id hit X's rate limit (429)"
            return self._unfinished(message, thread, total, "retry", what, retry_after=_wait(exc))
        except tweepy.TwitterServerError as exc:
            what = f"{where}; looking up its id met an X server error: {self._detail(exc)}"
            return self._unfinished(message, thread, total, "retry", what)
        except requests.RequestException as exc:
            what = f"{where}; looking up its id got no answer from X ({type(exc).__name__})"
            return self._unfinished(message, thread, total, "retry", what)
        except tweepy.HTTPException as exc:
            why = f"X refused to list the account's posts ({exc.response.status_code}: {self._detail(exc)})"
            return self._stranded(message, thread, index, total, why, looked=False)
        except _LookupFailed as exc:
            why = f"X answered the look-up with: {self._clean(str(exc))}"
            return self._stranded(message, thread, index, total, why, looked=False)
        if found is None:
            newer = f"newer than post {index} ({thread.ids[-1]})" if thread.ids else f"among its {LOOKUP_PAGE} newest"
            why = f"the account has no post with this text {newer}"
            return self._stranded(message, thread, index, total, why, looked=True)
        if thread.uncertain == index:
            thread.posted += 1  # the attempt whose answer was lost did post it
        thread.ids.append(found)
        thread.uncertain = None
        return None

    def withdraw(self, messages: Sequence[Message], why: str) -> list[Receipt]:
        """Delete the posts each message names (``posted``): `cancel --delete-posts`. A post X no longer has counts
        as deleted; any other refusal fails that message and leaves the rest of its thread up, listed."""
        import requests
        import tweepy

        receipts = []
        for message in messages:
            left = list(message.posted)
            try:
                while left:
                    try:
                        self._limited(self._client.delete_tweet, left[0], user_auth=self._user_auth)
                    except tweepy.NotFound:
                        pass  # gone already: deleted by hand, or by an earlier attempt whose answer was lost
                    left.pop(0)
            except _Interrupted:
                receipts.append(self._receipt(message, "not_started", reason=f"{INTERRUPTED}; still on X: {' '.join(left)}"))
                continue
            except (tweepy.HTTPException, requests.RequestException) as exc:
                detail = self._detail(exc) if isinstance(exc, tweepy.HTTPException) else type(exc).__name__
                receipts.append(self._receipt(
                    message, "failed", reason=f"X did not delete post {left[0]} ({detail}); still on X: {' '.join(left)}"
                ))
                continue
            receipts.append(self._receipt(message, "sent", reason=f"{why}: deleted {len(message.posted)} post(s) from X"))
        return receipts

    def _limited(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """One request to X, started when --rate / --concurrency allow it."""
        with self.request() as go:
            if not go:
                raise _Interrupted
            return call(*args, **kwargs)

    def _find(self, text: str, *, after: str | None) -> str | None:
        """The id of the account's newest post with this text, looking only at posts newer than ``after``.

        A reply is always newer than the post it answers, so ``after`` (the post this one should reply to) keeps
        an identical post from another thread out. None when there is no such post.
        """
        if self._user_id is None:
            me = self._limited(self._client.get_me, user_auth=self._user_auth)
            if me.data is None:
                raise _LookupFailed(_problems(me.errors) or "no account for these credentials")
            self._user_id = str(me.data.id)
        page = self._limited(
            self._client.get_users_tweets, self._user_id, since_id=after, max_results=LOOKUP_PAGE, user_auth=self._user_auth
        )
        if page.data is None and page.errors:
            raise _LookupFailed(_problems(page.errors))
        wanted = _comparable(text)
        for post in page.data or []:  # newest first
            if _comparable(post.text) == wanted:
                return str(post.id)
        return None

    def _stranded(self, message: Message, thread: _Thread, index: int, total: int, why: str, *, looked: bool) -> Receipt:
        """Post ``index`` is on X but its id is not to be had, so the posts after it have nothing to reply to.

        ``looked`` is True when X listed the account's posts and this one was not among them.
        """
        self._forget(message)
        first = thread.ids[0] if thread.ids else None
        ours = thread.uncertain == index  # the attempt whose answer was lost may have posted it
        if total == 1:
            # a lone post is whole on X either way; only its id is missing
            if ours:
                reason = f"posted on X, but its id is unknown: X's answer was lost and {why}"
                return self._receipt(message, "sent", reason=reason)
            return self._receipt(message, "skipped", reason=f"already posted on X (duplicate content); {why}")
        if ours and not looked and index == total - 1:
            reason = (
                f"all {total} posts are on X ({', '.join(thread.ids)} and post {total}, whose id is unknown: "
                f"X's answer to it was lost and {why})"
            )
            return self._receipt(message, "sent", provider_id=first, reason=reason)
        before = ""
        if thread.ids:
            before = f"{_span(1, index)} of {total} {_were(1, index, 'is', 'are')} on X ({', '.join(thread.ids)}); "
        if looked and not ours:
            # X listed the posts after the one this should reply to, and the text is not among them: the post
            # X compared it with is an older one elsewhere, and X will refuse this text however often it is sent
            rest = _span(index + 1, total)
            what = (
                f"thread incomplete: {before}X refused post {index + 1} as duplicate content of an older post "
                f"({why}), so {rest} {_were(index + 1, total)} not posted; change post {index + 1}'s text in the "
                f"notice and send again, or add {rest} by hand"
            )
            return self._receipt(message, "failed", provider_id=first, reason=what)
        rest = _span(index + 2, total)
        what = (
            f"thread incomplete: {before}post {index + 1} is already on X (duplicate content), but its id is unknown "
            f"({why}), so {rest} had nothing to reply to and {_were(index + 2, total)} not posted; re-run with "
            f"--retry-unknown to look again and finish the thread, or add {rest} by hand "
            f"{_were(index + 2, total, 'as a reply', 'as replies')} to post {index + 1}"
        )
        return self._receipt(message, "unknown", provider_id=first, reason=what)

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
        weighted = weighted_length(post)
        if weighted > XChannel.max_post_weight:
            return (
                f"post {number} of {len(posts)} is {weighted} weighted characters, over X's {XChannel.max_post_weight}; "
                "shorten the social template or the notice text (nothing was posted)"
            )
    return None


def _span(first: int, last: int) -> str:
    return f"post {first}" if first == last else f"posts {first}-{last}"


def _were(first: int, last: int, one: str = "was", many: str = "were") -> str:
    return one if first == last else many


def _is_duplicate(exc: tweepy.Forbidden) -> bool:
    return any("duplicate content" in message.lower() for message in exc.api_messages)


def _comparable(text: str) -> str:
    """A post's text as X's timeline shows it and as we sent it, made equal where X rewrites it.

    X returns &, < and > as HTML entities and every link it recognises as a t.co link, so links compare as one
    marker (found the way X finds them, with twitter-text), and spacing X may trim does not count.
    """
    from twitter_text import extract_urls_with_indices

    text = unicodedata.normalize("NFC", html.unescape(text))
    for url in reversed(extract_urls_with_indices(text)):
        start, end = url["indices"]
        text = text[:start] + "\x00" + text[end:]
    return re.sub(r"\s+", " ", text).strip()


def _problems(errors: Sequence[dict[str, Any]]) -> str:
    """X's error entries from an answer that had no data, in its own words."""
    return "; ".join(str(e.get("detail") or e.get("title") or e) for e in errors)


def _wait(exc: tweepy.TooManyRequests) -> float | None:
    """Seconds until X's rate-limit window resets (x-rate-limit-reset is an epoch), else its Retry-After."""
    if exc.reset_time is not None:
        return max(0.0, exc.reset_time - time.time())
    retry_after = exc.response.headers.get("retry-after", "")
    return float(retry_after) if retry_after.isdigit() else None


def _may_have_reached_x(exc: requests.RequestException) -> bool:
    """False only when the connection was never made, so X cannot have seen the post."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema)):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, NewConnectionError)
