"""What became of each message after the provider accepted it, and what people replied: one way in for `sync` and `serve`.

A channel adapter turns what its provider says (a fetched message, an activity row, a webhook payload) into
``Event`` values; ``record(ledger, events)`` applies them. Applying the same event twice changes nothing, and a
message's state only moves forward, so a sync that crashed half-way is simply run again.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from broadcast.errors import ChannelError

Kind = Literal[
    "accepted", "queued", "sent", "delivered", "undelivered", "bounced", "failed", "dropped", "deferred",
    "spamreport", "unsubscribe", "open", "reply",
]

#: the order a message's state moves in; a later event with a lower rank (a late "sent") changes nothing. The final
#: states share the top rank: the first one reported stands.
RANK: Mapping[str, int] = {
    "accepted": 1, "queued": 2, "deferred": 3, "sent": 4,
    "delivered": 5, "undelivered": 5, "bounced": 5, "failed": 5, "dropped": 5,
}
#: the rank from which a state is final: `sync` stops asking about such a message
FINAL = 5
#: events that say nothing about delivery but about the person: spam reports and unsubscribes suppress the address
ENGAGEMENT = ("spamreport", "unsubscribe", "open")

#: carriers' and Twilio's standard opt-out keywords (Twilio handles these by default on long codes: STOP, STOPALL,
#: UNSUBSCRIBE, CANCEL, END, QUIT, and since 2025 REVOKE and OPTOUT); a reply of one of them suppresses SMS
OPT_OUT = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
#: and the opt-in ones that undo it (Twilio: START, UNSTOP, YES)
OPT_IN = frozenset({"start", "unstop", "yes"})

_EDGES = string.punctuation + string.whitespace + "¡¿«»“”‘’„‚…–—·।。、！？"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a provider reported about a message (a status) or from a person (a reply).

    A delivery event names its message by ``provider_id`` (Twilio's message SID, SendGrid's X-Message-Id) and, where
    one id covers several recipients (SendGrid), by ``recipient`` too; with no id it is the last message sent to
    ``recipient`` on the channel. A reply has the sender as ``recipient`` and what they wrote as ``text``.
    """

    channel: str
    kind: Kind
    #: when the provider says it happened; must carry its time zone
    at: datetime
    provider_id: str = ""
    recipient: str = ""
    #: the provider's reason or error code ("30003", a bounce's SMTP answer)
    reason: str = ""
    #: a reply's text, exactly as received
    text: str = ""
    #: the provider's own id for this event (SendGrid's sg_event_id, Twilio's inbound SID): the idempotency key
    event_id: str = ""

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"an event's time must carry its time zone: {self.at!r}")
        if self.kind not in RANK and self.kind not in ENGAGEMENT and self.kind != "reply":
            raise ValueError(f"not an event kind: {self.kind!r}")

    @property
    def key(self) -> str:
        """What makes two reports the same event: the provider's event id, else message, kind and time."""
        if self.event_id:
            return f"{self.channel}:{self.event_id}"
        who = self.provider_id or self.recipient
        return f"{self.channel}:{who}:{self.recipient if self.provider_id else ''}:{self.kind}:{self.at.astimezone(UTC).isoformat()}"


class Ledger(Protocol):
    """What record() needs of the ledger (ledger.Ledger): this module imports no ledger, so the notice (which
    validates its reply keywords here) and the channels can import it."""

    def apply_results(self, rows: Sequence[dict[str, Any]]) -> list[tuple[str, int]]: ...


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the provider accepted whose fate is not known yet: what `sync` asks the channel about."""

    message_id: str
    provider_id: str
    recipient: str
    sent_at: datetime | None = None


class ResultsUnavailable(ChannelError):
    """The provider has delivery results, but not for these credentials (SendGrid's Email Activity API is a paid
    add-on): `sync` reports it and goes on with the other channels."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``record`` did with a batch of events."""

    #: events seen for the first time
    recorded: int = 0
    #: events recorded before: nothing changed
    duplicates: int = 0
    #: messages whose state moved forward
    advanced: int = 0
    #: new events that did not move a state (it was already as far or further)
    kept: int = 0
    #: delivery events about no message in this ledger (another ledger's, or sent by hand)
    unmatched: int = 0
    #: replies recorded, STOP and START included
    replies: int = 0
    #: suppressions added (hard bounces, spam reports, unsubscribes, STOP) and lifted (START)
    suppressed: int = 0
    unsuppressed: int = 0

    def __add__(self, other: Applied) -> Applied:
        return Applied(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def normalize(text: str) -> str:
    """A reply as keywords are compared: accents and case folded, punctuation and spaces trimmed ("  Salamá! " →
    "salama")."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.casefold().split()).strip(_EDGES)


def action(text: str) -> str:
    """What a reply does before anyone reads it: "opt-out" (STOP and its synonyms), "opt-in" (START), or ""."""
    word = normalize(text)
    if word in OPT_OUT:
        return "opt-out"
    if word in OPT_IN:
        return "opt-in"
    return ""


def keyword(text: str, keywords: Mapping[str, Sequence[str]]) -> str | None:
    """The notice's keyword a reply matches (``{"SAFE": ["1", "safe", "salama"]}``), or None for free text.

    STOP and START are never a keyword: a person who writes STOP is opted out, not counted.
    """
    if action(text):
        return None
    word = normalize(text)
    for name, words in keywords.items():
        if word in {normalize(w) for w in words}:
            return name
    return None


def record(ledger: Ledger, events: Iterable[Event]) -> Applied:
    """Apply provider events to the ledger: message states, replies, and the suppressions they imply.

    Idempotent: an event already recorded changes nothing. Events are applied oldest first, so a batch holding
    "sent" and "delivered" ends at "delivered" whatever order the provider listed them in. A hard bounce, a spam report
    or an unsubscribe suppresses the email address; STOP (and its synonyms) suppresses the SMS number, START lifts it.
    """
    ordered = sorted(events, key=lambda e: e.at)
    rows = [_row(e) for e in ordered]
    if not rows:
        return Applied()
    counts = {f.name: 0 for f in fields(Applied)}
    for (result, change), event in zip(ledger.apply_results(rows), ordered, strict=True):
        if result == "duplicate":
            counts["duplicates"] += 1
            continue
        counts["recorded"] += 1
        if result == "reply":
            counts["replies"] += 1
        elif result in ("advanced", "kept", "unmatched"):
            counts[result] += 1
        if change > 0:
            counts["suppressed"] += change
        elif change < 0:
            counts["unsuppressed"] -= change
    return Applied(**counts)


def _row(event: Event) -> dict[str, object]:
    """The event as the ledger stores it, with what it means decided here (the ledger knows no keywords)."""
    reply = action(event.text) if event.kind == "reply" else None
    suppress = None
    if reply == "opt-out":
        suppress = f"replied {normalize(event.text).upper()}"
    elif event.kind == "bounced":
        suppress = f"bounced: {event.reason}" if event.reason else "bounced"
    elif event.kind == "spamreport":
        suppress = "reported the message as spam"
    elif event.kind == "unsubscribe":
        suppress = "unsubscribed"
    return {
        "key": event.key, "channel": event.channel, "kind": event.kind, "provider_id": event.provider_id,
        "recipient": event.recipient, "at": event.at.astimezone(UTC), "reason": event.reason, "text": event.text,
        "rank": RANK.get(event.kind), "action": reply, "suppress": suppress,
    }

