"""The Bluesky channel: one notice language as one post or a thread of replies, through the atproto SDK."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from broadcast.channels.base import ThreadChannel
from broadcast.channels.mastodon import split_counting_links
from broadcast.config import HIDDEN, Env, Secret, mask, provider_timeout
from broadcast.errors import ChannelError
from broadcast.message import INTERRUPTED, Message, Receipt, Status

# atproto (httpx, pydantic models) is imported where a post is made, so check and preview read this module cheaply
if TYPE_CHECKING:
    pass

DEFAULT_PDS_URL = "https://bsky.social"
#: app.bsky.feed.post's text: maxGraphemes 300 (the lexicon)
MAX_GRAPHEMES = 300
POST = "app.bsky.feed.post"
#: records read back to find posts an earlier attempt made: listRecords' largest page
LOOKUP_PAGE = 100
_LOGIN_HINT = (
    "check BLUESKY_HANDLE (the account, e.g. lakeside-water.bsky.social) and BLUESKY_APP_PASSWORD (an app password "
    "from Settings > Privacy and security > App passwords, not the account password)"
)


def post_length(text: str) -> int:
    """A post's length against Bluesky's 300 graphemes: code points, which are never fewer than graphemes, so a post
    this passes is never refused; links count in full (Bluesky shows them shortened but stores every character)."""
    return len(text)


def split_posts(text: str, limit: int = MAX_GRAPHEMES, tag: str = "") -> tuple[str, ...]:
    """The text as posts of at most ``limit`` characters; Bluesky stores and counts every link in full."""
    return split_counting_links(text, limit, tag, lambda link: True)


def link_facets(text: str) -> list[Any]:
    """app.bsky.richtext.facet links for every URL in the text, with UTF-8 byte offsets, so the links are clickable:
    the SDK's port of Bluesky's own detectFacets (a bare domain gets https://)."""
    from atproto import models
    from atproto_client.utils import detect_facets

    return [f for f in detect_facets(text) if isinstance(f.features[0], models.AppBskyRichtextFacet.Link)]


@dataclass(frozen=True)
class BlueskySettings:
    handle: str
    app_password: Secret
    pds_url: str = DEFAULT_PDS_URL

    @classmethod
    def from_env(cls, env: Env) -> BlueskySettings | None:
        """BLUESKY_HANDLE, BLUESKY_APP_PASSWORD and BLUESKY_PDS_URL (default https://bsky.social)."""
        pds = env.url("BLUESKY_PDS_URL") or DEFAULT_PDS_URL
        password = env.secret("BLUESKY_APP_PASSWORD")
        if not env.need("BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD") or not password:
            return None
        return cls(env.get("BLUESKY_HANDLE").lstrip("@"), password, pds.rstrip("/"))


class _Interrupted(Exception):
    """Ctrl-C was pressed while a request waited for its turn: it never started."""


@dataclass(frozen=True)
class _Ref:
    """A post as a reply points at it (com.atproto.repo.strongRef), and the root of its thread."""

    uri: str
    cid: str
    root_uri: str
    root_cid: str


class BlueskyChannel(ThreadChannel):
    """Posts each language's text to a Bluesky account: the first post, then each next one as a reply (root and
    parent refs), each with its language and link facets. Every attempt first reads the account's newest posts,
    so a post an earlier attempt or a crashed run made is continued from, never posted twice."""

    name: ClassVar[str] = "bluesky"
    title: ClassVar[str] = "Bluesky"
    provider: ClassVar[str] = "Bluesky"
    # an account people must set up first: used only when --channel names it
    by_default: ClassVar[bool] = False
    max_post_weight: ClassVar[int] = MAX_GRAPHEMES
    settings: ClassVar[type[BlueskySettings]] = BlueskySettings
    secrets: ClassVar[tuple[str, ...]] = ("BLUESKY_APP_PASSWORD",)
    host_variable: ClassVar[str] = "BLUESKY_PDS_URL"
    # One post at a time (ThreadChannel.max_concurrency). Bluesky's published limits
    # (docs.bsky.app/docs/advanced-guides/rate-limits): createSession 30 per 5 minutes and 300 per day per account
    # (one per run here); writes 5,000 points per hour per account, a created record costing 3 (1,666 posts an
    # hour); 3,000 requests per 5 minutes per IP. A notice posts a few threads, far below them.

    @classmethod
    def split(cls, text: str, limit: int, tag: str) -> tuple[str, ...]:
        return split_posts(text, limit, tag)

    @classmethod
    def post_length(cls, post: str) -> int:
        return post_length(post)


    def __init__(self, settings: BlueskySettings, *, timeout: float | None = None, **run: Any) -> None:
        from atproto import Client
        from atproto_client.request import Request

        super().__init__(settings, **run)
        self._settings = settings
        self._client = Client(settings.pds_url, request=Request(timeout=provider_timeout() if timeout is None else timeout))
        self._did: str | None = None
        #: messages this run sent a post of: a post found on Bluesky on their retry is this run's (its answer was lost)
        self._tried: set[str] = set()

    def __repr__(self) -> str:
        return f"BlueskyChannel(handle={self._settings.handle!r}, app_password={HIDDEN})"

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        return [self._post(message) for message in messages]

    def _login(self) -> str:
        """Log in once per run (createSession is limited to 30 per 5 minutes); the account's DID."""
        import httpx
        from atproto.exceptions import AtProtocolError, NetworkError, UnauthorizedError

        if self._did is None:
            try:
                session = self._limited(self._client.login, self._settings.handle,
                                        self._settings.app_password.reveal(), fetch_bsky_profile=False)
                del session
                self._did = self._client.com.atproto.server.get_session().did
            except UnauthorizedError as exc:
                raise ChannelError(f"Bluesky refused BLUESKY_HANDLE / BLUESKY_APP_PASSWORD ({self._detail(exc)}); "
                                   "nothing was posted", hint=_LOGIN_HINT) from None
            except (NetworkError, httpx.TransportError) as exc:
                raise ChannelError(
                    f"BLUESKY_PDS_URL={mask(self._settings.pds_url)} did not answer ({self._detail(exc)}); nothing was "
                    "posted", hint="unset BLUESKY_PDS_URL to use https://bsky.social, or set it to your PDS's address",
                ) from None
            except AtProtocolError as exc:
                raise ChannelError(
                    f"BLUESKY_PDS_URL={mask(self._settings.pds_url)} did not log in as a Bluesky server would "
                    f"({self._detail(exc)}); nothing was posted",
                    hint="unset BLUESKY_PDS_URL to use https://bsky.social, or set it to your PDS's address",
                ) from None
        return self._did

    def _post(self, message: Message) -> Receipt:
        import httpx
        from atproto.exceptions import (
            AtProtocolError,
            BadRequestError,
            NetworkError,
            RateLimitExceededError,
            UnauthorizedError,
        )

        posts = message.personal().posts
        problem = _length_problem(posts)
        if problem:
            return self._receipt(message, "failed", reason=problem)
        total = len(posts)
        refs: list[_Ref] = []
        earlier = 0
        ours = message.id in self._tried
        try:
            did = self._login()
            parent = self._parent(did, message.reply_to) if message.reply_to else None
            # what an earlier attempt (a lost answer, a crashed run) already put up of this thread
            refs = self._already_posted(did, posts, parent)
            earlier = len(refs)
            while len(refs) < total:
                index = len(refs)
                before = refs[-1] if refs else parent
                self._tried.add(message.id)
                refs.append(self._create(did, posts[index], message.language, before))
        except _Interrupted:
            return self._unfinished(message, refs, total, "retry" if refs else "not_started", INTERRUPTED)
        except UnauthorizedError as exc:
            raise ChannelError(self._progress(refs, total, f"Bluesky refused to post ({self._detail(exc)})"),
                               hint=_LOGIN_HINT) from None
        except RateLimitExceededError as exc:
            reset = exc.reset_at
            wait = max(0.0, (reset - datetime.now(UTC)).total_seconds()) if reset else None
            return self._unfinished(message, refs, total, "retry", "Bluesky rate limit reached (429)", retry_after=wait)
        except BadRequestError as exc:
            self._tried.discard(message.id)
            what = f"Bluesky refused post {len(refs) + 1} of {total}: {self._detail(exc)}"
            return self._unfinished(message, refs, total, "failed", what)
        except (NetworkError, AtProtocolError, httpx.TransportError) as exc:
            # the post may be up (the SDK passes some transport errors, a dropped answer among them, through as httpx's); the next attempt reads the account's posts first and goes on from it
            return self._unfinished(message, refs, total, "retry", f"no answer from Bluesky ({self._detail(exc)})")
        self._tried.discard(message.id)
        uris = tuple(ref.uri for ref in refs)
        if earlier == total and not ours:
            # every post was up before this run: an earlier run posted the whole thread and died before recording it
            reason = "already posted on Bluesky" + (f": thread of {total} posts: {', '.join(uris)}" if total > 1 else "")
            return self._receipt(message, "skipped", provider_id=uris[0], reason=reason, thread=uris)
        reason = None if total == 1 else f"thread of {total} posts: {', '.join(uris)}"
        if reason and earlier:
            reason += f" ({earlier} of them already on Bluesky from an earlier attempt)"
        if message.reply_to:
            reason = f"in reply to {message.reply_to}" + (f"; {reason}" if reason else "")
        return self._receipt(message, "sent", provider_id=uris[0], reason=reason, thread=uris)

    def _create(self, did: str, text: str, language: str, before: _Ref | None) -> _Ref:
        from atproto import models

        reply = None
        if before is not None:
            reply = models.AppBskyFeedPost.ReplyRef(
                root=models.ComAtprotoRepoStrongRef.Main(uri=before.root_uri, cid=before.root_cid),
                parent=models.ComAtprotoRepoStrongRef.Main(uri=before.uri, cid=before.cid),
            )
        record = models.AppBskyFeedPost.Record(
            text=text, created_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            langs=[language], facets=link_facets(text) or None, reply=reply,
        )
        created = self._limited(self._client.com.atproto.repo.create_record,
                                models.ComAtprotoRepoCreateRecord.Data(repo=did, collection=POST, record=record))
        if before is None:
            return _Ref(created.uri, created.cid, created.uri, created.cid)
        return _Ref(created.uri, created.cid, before.root_uri, before.root_cid)

    def _parent(self, did: str, uri: str) -> _Ref:
        """The post an update replies to (the notice's latest thread in this language), and its thread's root."""
        from atproto import models

        rkey = uri.rsplit("/", 1)[-1]
        found = self._limited(self._client.com.atproto.repo.get_record,
                              models.ComAtprotoRepoGetRecord.Params(repo=did, collection=POST, rkey=rkey))
        reply = _field(found.value, "reply")
        root = _field(reply, "root") if reply is not None else None
        if root is None:
            return _Ref(found.uri, found.cid, found.uri, found.cid)
        return _Ref(found.uri, found.cid, _field(root, "uri"), _field(root, "cid"))

    def _already_posted(self, did: str, posts: Sequence[str], parent: _Ref | None) -> list[_Ref]:
        """The first posts of this thread that are on Bluesky already, in order: post 1 with its text (replying to
        ``parent`` when there is one), then each next one with its text replying to the one before."""
        from atproto import models

        page = self._limited(self._client.com.atproto.repo.list_records,
                             models.ComAtprotoRepoListRecords.Params(repo=did, collection=POST, limit=LOOKUP_PAGE))
        records = list(reversed(page.records))  # oldest first: a thread's posts in the order they were made
        refs: list[_Ref] = []
        for text in posts:
            before = refs[-1] if refs else parent
            found = None
            for record in records:
                reply = _field(record.value, "reply")
                parent_uri = _field(_field(reply, "parent"), "uri") if reply is not None else None
                if _field(record.value, "text") == text and parent_uri == (before.uri if before else None):
                    found = record
            if found is None:
                break
            root = (before.root_uri, before.root_cid) if before else (found.uri, found.cid)
            refs.append(_Ref(found.uri, found.cid, *root))
        return refs

    def reconcile(self, lost: Sequence[tuple[Message, datetime]]) -> list[Receipt]:
        """Messages a crashed run left unknown are sent again: sending reads the account's posts first and goes on
        from the last one of the thread that is up (``_already_posted``), so nothing is posted twice."""
        return [self._receipt(message, "retry", reason="an earlier run stopped mid-thread; posting again continues it")
                for message, _ in lost]

    def withdraw(self, messages: Sequence[Message], why: str) -> list[Receipt]:
        """Delete the posts each message names (``posted``): `cancel --delete-posts`. Deleting a post that is gone
        succeeds on Bluesky; any refusal fails that message and lists what is still up."""
        import httpx
        from atproto import models
        from atproto.exceptions import AtProtocolError

        receipts = []
        for message in messages:
            left = list(message.posted)
            try:
                did = self._login()
                while left:
                    self._limited(self._client.com.atproto.repo.delete_record, models.ComAtprotoRepoDeleteRecord.Data(
                        repo=did, collection=POST, rkey=left[0].rsplit("/", 1)[-1]))
                    left.pop(0)
            except _Interrupted:
                receipts.append(self._receipt(message, "not_started",
                                              reason=f"{INTERRUPTED}; still on Bluesky: {' '.join(left)}"))
                continue
            except (AtProtocolError, httpx.TransportError) as exc:
                receipts.append(self._receipt(message, "failed", reason=(
                    f"Bluesky did not delete post {left[0]} ({self._detail(exc)}); still on Bluesky: {' '.join(left)}"
                )))
                continue
            receipts.append(self._receipt(message, "sent",
                                          reason=f"{why}: deleted {len(message.posted)} post(s) from Bluesky"))
        return receipts

    def _limited(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """One request to Bluesky, started when --rate / --concurrency allow it."""
        with self.request() as go:
            if not go:
                raise _Interrupted
            return call(*args, **kwargs)

    def _unfinished(self, message: Message, refs: list[_Ref], total: int, status: Status, what: str,
                    **fields: Any) -> Receipt:
        first = refs[0].uri if refs else None
        return self._receipt(message, status, provider_id=first, reason=self._progress(refs, total, what), **fields)

    def _progress(self, refs: list[_Ref], total: int, what: str) -> str:
        if not refs:
            return what
        return f"{what}; {len(refs)} of {total} posts already on Bluesky ({', '.join(r.uri for r in refs)})"

    def _detail(self, exc: Exception) -> str:
        """The server's error in its words, or the transport failure's name; never the app password."""
        text = str(exc) if getattr(exc, "response", None) is not None else type(exc.__cause__ or exc).__name__
        return mask(text).replace(self._settings.app_password.reveal(), HIDDEN)

    def _receipt(self, message: Message, status: Status, **fields: Any) -> Receipt:
        return Receipt(message.id, self.name, message.recipient, status, **fields)


def _field(value: Any, name: str) -> Any:
    """A field of a record as the SDK returns it: a model, or a dict for a record type it does not know."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _length_problem(posts: Sequence[str]) -> str | None:
    """Why these posts cannot go out as they are, checked before the first one is posted; None when they can."""
    if not posts:
        return "the Bluesky rendering has no text; check the social template (nothing was posted)"
    for number, post in enumerate(posts, 1):
        if not post.strip():
            return f"post {number} of {len(posts)} is empty; check the social template (nothing was posted)"
        if post_length(post) > MAX_GRAPHEMES:
            return (
                f"post {number} of {len(posts)} is {post_length(post)} characters, over Bluesky's {MAX_GRAPHEMES}; "
                "shorten the social template or the notice text (nothing was posted)"
            )
    return None
