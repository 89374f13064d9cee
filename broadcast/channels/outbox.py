"""The outbox channel: dry-run and preview write every rendering and every planned message to a folder, sending nothing."""

from __future__ import annotations

import csv
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TextIO

from broadcast.channels import REGISTRY
from broadcast.channels.base import Channel
from broadcast.display import clip, csv_row
from broadcast.errors import InputError
from broadcast.message import Message, Receipt, Rendering

PLAN_FILE = "plan.csv"
#: held_until: the local time (and zone) a message held for the recipient's quiet hours goes out; empty for the rest
PLAN_COLUMNS = ("channel", "language", "recipient", "contact", "variant", "message_id", "held_until")
#: the preview page (page.py writes it through write_file)
PAGE_FILE = "index.html"
#: left in every folder broadcast writes a preview to; only such a folder is cleared and written again
MARKER_FILE = ".broadcast-out"
MARKER_TEXT = (
    "broadcast writes previews and dry-runs to this folder (renderings, plan.csv, index.html).\n"
    "Each new preview clears the earlier one here. Delete this file to keep broadcast from writing here.\n"
)
#: a preview file must be readable beside the renderings, which people open and share
FILE_MODE = 0o644
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: entries listed when --out is refused; the rest are counted
_LISTED = 5


def claim_folder(directory: str | Path) -> Path:
    """Make ``directory`` ready for a new preview, or refuse it when broadcast did not make it.

    A missing or empty folder gets the marker file. A marked folder loses what an earlier preview
    wrote there (renderings of another notice or language must not be mistaken for this one's);
    links among those are removed, never followed. Any other folder is someone's files: refused, exit 2.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(
            f"--out {clip(directory)} is a file, not a folder; nothing was written and nothing was sent",
            hint="choose a folder with --out; broadcast creates it if it does not exist",
        )
    directory.mkdir(parents=True, exist_ok=True)
    entries = sorted(os.listdir(directory))
    if MARKER_FILE in entries and stat.S_ISREG(os.lstat(directory / MARKER_FILE).st_mode):
        _clear(directory)
        return directory
    if entries:
        listed = ", ".join(clip(e, 60) for e in entries[:_LISTED])
        if len(entries) > _LISTED:
            listed += f" and {len(entries) - _LISTED} more"
        raise InputError(
            f"the --out folder {clip(os.path.abspath(directory))} already holds files broadcast did not write "
            f"({listed}); a preview there would overwrite them, so nothing was written and nothing was sent",
            hint="give --out a new or empty folder (broadcast creates it), or move those files away; "
            f"a folder broadcast wrote before has a {MARKER_FILE} file and is reused",
        )
    write_file(directory / MARKER_FILE, MARKER_TEXT)
    return directory


def _clear(directory: Path) -> None:
    """Remove what an earlier preview wrote: the plan, the page, unfinished temporary files, each channel's folder."""
    for name in os.listdir(directory):
        path = directory / name
        ours = name in (PLAN_FILE, PAGE_FILE) or name in REGISTRY or (name.startswith(".") and name.endswith(".tmp"))
        if not ours:
            continue
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)  # removes links inside without following them
        else:
            path.unlink()  # a link is removed itself; what it points to is left alone


def write_file(path: Path, text: str) -> Path:
    """Write ``path`` whole through a new temporary file renamed over it.

    The rename replaces whatever entry had the name, so a link planted there (symbolic or hard) is
    replaced rather than written through, and a browser never sees half a page.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temp, FILE_MODE)  # mkstemp makes it private
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def _own_folder(folder: Path) -> Path:
    """A channel's folder inside --out, made here if missing; a link in its place is refused, never followed."""
    folder.mkdir(exist_ok=True)
    if not stat.S_ISDIR(os.lstat(folder).st_mode):
        raise InputError(
            f"{clip(folder)} is a link or a file, not a folder broadcast made; nothing was written through it "
            "and nothing was sent",
            field="--out",
            hint="remove it, or give --out a new folder",
        )
    return folder


class Outbox:
    """One preview folder shared by the outbox channels: one plan row per message, written as it is "sent"."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._plan = None
        self._writer = None
        self._users = 0
        self._started = False
        self._temp: str | None = None

    def open(self) -> None:
        with self._lock:
            if self._users == 0:
                # channels open and close at their own pace: start the file once, then append
                self.directory.mkdir(parents=True, exist_ok=True)
                if self._started:
                    self._plan = _append(self.directory / PLAN_FILE)
                else:
                    # written beside and renamed over plan.csv on close: a link planted there is replaced, not followed
                    fd, self._temp = tempfile.mkstemp(dir=self.directory, prefix=f".{PLAN_FILE}.", suffix=".tmp")
                    os.chmod(self._temp, FILE_MODE)
                    self._plan = os.fdopen(fd, "w", encoding="utf-8", newline="")
                self._writer = csv.writer(self._plan)
                if not self._started:
                    self._writer.writerow(PLAN_COLUMNS)
                    self._started = True
            self._users += 1

    def close(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._plan is not None:
                self._plan.close()
                self._plan = self._writer = None
                if self._temp is not None:
                    os.replace(self._temp, self.directory / PLAN_FILE)
                    self._temp = None

    def record(self, messages: Sequence[Message]) -> None:
        with self._lock:
            for message in messages:
                self._writer.writerow(
                    csv_row(
                        (
                            message.channel,
                            message.language,
                            message.recipient,
                            message.contact_key,
                            message.rendering.variant,
                            message.id,
                            "",
                        )
                    )
                )

    def hold(self, held: Sequence[Any]) -> None:
        """Plan rows for messages held for quiet hours (quiet.Held), with when each goes out in its recipient's zone."""
        with self._lock:
            for decision in held:
                m = decision.message
                until = f"{decision.local_until().isoformat(timespec='minutes')} {decision.zone}"
                self._writer.writerow(
                    csv_row((m.channel, m.language, m.recipient, m.contact_key, m.rendering.variant, m.id, until))
                )


def _append(path: Path) -> TextIO:
    """plan.csv reopened to add rows: never through a link, never a file with another name elsewhere."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise InputError(
            f"{clip(path)} was replaced by a link while broadcast wrote it; nothing more was written to it",
            field="--out",
            hint="give --out a folder only broadcast writes to",
        )
    return os.fdopen(fd, "a", encoding="utf-8", newline="")


def rendering_files(rendering: Rendering) -> dict[str, str]:
    """File name → content for one rendering, as a person would want to open them."""
    stem = rendering.language + (f".{rendering.variant}" if rendering.variant else "")
    files: dict[str, str] = {}
    if rendering.channel == "email":
        files[f"{stem}.subject.txt"] = rendering.subject + "\n"
        files[f"{stem}.html"] = rendering.html
        files[f"{stem}.txt"] = rendering.text + "\n"
    elif rendering.channel == "social":
        files[f"{stem}.txt"] = "".join(f"--- post {i} of {len(rendering.posts)} ---\n{p}\n" for i, p in enumerate(rendering.posts, 1))
    elif rendering.channel == "web":
        files[f"{stem}.html"] = rendering.html + "\n"
    else:
        files[f"{stem}.txt"] = rendering.text + "\n"
    return files


def write_rendering(directory: Path, rendering: Rendering) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    folder = _own_folder(directory / rendering.channel)
    return [write_file(folder / name, content) for name, content in rendering_files(rendering).items()]


class OutboxChannel(Channel):
    """Any channel, in dry-run: each message becomes a plan row and its rendering a file; nothing leaves the machine."""

    max_batch: ClassVar[int] = 1000
    live: ClassVar[bool] = False

    def __init__(self, name: str, outbox: Outbox, **run: Any) -> None:
        super().__init__(None, **run)
        self.name = name  # type: ignore[misc] - one outbox class stands in for every channel
        self.outbox = outbox

    def open(self) -> None:
        self.outbox.open()

    def close(self) -> None:
        self.outbox.close()

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        self.outbox.record(messages)
        return [Receipt(m.id, self.name, m.recipient, "previewed", reason="dry-run: written to the outbox") for m in messages]
