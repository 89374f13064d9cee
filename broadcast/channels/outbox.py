"""The outbox channel: dry-run and preview write every rendering and every planned message to a folder, sending nothing."""

from __future__ import annotations

import csv
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from broadcast.channels.base import Channel, Message, Receipt, Rendering

PLAN_FILE = "plan.csv"
PLAN_COLUMNS = ("channel", "language", "recipient", "contact", "variant", "message_id")


class Outbox:
    """One preview folder shared by the outbox channels: one plan row per message, written as it is "sent"."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._plan = None
        self._writer = None
        self._users = 0
        self._started = False

    def open(self) -> None:
        with self._lock:
            if self._users == 0:
                # channels open and close at their own pace: start the file once, then append
                self.directory.mkdir(parents=True, exist_ok=True)
                self._plan = (self.directory / PLAN_FILE).open("a" if self._started else "w", encoding="utf-8", newline="")
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

    def record(self, messages: Sequence[Message]) -> None:
        with self._lock:
            for message in messages:
                self._writer.writerow(
                    (
                        message.channel,
                        message.language,
                        message.recipient,
                        message.contact_key,
                        message.rendering.variant,
                        message.id,
                    )
                )


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
    folder = directory / rendering.channel
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in rendering_files(rendering).items():
        path = folder / name
        path.write_text(content, encoding="utf-8")
        paths.append(path)
    return paths


class OutboxChannel(Channel):
    """Any channel, in dry-run: each message becomes a plan row and its rendering a file; nothing leaves the machine."""

    max_batch: ClassVar[int] = 1000
    live: ClassVar[bool] = False

    def __init__(self, name: str, outbox: Outbox) -> None:
        self.name = name  # type: ignore[misc] - one outbox class stands in for every channel
        self.outbox = outbox

    def open(self) -> None:
        self.outbox.open()

    def close(self) -> None:
        self.outbox.close()

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        self.outbox.record(messages)
        return [Receipt(m.id, self.name, m.recipient, "previewed", reason="dry-run: written to the outbox") for m in messages]
