"""Plan who gets what: each contact's channels and language, turned into messages with stable ledger keys."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from broadcast.contacts import ContactBook
from broadcast.message import Message
from broadcast.notice import resolve_language
from broadcast.render import CONTACT_FIELDS, PERSONAL_CHANNELS, RenderSet, variant_for

#: every channel broadcast can send on, in the order it reports them
CHANNELS = ("email", "sms", "social", "web")


@dataclass
class Plan:
    """Everything that would be sent, before anything is: the input of send and of every preview.

    Messages are never held: ``messages()`` streams them from the contact book whenever they are
    needed, so a plan for a million contacts costs the same memory as one for a thousand. The
    counters are filled by one pass when the plan is built (planned) and one when the ledger triages
    it (to send, skipped, unknown).
    """

    renders: RenderSet
    channels: list[str]
    book: ContactBook
    #: channel → language → planned messages
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    #: (channel, language) → planned messages for contacts without a name (the "noname" variant)
    unnamed: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (contact's tag, language used, how: base|default|unset) → contacts
    fallbacks: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: channel → messages this run will send once the ledger has had its say
    to_send: Counter[str] = field(default_factory=Counter)
    #: channel → reason → messages left out of the plan (suppressed, already sent, …)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)
    #: ledger decisions for messages whose earlier outcome is unknown (a crash, a lost answer)
    unknowns: list[Any] = field(default_factory=list)
    #: channel → planned messages the ledger already had a row for when the plan was counted
    recorded: Counter[str] = field(default_factory=Counter)
    #: channel → suppressed recipients reached anyway (an emergency notice with override_suppressions)
    overridden: Counter[str] = field(default_factory=Counter)
    #: language → SMS segments billed for the messages to send (a long name can add a segment)
    billed: Counter[str] = field(default_factory=Counter)
    #: language → (SMS segments before, after) when --sms-transliterate folded the text
    sms_saved: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: messages → decisions: the ledger's triage (pipeline.Triage), applied again as messages stream to the senders
    decide: Callable[[Iterable[Message]], Iterator[Any]] | None = None

    @property
    def notice(self):  # noqa: ANN201 - Notice, kept unannotated to avoid an import cycle in type checkers
        return self.renders.notice

    def planned(self, channel: str) -> int:
        return sum(self.counts.get(channel, Counter()).values())

    @property
    def total(self) -> int:
        """Messages this run will send, over every channel."""
        return sum(self.to_send[c] for c in self.channels)

    def messages(self, channel: str | None = None) -> Iterator[Message]:
        """Every planned message of one channel (or all), streamed from the contacts in reading order."""
        chosen = [c for c in self.channels if channel is None or c == channel]
        personal = [c for c in chosen if c in PERSONAL_CHANNELS]
        if personal:
            yield from _personal_messages(self.renders, self.book, personal)
        for name in chosen:
            if name not in PERSONAL_CHANNELS:
                yield from _shared_messages(self.renders, name)


def build_plan(renders: RenderSet, book: ContactBook, channels: Iterable[str]) -> Plan:
    """Count what goes to whom for the chosen channels, each contact in their own language."""
    chosen = [c for c in CHANNELS if c in set(channels)]
    plan = Plan(renders, chosen, book, counts={c: Counter() for c in chosen}, skipped={c: Counter() for c in chosen})
    personal = [c for c in chosen if c in PERSONAL_CHANNELS]
    languages = _LanguageCache(renders.notice.languages)
    if personal:
        # added up on disk by (language tag, channels, named): a million contacts are a few dozen groups
        for tag, reachable, named, n in book.groups():
            lang, how = languages(tag)
            if how != "exact":
                plan.fallbacks[(tag, lang, how)] += n
            for channel in personal:
                if channel in reachable:
                    plan.counts[channel][lang] += n
                    if not named:
                        plan.unnamed[(channel, lang)] += n
    for channel in chosen:
        if channel not in PERSONAL_CHANNELS:
            for message in _shared_messages(renders, channel):
                plan.counts[channel][message.language] += 1
    return plan


class _LanguageCache:
    """resolve_language per distinct tag: a million contacts share a handful of tags."""

    def __init__(self, languages: list[str]) -> None:
        self.languages = languages
        self.seen: dict[str, tuple[str, str]] = {}

    def __call__(self, tag: str) -> tuple[str, str]:
        found = self.seen.get(tag)
        if found is None:
            found = self.seen[tag] = resolve_language(tag, self.languages)
        return found


def _personal_messages(renders: RenderSet, book: ContactBook, channels: list[str]) -> Iterator[Message]:
    """Each contact's message on each personal channel it is reached on, in reading order."""
    notice = renders.notice.id
    languages = _LanguageCache(renders.notice.languages)
    for key, name, email, phone, tag, reachable in book.addresses():
        lang = languages(tag)[0]
        fields = dict(zip(CONTACT_FIELDS, (name,), strict=True))  # the one contact field templates see is the name
        variant = variant_for(fields)
        for channel in channels:
            if channel not in reachable:
                continue
            address = email if channel == "email" else phone
            yield Message(
                notice_id=notice,
                channel=channel,
                version=renders.versions[channel],
                recipient=address,
                language=lang,
                rendering=renders.renderings[(channel, lang, variant)],
                fields=fields if variant == "" else {},
                contact_key=key,
                # the ledger keys an email case-folded: One@x and one@x are one person
                key=address.lower() if channel == "email" else "",
            )


def _shared_messages(renders: RenderSet, channel: str) -> Iterator[Message]:
    """One message per language for channels everyone reads (the X thread, the web banner)."""
    notice = renders.notice
    languages = notice.social_languages if channel == "social" else notice.languages
    for lang in languages:
        recipient = f"{'x' if channel == 'social' else 'web'}:{lang}"
        yield Message(
            notice_id=notice.id,
            channel=channel,
            version=renders.versions[channel],
            recipient=recipient,
            language=lang,
            rendering=renders.get(channel, lang),
            contact_key=recipient,
        )


def by_channel(messages: Iterable[Message]) -> dict[str, list[Message]]:
    """Messages grouped per channel, keeping plan order within each."""
    groups: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        groups[message.channel].append(message)
    return dict(groups)

