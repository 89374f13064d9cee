"""What reached whom: the delivery results `status` counts, the list `status --recipients` writes for the team who
phone the unreached, and the replies `broadcast replies` shows a person."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from broadcast.results import keyword

#: the states `status` counts as not reached: the provider gave up on the message
UNDELIVERED = ("undelivered", "failed", "dropped")
#: the columns of `status --recipients`, one row per contact and channel
RECIPIENT_COLUMNS = ("contact", "channel", "language", "address", "state", "at", "reason", "reply", "keyword")


def status(notice: str, url: str | None) -> dict[str, Any]:
    """The ledger's view of a notice (ledger.status) with its delivery results per channel and language: accepted,
    delivered, undelivered, bounced, replied per keyword, held and suppressed. ``notice``: its id or the file; with
    the file, replies are counted under its ``reply.keywords``."""
    from broadcast.ledger import reading

    keywords = _keywords(notice)
    with reading(
        notice, url, nothing="nothing has been sent with it",
        hint="run `broadcast send … --yes` first; give `status` the notice file to read the ledger beside it, "
        "or point --ledger / BROADCAST_LEDGER at the shared ledger",
    ) as (ledger, notice_id, shown):
        data = {**ledger.status(notice_id), "ledger": shown}
        data["results"] = tally(ledger.outcomes(notice_id), ledger.replies(notice_id), ledger.suppressed(), keywords)
        data["keywords"] = list(keywords)
        return data


def tally(
    outcomes: Sequence[Mapping[str, Any]],
    replies: Sequence[Mapping[str, Any]],
    suppressed: Mapping[str, set[str]],
    keywords: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """Per channel and language: accepted, delivered, undelivered, bounced, replied (keyword → count, and "other"
    for free text), held, and suppressed (recipients of the notice now suppressed there)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(channel: str, language: str) -> dict[str, Any]:
        return rows.setdefault((channel, language), {
            "channel": channel, "language": language, "accepted": 0, "delivered": 0, "undelivered": 0, "bounced": 0,
            "replied": dict.fromkeys([*keywords, "other"], 0), "held": 0, "suppressed": 0,
        })

    seen: set[tuple[str, str]] = set()
    for found in outcomes:
        entry = row(found["channel"], found["language"])
        if found["status"] == "sent":
            entry["accepted"] += 1
        elif found["status"] == "held":
            entry["held"] += 1
        state = found["state"]
        if state == "delivered":
            entry["delivered"] += 1
        elif state in UNDELIVERED:
            entry["undelivered"] += 1
        elif state == "bounced":
            entry["bounced"] += 1
        who = (found["channel"], found["recipient"])
        if who not in seen and found["recipient"] in suppressed.get(found["channel"], ()):
            seen.add(who)
            entry["suppressed"] += 1
    for reply in replies:
        if reply["action"]:
            continue
        matched = keyword(reply["text"], keywords) or "other"
        row(reply["channel"], reply["language"])["replied"][matched] += 1
    return sorted(rows.values(), key=lambda r: (r["channel"], r["language"]))


def unmatched(notice: str, url: str | None) -> dict[str, Any]:
    """The replies to a notice that match none of its keywords (nor STOP or START), oldest first, for a person to
    read: when, from whom (the number and the contact), what they wrote."""
    from broadcast.ledger import reading

    keywords = _keywords(notice)
    with reading(
        notice, url, nothing="nothing has been sent with it, so no one has replied",
        hint="give `replies` the notice file to read the ledger beside it, or point --ledger at the shared ledger",
    ) as (ledger, notice_id, shown):
        found = [
            {"at": r["at"].isoformat(), "channel": r["channel"], "sender": r["sender"], "contact": r["contact"],
             "language": r["language"], "text": r["text"]}
            for r in ledger.replies(notice_id) if not r["action"] and keyword(r["text"], keywords) is None
        ]
        return {"notice": notice_id, "ledger": shown, "replies": found}


def recipients(notice: str, url: str | None) -> list[tuple[str, ...]]:
    """One row per contact and channel with their latest state (RECIPIENT_COLUMNS), the unreached first: for the team
    who will phone them. The address is real, not masked: this is a working list."""
    from broadcast.ledger import reading

    keywords = _keywords(notice)
    with reading(
        notice, url, nothing="nothing has been sent with it",
        hint="give `status` the notice file to read the ledger beside it, or point --ledger at the shared ledger",
    ) as (ledger, notice_id, _):
        latest: dict[tuple[str, str], Mapping[str, Any]] = {}
        for found in ledger.outcomes(notice_id):
            key = (found["channel"], found["recipient"])
            if key not in latest or (found["last_at"] and found["last_at"] >= latest[key]["last_at"]):
                latest[key] = found
        answered: dict[tuple[str, str], Mapping[str, Any]] = {}
        for reply in ledger.replies(notice_id):
            answered[(reply["channel"], reply["sender"])] = reply
    rows = []
    for (channel, address), found in latest.items():
        state = found["state"] or found["status"]
        at = found["state_at"] or found["sent_at"] or found["last_at"]
        reason = found["state_reason"] or found["reason"]
        reply = answered.get((channel, address))
        text = reply["text"] if reply else ""
        matched = (reply["action"] or keyword(text, keywords) or "") if reply else ""
        rows.append((found["contact"], channel, found["language"], address, state, at.isoformat() if at else "",
                     reason, text, matched))
    # the ones the provider gave up on first, then those not known to have arrived, then the delivered
    order = {state: 0 for state in (*UNDELIVERED, "bounced")} | {"delivered": 2}
    return sorted(rows, key=lambda r: (order.get(r[4], 1), r[0], r[1]))


def write_recipients(rows: Sequence[tuple[str, ...]], path: Path) -> Path:
    """Write ``rows`` as CSV, every cell spreadsheet-safe (display.csv_cell: ``+254…`` becomes ``'+254…``)."""
    import csv

    from broadcast.display import csv_row

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(RECIPIENT_COLUMNS)
        writer.writerows(csv_row(list(r)) for r in rows)
    return path


def _keywords(notice: str) -> Mapping[str, Sequence[str]]:
    """The notice file's reply keywords; none when ``notice`` is an id (the ledger keeps no notice text)."""
    if not notice.endswith((".yaml", ".yml")) or not Path(notice).is_file():
        return {}
    from broadcast.notice import load_notice

    reply = getattr(load_notice(notice), "reply", None)
    return dict(reply.keywords) if reply is not None else {}
