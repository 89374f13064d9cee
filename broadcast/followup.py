"""A notice's `follow_up:` rules, applied by the next `send`: reach the unreached on their other channel, remind
those who have not replied, each once.

Read from the ledger at planning time (what `sync` and `serve` recorded): a message not delivered, or not answered,
for longer than a rule's ``after``. A message on the other channel is an ordinary message of the notice, so the
ledger's own key makes it go out once; a reminder is recorded in the ledger when planned, and is done once its
message was claimed after that (a run aborted at the prompt plans it again, a crash after the claim never sends it
twice).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from broadcast.message import Decision

#: the provider's states and the ledger's status that count as "undelivered" for a rule
NOT_DELIVERED = ("undelivered", "failed", "dropped", "bounced")
#: the reason on a reminder's decision: the ledger claims it from "sent" (ledger._takeover_from)
REMINDER = "reminder"


class Ledger(Protocol):
    """What the follow-ups read and write in the ledger (ledger.Ledger)."""

    read_only: bool

    def outcomes(self, notice: str) -> list[dict[str, Any]]: ...
    def replies(self, notice: str) -> list[dict[str, Any]]: ...
    def follow_ups(self, notice: str) -> dict[tuple[str, str], datetime]: ...
    def plan_follow_up(self, notice: str, action: str, message_id: str) -> None: ...


def duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` (the notice checked the form)."""
    value, unit = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text).groups()  # type: ignore[union-attr]
    return timedelta(seconds=int(value) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


@dataclass
class FollowUps:
    """What the notice's rules ask of this run: contacts to reach on another channel, messages to send again."""

    notice: str
    ledger: Ledger
    #: (contact key, channel) → the id of the message that did not arrive on the contact's other channel
    other_channel: dict[tuple[str, str], str] = field(default_factory=dict)
    #: ids of messages to send once more
    resend: set[str] = field(default_factory=set)
    #: what this run does: ("other_channel" | "resend", message id), counted once however often a plan is read
    done: set[tuple[str, str]] = field(default_factory=set)

    @property
    def counts(self) -> Counter[str]:
        return Counter(action for action, _ in self.done)

    @classmethod
    def read(cls, notice: Any, ledger: Ledger, channels: Mapping[str, str], now: datetime | None = None) -> FollowUps:
        """The follow-ups due ``now``. ``channels``: this run's personal channel → the address it sends to (email,
        phone); a contact's other channel is the one with the other address."""
        now = now or datetime.now(UTC)
        found = cls(notice.id, ledger)
        rows = ledger.outcomes(notice.id)
        replied = {r["contact"] for r in ledger.replies(notice.id) if r["contact"] and r["action"] != "opt-in"}
        planned = ledger.follow_ups(notice.id)
        for rule in notice.follow_up:
            wait = duration(rule.after)
            for row in rows:
                if row["channel"] not in channels or not _due(rule.when, row, replied, wait, now):
                    continue
                if rule.then == "other_channel":
                    for other, address in channels.items():
                        if address != channels[row["channel"]]:
                            found.other_channel.setdefault((row["contact"], other), row["message_id"])
                elif row["status"] == "sent":
                    at = planned.get(("resend", row["message_id"]))
                    # planned before and claimed since: done; planned by a run that stopped before sending: due
                    if at is None or (row["last_at"] is not None and at > row["last_at"]):
                        found.resend.add(row["message_id"])
        return found

    def also(self, contact: str, channel: str) -> bool:
        """Whether this run reaches ``contact`` on ``channel`` too, though they did not ask for it there."""
        return (contact, channel) in self.other_channel

    def decide(self, decision: Decision) -> Decision:
        """The ledger's decision, with a reminder due turned into a send; records what is planned."""
        message = decision.message
        if not decision.send and decision.reason == "already sent" and message.id in self.resend:
            self.ledger.plan_follow_up(self.notice, "resend", message.id)
            self.done.add(("resend", message.id))
            return Decision(message, True, REMINDER, recorded=decision.recorded)
        failed = self.other_channel.get((message.contact_key, message.channel))
        if failed is not None and decision.send:
            self.ledger.plan_follow_up(self.notice, "other_channel", failed)
            self.done.add(("other_channel", message.id))
        return decision


def _due(when: str, row: Mapping[str, Any], replied: set[str], wait: timedelta, now: datetime) -> bool:
    """Whether a rule's condition has held for ``wait`` for this message."""
    if when == "undelivered":
        if row["state"] in NOT_DELIVERED:
            since = row["state_at"]
        elif row["status"] == "failed":
            since = row["last_at"]
        else:
            return False
        return since is not None and since + wait <= now
    # no_reply: sent, and the contact has answered nothing since
    return (row["status"] == "sent" and row["contact"] not in replied and row["sent_at"] is not None
            and row["sent_at"] + wait <= now)


def addresses(channels: Sequence[Any]) -> dict[str, str]:
    """Personal channel → the contact address it sends to, for the channels of this run."""
    return {c.name: c.address for c in channels if c.personal and c.address}
