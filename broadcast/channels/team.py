"""The team-chat channel: one staff-facing post to every Apprise URL in BROADCAST_TEAM_URLS (Slack, Teams, ...)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from broadcast.channels.base import Channel, RenderOptions
from broadcast.config import HIDDEN, Env, Secret, mask
from broadcast.message import INTERRUPTED, Message, Receipt, Rendering, Status
from broadcast.text import compact

if TYPE_CHECKING:
    from broadcast.notice import LocalNotice, Notice

#: the variable that lists the chats; every URL in it carries a webhook token or a password, so all of it is secret
URLS_VARIABLE = "BROADCAST_TEAM_URLS"
#: Apprise URLs are separated by commas or white space, as Apprise's own configuration files write them
_SEPARATOR = re.compile(r"[,\s]+")
#: the part of a URL that may be shown: its scheme (slack, msteams, tgram, matrix, discord)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
#: how Apprise's plugins log the HTTP status of a refused post: "Failed to send Slack notification: ... error=410."
_HTTP_ERROR = re.compile(r"error=(\d{3})\b")


@dataclass(frozen=True)
class TeamSettings:
    #: the Apprise URLs, in the order BROADCAST_TEAM_URLS lists them; each one is a secret
    urls: tuple[Secret, ...]

    @classmethod
    def from_env(cls, env: Env) -> TeamSettings | None:
        """BROADCAST_TEAM_URLS: Apprise URLs separated by commas or spaces; each must be one Apprise can use."""
        if not env.need(URLS_VARIABLE):
            return None
        urls = tuple(u for u in _SEPARATOR.split(env.get(URLS_VARIABLE)) if u)
        for position, url in enumerate(urls, 1):
            problem = url_problem(url)
            if problem:
                env.problem(f"team: {URLS_VARIABLE} entry {position} ({scheme_of(url)}) {problem}")
        return cls(tuple(Secret(u) for u in urls))


def scheme_of(url: str) -> str:
    """How a URL is named in messages: its scheme only (``slack://…``), never its tokens."""
    found = _SCHEME.match(url)
    return f"{found.group(1).lower()}://…" if found else "no scheme"


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use ``url``, without quoting any of it; None when it can."""
    import apprise

    if not _SCHEME.match(url):
        return "is not a URL: write it as scheme://…, e.g. slack://TokenA/TokenB/TokenC (see Apprise's wiki)"
    with apprise.LogCapture(level=logging.DEBUG, fmt="%(message)s") as log:
        plugin = apprise.Apprise.instantiate(url)
    if plugin is not None:
        return None
    said = _last_line(log.getvalue(), [url])
    return f"is not an Apprise URL it can use{': ' + said if said else ''}; check the scheme and the tokens"


def _last_line(log: str, secrets: Sequence[str]) -> str:
    """The last thing Apprise logged, with the URLs and their parts hidden."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return _hide(lines[-1], secrets) if lines else ""


def _refused_for_good(log: str) -> bool:
    """True when Apprise logged an HTTP 4xx answer other than 408 and 429: the chat refuses the post itself.

    Apprise's plugins return only True or False; most log the HTTP status as ``error=NNN``. A failure without one
    (a connection error, a timeout) is taken as transient.
    """
    codes = [int(code) for code in _HTTP_ERROR.findall(log)]
    return bool(codes) and all(400 <= code < 500 and code not in (408, 429) for code in codes)


def _hide(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every URL, and every part of one long enough to be a token, replaced by <hidden>."""
    for url in secrets:
        parts = [url, *re.split(r"[/:@?&=#]+", url.split("://", 1)[-1])]
        for part in sorted(parts, key=len, reverse=True):
            if len(part) >= 6:
                text = text.replace(part, HIDDEN)
    return mask(text)


class TeamChannel(Channel):
    """Apprise: one post per configured chat URL, in the notice's default language, for the staff who answer."""

    name: ClassVar[str] = "team"
    title: ClassVar[str] = "Team chat"
    provider: ClassVar[str] = "Apprise"
    personal: ClassVar[bool] = False
    # needs BROADCAST_TEAM_URLS set up first: used only when --channel names it
    by_default: ClassVar[bool] = False
    templates: ClassVar[dict[str, str]] = {"subject": "team/title.txt.j2", "text": "team/body.txt.j2"}
    settings: ClassVar[type[TeamSettings]] = TeamSettings
    secrets: ClassVar[tuple[str, ...]] = (URLS_VARIABLE,)
    #: Slack's incoming webhooks take about one post a second per channel, Teams' about four; one at a time keeps
    #: every service under its limit and keeps Apprise's log (the reason on a receipt) to one post
    max_concurrency: ClassVar[int] = 1
    #: the shortest limit of the services named in BROADCAST_TEAM_URLS' documentation: Telegram, 4,096 characters
    max_body: ClassVar[int] = 4096

    @classmethod
    def languages(cls, notice: Notice) -> list[str]:
        # staff read the notice's first language; they have the other languages in the staff brief
        return [notice.default_language]

    @classmethod
    def shape(cls, rendering: Rendering, parts: dict[str, str], options: RenderOptions, local: LocalNotice) -> Rendering:
        return replace(rendering, subject=compact(parts["subject"]), text=parts["text"].strip())

    @classmethod
    def stats(cls, rendering: Rendering) -> dict[str, Any]:
        return {"characters": len(rendering.text), "subject": rendering.subject}

    @classmethod
    def targets(cls, env: Env) -> tuple[str, ...]:
        # One ledger recipient per chat, named by its scheme and a hash of its URL: the ledger never holds a token,
        # and the name stays the same when the list is reordered. Without URLs (a dry-run) there is one post.
        urls = [u for u in _SEPARATOR.split(env.get(URLS_VARIABLE)) if u]
        return tuple(dict.fromkeys(target_of(url) for url in urls)) or ("",)

    def __init__(self, settings: TeamSettings, **run: Any) -> None:
        super().__init__(settings, **run)
        self.settings = settings
        #: target (as in the recipient) → (position in BROADCAST_TEAM_URLS, URL)
        self._chats = {target_of(u.reveal()): (n, u) for n, u in enumerate(settings.urls, 1)}

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        return [self._send_one(message) for message in messages]

    def _send_one(self, message: Message) -> Receipt:
        import apprise

        target = message.recipient.split(":", 2)[2] if message.recipient.count(":") >= 2 else ""
        if target not in self._chats:
            # planned from another BROADCAST_TEAM_URLS than this run's: post nowhere rather than to a guess
            return Receipt(message.id, message.channel, message.recipient, "failed",
                           reason=f"this chat is no longer in {URLS_VARIABLE}; nothing was posted to it")
        position, secret = self._chats[target]
        url = secret.reveal()
        rendering = message.personal()
        with self.request() as go:
            if not go:
                return Receipt(message.id, message.channel, message.recipient, "not_started", reason=INTERRUPTED)
            with apprise.LogCapture(level=logging.INFO, fmt="%(message)s") as log:
                plugin = apprise.Apprise.instantiate(url)
                ok = plugin is not None and plugin.notify(body=rendering.text, title=rendering.subject)
        if ok:
            return Receipt(message.id, message.channel, message.recipient, "sent", f"entry {position}")
        said = _last_line(log.getvalue(), [url]) or "Apprise gave no reason"
        # A chat that refused for good (a revoked or archived webhook: HTTP 4xx) fails; any other failure (a
        # connection error, a 5xx, a timeout) is retried, at this chat alone: the others are recipients of their own.
        status: Status = "failed" if _refused_for_good(log.getvalue()) else "retry"
        reason = f"{URLS_VARIABLE} entry {position} ({scheme_of(url)}): {said}"
        return Receipt(message.id, message.channel, message.recipient, status, reason=reason)


def target_of(url: str) -> str:
    """A chat's name in the ledger: its scheme and the start of a SHA-256 of its URL (no token can be read back)."""
    found = _SCHEME.match(url)
    scheme = found.group(1).lower() if found else "chat"
    return f"{scheme}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
