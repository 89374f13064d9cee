"""Plan who gets what: each contact's channels and language, turned into messages with stable ledger keys."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from broadcast.channels.base import Message
from broadcast.contacts import Contact, ContactBook
from broadcast.notice import resolve_language
from broadcast.render import CONTACT_FIELDS, PERSONAL_CHANNELS, RenderSet, variant_for

#: every channel broadcast can send on, in the order it reports them
CHANNELS = ("email", "sms", "social", "web")


def message_id(notice_id: str, channel: str, version: str, recipient: str) -> str:
    """The ledger key of one message: the same recipient, channel and notice version is the same message."""
    return f"{notice_id}/{channel}/{version}/{recipient}"


@dataclass
class Plan:
    """Everything that would be sent, before anything is: the input of send and of every preview."""

    renders: RenderSet
    channels: list[str]
    book: ContactBook
    messages: list[Message]
    #: channel → language → planned messages
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    #: (contact's tag, language used, how: base|default|unset) → contacts
    fallbacks: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: channel → reason → messages left out of the plan (suppressed, already sent, …)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)
    #: ledger decisions for messages whose earlier outcome is unknown (a crash, a lost answer)
    unknowns: list[Any] = field(default_factory=list)
    #: ledger decisions that are not plain "new": reminders and retried unknowns (claim needs them)
    decisions: dict[str, Any] = field(default_factory=dict)
    #: language → (SMS segments before, after) when --sms-transliterate folded the text
    sms_saved: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def notice(self):  # noqa: ANN201 - Notice, kept unannotated to avoid an import cycle in type checkers
        return self.renders.notice

    def planned(self, channel: str) -> int:
        return sum(self.counts.get(channel, Counter()).values())


def build_plan(renders: RenderSet, book: ContactBook, channels: Iterable[str]) -> Plan:
    """Turn contacts into messages for the chosen channels, each in the contact's own language."""
    chosen = [c for c in CHANNELS if c in set(channels)]
    notice = renders.notice
    plan = Plan(renders, chosen, book, [], {c: Counter() for c in chosen}, Counter(), {c: Counter() for c in chosen})
    personal = [c for c in chosen if c in PERSONAL_CHANNELS]
    for contact in book.contacts:
        lang, how = resolve_language(contact.language, notice.languages)
        if how not in ("exact",):
            plan.fallbacks[(contact.language, lang, how)] += 1
        for message in _contact_messages(renders, contact, lang, personal):
            plan.messages.append(message)
            plan.counts[message.channel][lang] += 1
    for channel in chosen:
        if channel in PERSONAL_CHANNELS:
            continue
        languages = notice.social_languages if channel == "social" else notice.languages
        for lang in languages:
            recipient = f"{'x' if channel == 'social' else 'web'}:{lang}"
            version = renders.versions[channel]
            plan.messages.append(
                Message(
                    id=message_id(notice.id, channel, version, recipient),
                    channel=channel,
                    recipient=recipient,
                    language=lang,
                    rendering=renders.get(channel, lang),
                    contact_key=recipient,
                    notice=notice.id,
                )
            )
            plan.counts[channel][lang] += 1
    return plan


def _contact_messages(renders: RenderSet, contact: Contact, lang: str, channels: list[str]) -> Iterator[Message]:
    fields = {name: getattr(contact, name) for name in CONTACT_FIELDS}
    variant = variant_for(fields)
    for channel in channels:
        if channel not in contact.channels:
            continue
        address = contact.email if channel == "email" else contact.phone
        if not address:
            continue
        recipient = address.lower() if channel == "email" else address
        yield Message(
            id=message_id(renders.notice.id, channel, renders.versions[channel], recipient),
            channel=channel,
            recipient=address,
            language=lang,
            rendering=renders.get(channel, lang, variant),
            fields=fields if variant == "" else {},
            contact_key=contact.key,
            notice=renders.notice.id,
        )


def by_channel(messages: Iterable[Message]) -> dict[str, list[Message]]:
    """Messages grouped per channel, keeping plan order within each."""
    groups: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        groups[message.channel].append(message)
    return dict(groups)
