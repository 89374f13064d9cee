"""The web channel: each language's banner as an HTML file, plus banner.json telling a site script which to show."""

from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from broadcast.channels.base import Channel, RenderOptions
from broadcast.config import Env
from broadcast.message import Message, Receipt, Rendering, Status

if TYPE_CHECKING:
    from broadcast.notice import LocalNotice

INDEX_FILE = "banner.json"
RTL_LANGUAGES = frozenset({"ar", "he", "fa", "ur"})
#: a new banner must be readable by the web server, which is rarely the user who sends
NEW_FILE_MODE = 0o644

_HINTS = {
    errno.EACCES: "broadcast may not write there; fix the folder's permissions or choose another with --web-dir",
    errno.EPERM: "broadcast may not write there; fix the folder's permissions or choose another with --web-dir",
    errno.EROFS: "that disk is read-only; choose another folder with --web-dir",
    errno.ENOSPC: "the disk is full; free some space and send again",
    errno.EDQUOT: "the disk quota is used up; free some space and send again",
    errno.ENOTDIR: "part of that path is a file, not a folder; choose another folder with --web-dir",
    errno.EEXIST: "a file with that name is in the way; move it or choose another folder with --web-dir",
}


def banner_file(language: str) -> str:
    return f"banner.{language}.html"


def text_direction(language: str) -> str:
    return "rtl" if language.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


@dataclass(frozen=True)
class WebSettings:
    directory: Path

    @classmethod
    def from_env(cls, env: Env) -> WebSettings:
        """--web-dir, else BROADCAST_WEB_DIR, else ./web."""
        return cls(Path(env.option("web_dir") or env.get("BROADCAST_WEB_DIR") or "web"))


class WebChannel(Channel):
    """Writes banner.<lang>.html per message and keeps banner.json listing every language of the notice."""

    name: ClassVar[str] = "web"
    title: ClassVar[str] = "Web banner"
    provider: ClassVar[str] = "the web folder"
    personal: ClassVar[bool] = False
    standing: ClassVar[bool] = True
    templates: ClassVar[dict[str, str]] = {"html": "web/banner.html.j2"}
    settings: ClassVar[type[WebSettings]] = WebSettings
    max_batch: ClassVar[int] = 1000

    @classmethod
    def shape(cls, rendering: Rendering, parts: dict[str, str], options: RenderOptions, local: LocalNotice) -> Rendering:
        # the banner's subject is its headline, for the banner.json a site script reads
        return replace(rendering, subject=local.headline, html=parts["html"].strip())

    def __init__(self, settings: WebSettings, **run: Any) -> None:
        super().__init__(settings, **run)
        self.directory = Path(os.path.abspath(settings.directory))
        # banner.json is read, merged and replaced as one step, whichever batch gets there first
        self._lock = threading.Lock()

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        receipts: dict[str, Receipt] = {}
        written: list[Message] = []
        with self._lock:
            for message in messages:
                path = self.directory / banner_file(message.language)
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    html = message.personal().html
                    write_atomic(path, html if html.endswith("\n") else html + "\n")
                except OSError as exc:
                    receipts[message.id] = self._receipt(message, "failed", reason=_failure(path, exc))
                else:
                    receipts[message.id] = self._receipt(message, "sent", provider_id=str(path))
                    written.append(message)
            if written:
                index = self.directory / INDEX_FILE
                try:
                    self._update_index(index, written)
                except OSError as exc:
                    for message in written:
                        listed = f"{banner_file(message.language)} was written but the site will not list it"
                        reason = f"{listed}: {_failure(index, exc)}"
                        receipts[message.id] = self._receipt(message, "failed", reason=reason)
        return [receipts[m.id] for m in messages]

    def _update_index(self, path: Path, messages: Sequence[Message]) -> None:
        notice = messages[0].notice_id
        index = _read_index(path)
        if index.get("notice") != notice:
            index = {}
        languages: dict[str, Any] = dict(index.get("languages") or {})
        for message in messages:
            languages[message.language] = {
                "file": banner_file(message.language),
                "headline": message.personal().subject,
                "dir": text_direction(message.language),
            }
        default = index.get("default_language")
        content = {
            "notice": notice,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            # an earlier batch of the same notice already chose the default: its first language
            "default_language": default if default in languages else messages[0].language,
            "languages": languages,
        }
        write_atomic(path, json.dumps(content, ensure_ascii=False, indent=2) + "\n")

    def _receipt(self, message: Message, status: Status, **fields: Any) -> Receipt:
        return Receipt(message.id, self.name, message.recipient, status, **fields)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new one, never half of either."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; only POSIX lets a folder be opened and synced."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_index(path: Path) -> dict[str, Any]:
    """The banner.json of an earlier batch or run; a missing or damaged one counts as none."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _failure(path: Path, exc: OSError) -> str:
    why = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0, "check the folder given with --web-dir (or BROADCAST_WEB_DIR)")
    return f"could not write {path}: {why}; {hint}"
