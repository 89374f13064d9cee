"""A notice over time: its releases (alert, updates, all-clear, cancel), its expiry, and its public CAP feed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from broadcast.errors import InputError, NoticeError
from broadcast.ledger import Ledger
from broadcast.notice import Notice, field_line

#: the variable that says where `send` also writes the CAP feed
FEED_DIR_VARIABLE = "BROADCAST_FEED_DIR"


def digest(notice: Notice) -> str:
    """A hash of everything the notice file says: the same content sent again is the same release."""
    return hashlib.sha256(notice.model_dump_json().encode()).hexdigest()[:16]


def refuse_cancelled(ledger: Ledger | None, notice: Notice, path: str | Path) -> None:
    """A cancelled notice is not sent again by accident: only a file that sets ``phase:`` again and says something
    else than what was cancelled is a deliberate re-issue."""
    history = ledger.releases(notice.id) if ledger is not None else []
    if not history or history[-1]["msg_type"] != "Cancel":
        return
    cancelled = history[-1]
    if "phase" in notice.model_fields_set and digest(notice) != cancelled["digest"]:
        return
    why = f" ({cancelled['note']})" if cancelled["note"] else ""
    raise InputError(
        f"{notice.id} was cancelled on {cancelled['sent_at']:%Y-%m-%d %H:%M %Z}{why}; nothing was sent",
        file=path,
        row=field_line(path, "phase"),
        field="phase",
        hint="to send it again on purpose, edit the notice and set `phase:` (alert, update or all_clear); "
        "`broadcast status` shows its timeline",
    )


def next_release(ledger: Ledger, notice: Notice) -> tuple[str, str]:
    """(phase, CAP message type) of the notice as it goes out now: an edit of an alert is an update."""
    history = [r for r in ledger.releases(notice.id) if r["msg_type"] != "Cancel"]
    if not history:
        return notice.phase, "Alert"
    return ("update" if notice.phase == "alert" else notice.phase), "Update"


def release_number(ledger: Ledger, notice: Notice) -> int:
    """The number this content of the notice has, or will have once sent: the latest release's when it is the same
    content, else the next (a cancellation counts)."""
    history = ledger.releases(notice.id)
    if not history:
        return 1
    latest = history[-1]
    same = latest["digest"] == digest(notice) and latest["msg_type"] != "Cancel"
    return latest["number"] if same else latest["number"] + 1


def record_release(ledger: Ledger, notice: Notice, *, sender: str = "") -> dict[str, Any]:
    """Record that this content of the notice went out (a no-op when the latest release is the same)."""
    phase, msg_type = next_release(ledger, notice)
    latest = ledger.releases(notice.id)
    if latest and latest[-1]["digest"] == digest(notice) and latest[-1]["msg_type"] != "Cancel":
        return latest[-1]
    return ledger.record_release(notice.id, phase=phase, msg_type=msg_type, digest=digest(notice), sender=sender)


def record_cancel(ledger: Ledger, notice: Notice, reason: str, *, sender: str = "") -> dict[str, Any]:
    """Record the notice's cancellation, with its reason (the CAP Cancel message's note)."""
    return ledger.record_release(
        notice.id, phase=notice.phase, msg_type="Cancel", digest=digest(notice), sender=sender, note=reason
    )


def feed_sender(notice: Notice, path: str | Path) -> str:
    """What publishing the CAP feed needs, checked before anything is sent: an ``expires`` and a valid sender."""
    from broadcast.feed import cap_sender

    if notice.expires is None:
        raise NoticeError(
            "a CAP alert needs an end: the notice has no `expires`, so the feed cannot be written; nothing was sent",
            file=path,
            field="expires",
            hint="add `expires:` with a time zone, e.g. expires: 2026-11-30T18:00:00+01:00, or leave out --feed-dir",
        )
    return cap_sender(notice)


def write_feed(ledger: Ledger, notice: Notice, directory: str | Path, path: str | Path, *, now: datetime) -> list[Path]:
    """The CAP alert of the notice's latest release and the folder's Atom feed, from the ledger's releases."""
    from broadcast.feed import Release
    from broadcast.feed import write_feed as write

    sender = feed_sender(notice, path)
    history = ledger.releases(notice.id)
    if not history:
        raise InputError(
            f"nothing of {notice.id} has been sent yet, so there is no alert to publish",
            file=path,
            hint="the feed lists what went out: run `broadcast send … --yes` (add --feed-dir to write it then)",
        )
    releases = [
        Release(notice.id, r["number"], r["msg_type"], r["phase"], r["sent_at"], r["sender"] or sender, note=r["note"])
        for r in history
    ]
    return write(notice, directory, releases[-1], earlier=releases[:-1], now=now, source=path)


@dataclass(frozen=True)
class FeedRequest:
    """What `broadcast feed` was asked: the notice, where to write, and the ledger that knows its releases."""

    notice: Path
    out_dir: Path
    ledger: str | None = None


def publish(request: FeedRequest) -> list[Path]:
    """`broadcast feed`: the notice's latest release as a CAP alert, and the folder's Atom feed."""
    from broadcast.ledger import masked_url, now, open_ledger, resolve_url
    from broadcast.notice import load_notice

    notice = load_notice(request.notice)
    where = resolve_url(request.ledger, request.notice)
    ledger = open_ledger(where, dry_run=True)
    if ledger is None:
        raise InputError(
            f"no ledger at {masked_url(where)}: nothing of {notice.id} has been sent with it, so there is no alert "
            "to publish",
            file=request.notice,
            hint="the feed lists what went out: send first, or point --ledger at the ledger the notice was sent with",
        )
    try:
        return write_feed(ledger, notice, request.out_dir, request.notice, now=now())
    finally:
        ledger.engine.dispose()
