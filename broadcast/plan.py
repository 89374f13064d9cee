"""Plan who gets what: each contact's channels and language, turned into messages with stable ledger keys."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from broadcast.contacts import ContactBook, address_key
from broadcast.message import Decision, Message
from broadcast.notice import resolve_language
from broadcast.render import CONTACT_FIELDS, PERSONAL_CHANNELS, RenderSet, variant_for, weighted_length
from broadcast.segments import count_segments, name_shape

if TYPE_CHECKING:  # the plan reads the ledger it is given; it never opens one
    from broadcast.ledger import Ledger

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
    #: messages → decisions: the ledger's triage (Triage, below), applied again as messages stream to the senders
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


def count_plan(plan: Plan, ledger: Ledger | None) -> None:
    """One pass over every planned message: what goes out, what is skipped and why, what is unknown, SMS billed.

    Sending streams and triages the messages again, so none is held between the two.
    """
    billing = SmsBilling()
    decisions = (
        decision
        for channel in plan.channels
        # a version of the notice the ledger has no row of on this channel needs no look-up per message
        for decision in plan.decide(
            plan.messages(channel),
            recorded=ledger is not None and ledger.has_rows(plan.notice.id, channel, plan.renders.versions[channel]),
        )
    )
    for decision in decisions:
        message = decision.message
        if decision.recorded:
            plan.recorded[message.channel] += 1
        if decision.send:
            plan.to_send[message.channel] += 1
            if decision.reason == OVERRIDDEN:
                plan.overridden[message.channel] += 1
            if message.channel == "sms":
                plan.billed[message.language] += billing(message)
        elif decision.unknown:
            plan.unknowns.append(decision)
        else:
            plan.skipped[message.channel][decision.reason] += 1


#: the reason on a send decision that reaches a suppressed recipient because an emergency notice says so
OVERRIDDEN = "suppression overridden: emergency notice with override_suppressions"


class Triage:
    """The ledger's and the suppression files' verdict on each planned message, applied as messages stream by."""

    def __init__(
        self,
        ledger: Ledger | None,
        listed: set[tuple[str, str]],
        *,
        resend_after: timedelta | None = None,
        retry_unknown: bool = False,
        override: frozenset[str] = frozenset(),
    ) -> None:
        self.ledger = ledger
        self.resend_after = resend_after
        self.retry_unknown = retry_unknown
        #: (channel, recipient) never to contact: the suppression files and the ledger (STOP replies, earlier files)
        # compared by address_key, so a STOP or a listed One@x.example also holds for one@x.example
        self.blocked = {(c, address_key(c, r)) for c, r in listed}
        if ledger is not None:
            self.blocked.update((c, address_key(c, r)) for c, recipients in ledger.suppressed().items() for r in recipients)
        #: channels whose suppressions this notice overrides (an emergency with override_suppressions: email)
        self.override = override

    def __call__(self, messages: Iterable[Message], *, recorded: bool = True) -> Iterator[Decision]:
        """Decisions in message order. ``recorded=False`` says the ledger holds no row for any of these
        messages (checked by an earlier pass), so only suppressions are looked at; a run that starts
        meanwhile is still kept out by the claim.
        """
        decisions = (
            self.ledger.triage(
                messages, resend_after=self.resend_after, retry_unknown=self.retry_unknown, check_suppressions=False
            )
            if self.ledger is not None and recorded
            else (Decision(m, True) for m in messages)
        )
        for decision in decisions:
            message = decision.message
            if decision.send and (message.channel, address_key(message.channel, message.recipient)) in self.blocked:
                if message.channel not in self.override:
                    decision = Decision(message, False, "suppressed")
                elif not decision.reason:  # a reminder or a retried unknown keeps its reason: claim needs it
                    decision = Decision(message, True, OVERRIDDEN)
            yield decision


class SmsBilling:
    """Segments billed per SMS, counted once per rendering and name shape rather than once per recipient."""

    def __init__(self) -> None:
        self.memo: dict[tuple[str, str, tuple[str, int]], int] = {}

    def __call__(self, message: Message) -> int:
        if "%%" not in message.rendering.text:
            shape: tuple[str, int] | None = ("", 0)
        else:
            shape = name_shape(message.fields.get("name", ""))
            if shape is None:  # extension characters or emoji: their position matters, so count this one
                return count_segments(message.personal().text).segments
        key = (message.language, message.rendering.variant, shape)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = count_segments(message.personal().text).segments
        return found


def sms_over_limit(plan: Plan, max_segments: int) -> dict[str, int]:
    """Language → segments, for planned SMS renderings longer than the limit."""
    if "sms" not in plan.channels:
        return {}
    return {
        lang: info.segments
        for (channel, lang, variant), rendering in plan.renders.renderings.items()
        if channel == "sms" and not variant and plan.counts["sms"][lang]
        and (info := count_segments(rendering.text)).segments > max_segments
    }


def rendering_stats(
    renders: RenderSet,
    channels: list[str],
    counts: dict[str, Counter[str]] | None = None,
    *,
    billed: Counter[str] | None = None,
    sms_segment_price: float = 0.0,
) -> list[dict[str, Any]]:
    """Per channel × language: what a person checks before sending (SMS segments and cost, post lengths, subject).

    ``billed`` is language → segments for the SMS to send, counted with each recipient's name filled in
    (a long name can add a segment; see SmsBilling).
    """
    rows = []
    for (channel, lang, variant), rendering in renders.renderings.items():
        if channel not in channels or variant:
            continue
        row: dict[str, Any] = {"channel": channel, "language": lang}
        if counts is not None:
            row["recipients"] = counts[channel][lang]
        if channel == "sms":
            info = count_segments(rendering.text)
            row.update(characters=info.characters, encoding=info.encoding, segments=info.segments, form=rendering.form)
            if billed is not None:
                row.update(billed_segments=billed[lang], cost=round(billed[lang] * sms_segment_price, 4))
        elif channel == "social":
            row.update(posts=len(rendering.posts), weighted=[weighted_length(p) for p in rendering.posts])
        elif channel == "email":
            row.update(subject=rendering.subject)
        rows.append(row)
    return rows
