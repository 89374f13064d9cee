"""The web channel: each language's banner as an HTML file, plus banner.json telling a site script which to show."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from broadcast.channels.base import Channel, RenderOptions
from broadcast.channels.publish import (
    Branch,
    Bucket,
    Folder,
    Publication,
    PublishError,
    Target,
    open_publication,
    parse_target,
)
from broadcast.config import Env, Secret
from broadcast.errors import ConfigError
from broadcast.message import Message, Receipt, Rendering, Status, placeholder

if TYPE_CHECKING:
    from broadcast.notice import LocalNotice

INDEX_FILE = "banner.json"
RTL_LANGUAGES = frozenset({"ar", "he", "fa", "ur"})
#: the tokens templates/web/banner.html.j2 prints where the time of publishing goes: filled at send time, so the
#: rendered banner (and with it the channel's version) stays the same from one run to the next
PUBLISHED_AT = placeholder("published_at")
PUBLISHED_TIME = placeholder("published_time")
#: a language's status in banner.json: shown, or taken down (its file deleted) and why
ACTIVE = "active"
WITHDRAWN = ("expired", "cancelled")


def banner_file(language: str) -> str:
    return f"banner.{language}.html"


def text_direction(language: str) -> str:
    return "rtl" if language.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


def _stamped(html: str, now: datetime) -> str:
    """The banner with its publishing time filled in (kept out of the rendering, so it is not in the version)."""
    html = html.replace(PUBLISHED_AT, _utc(now))
    return html.replace(PUBLISHED_TIME, now.astimezone(timezone.utc).strftime("%H:%M UTC"))


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class WebSettings:
    #: --web-dir: a folder, s3://BUCKET/FOLDER, or git+URL#BRANCH[:FOLDER] (see publish.parse_target)
    location: Path | str = "web"
    #: the S3-compatible service's URL (BROADCAST_WEB_S3_ENDPOINT or AWS_ENDPOINT_URL); None: AWS itself
    s3_endpoint: str | None = None
    #: BROADCAST_WEB_GIT_TOKEN: the password for a git+https branch whose URL carries none
    git_token: Secret | None = None

    @classmethod
    def from_env(cls, env: Env) -> WebSettings:
        """--web-dir, else BROADCAST_WEB_DIR, else ./web; a location broadcast cannot publish to is a problem."""
        location = env.option("web_dir") or env.get("BROADCAST_WEB_DIR") or "web"
        target = parse_target(location)
        if isinstance(target, str):
            env.problem(f"web: {target}")
        elif isinstance(target, Folder) and target.path.exists() and not target.path.is_dir():
            env.problem(f"web: --web-dir {location} is a file, not a folder; choose a folder (broadcast creates it)")
        endpoint = token = None
        if isinstance(target, Bucket):
            endpoint = env.url("BROADCAST_WEB_S3_ENDPOINT") or env.url("AWS_ENDPOINT_URL")
        if isinstance(target, Branch):
            token = env.secret("BROADCAST_WEB_GIT_TOKEN")
        return cls(location, endpoint, token)

    def target(self) -> Target:
        target = parse_target(self.location, s3_endpoint=self.s3_endpoint, git_token=self.git_token)
        if isinstance(target, str):
            raise ConfigError(target, field="--web-dir", hint="see `broadcast send --help` for the forms --web-dir takes")
        return target


class WebChannel(Channel):
    """Writes banner.<lang>.html per message and keeps banner.json listing every language of the notice."""

    name: ClassVar[str] = "web"
    title: ClassVar[str] = "Web banner"
    provider: ClassVar[str] = "the web folder"
    personal: ClassVar[bool] = False
    standing: ClassVar[bool] = True
    templates: ClassVar[dict[str, str]] = {"html": "web/banner.html.j2"}
    settings: ClassVar[type[WebSettings]] = WebSettings
    #: an S3 bucket's credentials (read the standard AWS way) and a git branch's token: masked wherever printed
    secrets: ClassVar[tuple[str, ...]] = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "BROADCAST_WEB_GIT_TOKEN")
    max_batch: ClassVar[int] = 1000

    @classmethod
    def shape(cls, rendering: Rendering, parts: dict[str, str], options: RenderOptions, local: LocalNotice) -> Rendering:
        # the banner's subject is its headline, for the banner.json a site script reads
        expires = _utc(local.expires) if local.expires is not None else ""
        return replace(rendering, subject=local.headline, html=parts["html"].strip(), phase=local.phase, expires=expires)

    @classmethod
    def preview(cls, rendering: Rendering, now: datetime) -> Rendering:
        # the preview shows the banner as it would be published now
        return replace(rendering, html=_stamped(rendering.html, now))

    def __init__(self, settings: WebSettings, **run: Any) -> None:
        super().__init__(settings, **run)
        self.target = settings.target()
        #: what "now" is: when a banner is published, and whether its notice has expired (tests move it)
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        # banner.json is read, merged and replaced as one step, whichever batch gets there first
        self._lock = threading.Lock()
        # one per run, made at the first send: a bucket's client, a branch already fetched
        self._publication: Publication | None = None

    def close(self) -> None:
        if self._publication is not None:
            self._publication.close()
            self._publication = None

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        """Publish each message's banner and list it in banner.json; a banner already expired is taken down instead."""
        now = self.clock()
        receipts: dict[str, Receipt] = {}
        with self._lock:
            publication = self._open(messages, receipts)
            if publication is None:
                return [receipts[m.id] for m in messages]
            index = _index(publication)
            if any(not _expired(m, now) for m in messages) and index.get("notice") != messages[0].notice_id:
                index = {}  # another notice's banner.json: this notice's banners replace it
            written: list[Message] = []
            gone: list[Message] = []
            for message in messages:
                if _expired(message, now):
                    gone.append(message)
                    continue
                name = banner_file(message.language)
                html = _stamped(message.personal().html, now)
                try:
                    publication.write(name, html if html.endswith("\n") else html + "\n")
                except PublishError as exc:
                    receipts[message.id] = self._receipt(message, "failed", reason=exc.reason)
                else:
                    receipts[message.id] = self._receipt(message, "sent", provider_id=publication.where(name))
                    written.append(message)
            for message in gone:
                receipts[message.id] = self._take_down(
                    publication, index, message, "expired", f"expired at {message.rendering.expires}", "skipped"
                )
            taken = [m for m in gone if receipts[m.id].status == "skipped" and receipts[m.id].provider_id]
            if written or taken:
                self._list(publication, index, written, now)
                self._publish(publication, index, written + taken, receipts, _summary(messages, "banner"))
        return [receipts[m.id] for m in messages]

    def withdraw(self, messages: Sequence[Message], why: str) -> list[Receipt] | None:
        """Delete each message's banner file and list it in banner.json as ``why`` ("expired" or "cancelled").

        "sent" when taken down (or already gone), "skipped" when the site shows another notice now, "failed" when
        the file could not be removed.
        """
        if why not in WITHDRAWN:
            raise ValueError(f"why must be one of {WITHDRAWN}, not {why!r}")
        receipts: dict[str, Receipt] = {}
        with self._lock:
            publication = self._open(messages, receipts)
            if publication is None:
                return [receipts[m.id] for m in messages]
            index = _index(publication)
            for message in messages:
                receipts[message.id] = self._take_down(publication, index, message, why, f"taken down: {why}", "sent")
            taken = [m for m in messages if receipts[m.id].provider_id]
            if taken:
                self._publish(publication, index, taken, receipts, _summary(messages, f"banner {why}"))
        return [receipts[m.id] for m in messages]

    def _open(self, messages: Sequence[Message], receipts: dict[str, Receipt]) -> Publication | None:
        if self._publication is not None:
            return self._publication
        try:
            self._publication = open_publication(self.target)
            return self._publication
        except Exception as exc:  # boto3 refusing its configuration (a bad region or endpoint) is not a bug of ours
            for message in messages:
                reason = f"could not reach {self.target}: {exc}; check --web-dir / BROADCAST_WEB_DIR"
                receipts[message.id] = self._receipt(message, "failed", reason=PublishError(reason).reason)
            return None

    def _take_down(
        self, publication: Publication, index: dict[str, Any], message: Message, why: str, said: str, done: Status
    ) -> Receipt:
        """Delete one language's banner and mark it in ``index``; provider_id is set when something was changed."""
        name = banner_file(message.language)
        if index.get("notice") not in (None, message.notice_id):
            return self._receipt(
                message, "skipped", reason=f"{said}; nothing to take down: the site shows notice {index['notice']} now"
            )
        try:
            publication.delete(name)
        except PublishError as exc:
            return self._receipt(message, "failed", reason=exc.reason)
        index["notice"] = message.notice_id
        languages = index.setdefault("languages", {})
        entry = languages.setdefault(message.language, _entry(message))
        entry["status"] = why
        return self._receipt(message, done, provider_id=publication.where(name), reason=said)

    def _list(self, publication: Publication, index: dict[str, Any], written: Sequence[Message], now: datetime) -> None:
        """Add the banners just written to ``index``, as shown."""
        for message in written:
            index["notice"] = message.notice_id
            index.setdefault("languages", {})[message.language] = {**_entry(message), "updated_at": _utc(now)}

    def _publish(
        self, publication: Publication, index: dict[str, Any], changed: Sequence[Message],
        receipts: dict[str, Receipt], summary: str,
    ) -> None:
        """Write banner.json and make the changes public; a failure fails every receipt of what changed."""
        languages: dict[str, Any] = index.get("languages") or {}
        active = [lang for lang, entry in languages.items() if entry.get("status") == ACTIVE]
        latest = max(languages.values(), key=lambda e: e.get("updated_at") or "", default={})
        default = index.get("default_language")
        content = {
            "notice": index.get("notice"),
            # the notice as the site shows it: its newest banner's phase and times; "status" says whether any shows
            "status": ACTIVE if active else (latest.get("status") or ACTIVE),
            "phase": latest.get("phase", "alert"),
            "updated_at": latest.get("updated_at"),
            "expires": latest.get("expires"),
            # an earlier batch of the same notice already chose the default: its first language
            "default_language": default if default in languages else (active or list(languages) or [None])[0],
            "languages": languages,
        }
        step = "list"
        try:
            publication.write(INDEX_FILE, json.dumps(content, ensure_ascii=False, indent=2) + "\n")
            step = "finish"
            publication.finish(summary)
        except PublishError as exc:
            for message in changed:
                if step == "list":
                    what = "written" if receipts[message.id].status == "sent" else "changed"
                    reason = f"{banner_file(message.language)} was {what} but the site will not list it: {exc.reason}"
                else:
                    reason = exc.reason
                receipts[message.id] = self._receipt(message, "failed", reason=reason)

    def _receipt(self, message: Message, status: Status, **fields: Any) -> Receipt:
        return Receipt(message.id, self.name, message.recipient, status, **fields)


def _entry(message: Message) -> dict[str, Any]:
    """One language's line in banner.json."""
    rendering = message.rendering
    return {
        "file": banner_file(message.language),
        "headline": message.personal().subject,
        "dir": text_direction(message.language),
        "phase": rendering.phase,
        "status": ACTIVE,
        "updated_at": None,
        "expires": rendering.expires or None,
    }


def _summary(messages: Sequence[Message], what: str) -> str:
    """The commit message on a git branch: which notice, what happened, in which languages."""
    return f"{messages[0].notice_id}: {what} ({', '.join(dict.fromkeys(m.language for m in messages))})"


def _expired(message: Message, now: datetime) -> bool:
    if not message.rendering.expires:
        return False
    return now >= datetime.fromisoformat(message.rendering.expires)


def _index(publication: Publication) -> dict[str, Any]:
    """The banner.json of an earlier batch or run; a missing or damaged one counts as none."""
    try:
        text = publication.read(INDEX_FILE)
        content = json.loads(text) if text else {}
    except (ValueError, PublishError):
        return {}
    if not isinstance(content, dict) or not isinstance(content.get("languages"), dict):
        return {}
    return content
