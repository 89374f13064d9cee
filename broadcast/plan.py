"""Plan who gets what: each contact's channels and language, turned into messages with stable ledger keys."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broadcast.channels import REGISTRY, defaults
from broadcast.check import Caution, check
from broadcast.config import Env
from broadcast.contacts import (
    DEFAULT_MAX_REJECTED,
    ContactBook,
    RejectionLimit,
    parse_max_rejected,
    read_contacts,
    read_suppressions,
    refuse_rejected,
)
from broadcast.message import CONTACT_FIELDS, Decision, Message
from broadcast.notice import resolve_language
from broadcast.quiet import Held, QuietHours, for_notice, refuse_unknown_zones
from broadcast.render import RenderSet, variant_for
from broadcast.segments import name_shape

if TYPE_CHECKING:  # the plan reads the ledger it is given; it never opens one
    from broadcast.ledger import Ledger

#: the suppression file read beside every contacts file, whether or not --suppressions names it
SUPPRESSIONS_BESIDE = "suppressions.csv"


@dataclass(frozen=True)
class PlanRequest:
    """What `preview` and `send` were asked to plan: a notice, its contacts, and how to pick and shape messages."""

    notice: Path
    contacts: tuple[Path, ...]
    #: None: every registered channel
    channels: tuple[str, ...] | None = None
    templates_dir: Path | None = None
    #: country for phone numbers written without +code (--region)
    region: str | None = None
    suppressions: tuple[Path, ...] = ()
    #: --ledger / BROADCAST_LEDGER; None: the ledger beside the notice
    ledger: str | None = None
    resend_after: timedelta | None = None
    retry_unknown: bool = False
    max_sms_segments: int = 3
    sms_transliterate: bool = False
    sms_segment_price: float = 0.0
    strict: bool = False
    #: accept SMS over max_sms_segments
    force: bool = False
    #: None: the default, 10% of the rows
    max_rejected: RejectionLimit | None = None
    allow_number_types: tuple[str, ...] = ()
    #: the plan's one clock, for quiet hours; None: the real time, read once when the plan is made
    now: datetime | None = None

    def suppression_files(self) -> list[Path]:
        """--suppressions, and the suppressions.csv beside each contacts file: an opt-out list kept with the contacts
        is never forgotten because a person under pressure left out the option."""
        files = [Path(p) for p in self.suppressions]
        for contacts in self.contacts:
            beside = Path(contacts).parent / SUPPRESSIONS_BESIDE
            if beside.is_file() and beside not in files and beside != Path(contacts):
                files.append(beside)
        return files


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
    #: (channel, language) → units billed for the messages to send, on channels that bill per unit (SMS segments:
    #: a long name can add one)
    billed: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: language → (SMS segments before, after) when --sms-transliterate folded the text
    sms_saved: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: messages → decisions: the ledger's triage (Triage, below), applied again as messages stream to the senders
    decide: Callable[[Iterable[Message]], Iterator[Any]] | None = None
    #: (channel, language) → the post an update replies to: the last post of the notice's latest thread there
    replies: dict[tuple[str, str], str] = field(default_factory=dict)
    #: the notice's follow-ups due in this run (followup.FollowUps), or None
    follow: Any = None
    #: channel → messages held for the recipients' quiet hours (sent by the first run after them), and the first
    #: MAX_HELD_SHOWN of them, for the preview page
    held: Counter[str] = field(default_factory=Counter)
    held_shown: list[Held] = field(default_factory=list)
    #: the quiet-hours rule this run applies; None for an urgent or emergency notice, or no channel it concerns
    quiet: QuietHours | None = None

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
        personal = [c for c in chosen if REGISTRY[c].personal]
        if personal:
            yield from _personal_messages(self.renders, self.book, personal, self.follow.also if self.follow else None)
        for name in chosen:
            if not REGISTRY[name].personal:
                yield from _shared_messages(self.renders, name, self.replies)


def prepare(request: PlanRequest, ledger: Ledger | None = None) -> tuple[Plan, list[Caution]]:
    """Load, render and plan: everything before the first message leaves, and nothing that sends.

    Raises ContactsError when more contact rows were rejected than ``max_rejected`` allows (default 10%).

    With a ledger, the plan keeps only what still needs sending: new recipients, transient failures,
    reminders due, and (when asked) unknowns; everyone else is counted as skipped, with the reason.
    """
    # the channels this run sends on: --channel, else those a run uses by default (Channel.by_default)
    channels = list(request.channels or defaults())
    # an edited notice is a new version: everyone gets it again, and it says it is an update (check decides)
    checked = check(
        request.notice, templates_dir=request.templates_dir, max_sms_segments=request.max_sms_segments,
        sms_transliterate=request.sms_transliterate, strict=request.strict, channels=channels, ledger=ledger,
    )
    renders = checked.renders
    book = read_contacts(
        list(request.contacts), default_region=request.region, allow_number_types=request.allow_number_types
    )
    refuse_rejected(book, request.max_rejected or parse_max_rejected(DEFAULT_MAX_REJECTED))
    plan = build_plan(renders, book, channels)
    if any(REGISTRY[c].quiet_at_night for c in plan.channels):
        plan.quiet = for_notice(checked.notice, request.now or datetime.now(UTC))
    if plan.quiet is not None:
        # a contact whose zone cannot be read could be texted in their night: fail closed, as for suppressions
        refuse_unknown_zones(book)
    # read before the contacts' plan is used: a suppressions file that cannot be read completely stops the run
    suppressions = read_suppressions(request.suppression_files(), default_region=request.region)
    suppressed = suppressions.entries
    checked.warnings.extend(Caution(f"suppressions {p.where}", p.message) for p in suppressions.problems)
    if ledger is not None and suppressed:
        ledger.suppress((channel, recipient, "listed in a suppression file", source) for channel, recipient, source in suppressed)
    # an emergency may reach people who unsubscribed, on the channels that allow it; STOP for SMS always holds
    override = frozenset(
        name for name, adapter in REGISTRY.items() if adapter.overridable_suppressions
    ) if checked.notice.override_suppressions else frozenset()
    plan.decide = Triage(
        ledger, {(channel, recipient) for channel, recipient, _ in suppressed},
        resend_after=request.resend_after, retry_unknown=request.retry_unknown, override=override,
        reached_only=checked.notice.phase == "all_clear", quiet=plan.quiet, book=book,
    )
    plan.replies = ledger.thread_ends(checked.notice.id) if ledger is not None else {}
    if ledger is not None and checked.notice.follow_up:
        from broadcast import followup

        here = followup.addresses([REGISTRY[c] for c in channels])
        plan.follow = plan.decide.follow = followup.FollowUps.read(checked.notice, ledger, here)
    count_plan(plan, ledger)
    # a language a channel cannot carry (voice: no Twilio voice) is said where the plan reaches someone in it
    checked.warnings.extend(
        Caution(channel, why) for channel in channels for lang, n in plan.counts[channel].items()
        for why in [REGISTRY[channel].written_in(lang, checked.notice)[1]] if n and why
    )
    if plan.quiet is not None:
        checked.warnings.extend(Caution(where, what) for where, what in plan.quiet.cautions())
    plan.sms_saved = checked.sms_saved
    for channel, n in plan.overridden.items():
        checked.warnings.append(
            Caution(channel, f"override_suppressions: {n} recipient(s) who unsubscribed get this emergency notice")
        )
    return plan, checked.warnings


def build_plan(renders: RenderSet, book: ContactBook, channels: Iterable[str]) -> Plan:
    """Count what goes to whom for the chosen channels, each contact in their own language."""
    chosen = [c for c in REGISTRY if c in set(channels)]
    plan = Plan(renders, chosen, book, counts={c: Counter() for c in chosen}, skipped={c: Counter() for c in chosen})
    personal = [c for c in chosen if REGISTRY[c].personal]
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
        if not REGISTRY[channel].personal:
            for message in _shared_messages(renders, channel, {}):
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


def _personal_messages(
    renders: RenderSet, book: ContactBook, channels: list[str], also: Callable[[str, str], bool] | None = None
) -> Iterator[Message]:
    """Each contact's message on each personal channel it is reached on, in reading order; ``also(contact, channel)``
    adds a channel the contact did not ask for but has an address for (a follow-up on the other channel)."""
    notice = renders.notice.id
    languages = _LanguageCache(renders.notice.languages)
    adapters = [(channel, REGISTRY[channel]) for channel in channels]
    versions = renders.language_versions
    equivalents = {channel: _equivalents(renders, channel) for channel in channels}
    for key, name, email, phone, tag, reachable in book.addresses():
        lang = languages(tag)[0]
        fields = dict(zip(CONTACT_FIELDS, (name,), strict=True))  # the one contact field templates see is the name
        variant = variant_for(fields)
        for channel, adapter in adapters:
            address = email if adapter.address == "email" else phone
            if channel not in reachable and not (also is not None and address and also(key, channel)):
                continue
            yield Message(
                notice_id=notice,
                channel=channel,
                version=versions[(channel, lang)],
                equivalents=equivalents[channel],
                recipient=address,
                language=lang,
                rendering=renders.renderings[(channel, lang, variant)],
                fields=fields if variant == "" else {},
                contact_key=key,
                key=adapter.ledger_key(address),
            )


def _shared_messages(renders: RenderSet, channel: str, replies: dict[tuple[str, str], str]) -> Iterator[Message]:
    """One message per language for channels everyone reads (the X thread, the web banner); an update replies to
    the language's latest thread, where the channel has threads."""
    notice, adapter = renders.notice, REGISTRY[channel]
    targets = adapter.targets(Env())
    for lang in adapter.languages(notice):
        for target in targets:
            recipient = adapter.recipient(lang, target)
            yield Message(
                notice_id=notice.id,
                channel=channel,
                version=renders.language_versions[(channel, lang)],
                equivalents=(renders.versions[channel],),
                recipient=recipient,
                language=lang,
                rendering=renders.get(channel, lang),
                contact_key=recipient,
                reply_to=replies.get((channel, lang)),
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
    billing = Billing()
    billed = {c for c in plan.channels if REGISTRY[c].billed}
    recorded = {
        c: ledger is not None and ledger.has_rows(plan.notice.id, c, _versions_of(plan.renders, c)) for c in plan.channels
    }
    # a channel whose every planned message would be sent as it is (no ledger row, nothing suppressed, no follow-up
    # or all-clear rule, nothing billed) is counted from the plan, without streaming its messages once more
    unchanged = [
        c for c in plan.channels
        if isinstance(plan.decide, Triage) and plan.decide.sends_all(recorded=recorded[c]) and c not in billed
        and REGISTRY[c].personal
    ]
    for channel in unchanged:
        plan.to_send[channel] += plan.planned(channel)
    decisions = (
        decision
        for channel in plan.channels if channel not in unchanged
        # a version of the notice the ledger has no row of on this channel needs no look-up per message
        for decision in plan.decide(plan.messages(channel), recorded=recorded[channel])
    )
    for decision in decisions:
        message = decision.message
        if decision.recorded:
            plan.recorded[message.channel] += 1
        if decision.send:
            plan.to_send[message.channel] += 1
            if decision.reason == OVERRIDDEN:
                plan.overridden[message.channel] += 1
            if message.channel in billed:
                plan.billed[(message.channel, message.language)] += billing(message)
        elif isinstance(decision, Held):
            plan.held[message.channel] += 1
            if len(plan.held_shown) < MAX_HELD_SHOWN:
                plan.held_shown.append(decision)
        elif decision.unknown:
            plan.unknowns.append(decision)
        else:
            plan.skipped[message.channel][decision.reason] += 1


def _versions_of(renders: RenderSet, channel: str) -> set[str]:
    """Every version a row of this channel's current messages may be recorded under (see Message.equivalents)."""
    return set(_equivalents(renders, channel))


def _equivalents(renders: RenderSet, channel: str) -> tuple[str, ...]:
    """The channel's whole version (from before versions were per language) and each language's current one."""
    return (renders.versions[channel], *(v for (c, _), v in renders.language_versions.items() if c == channel))


#: held messages the plan keeps to show (the preview page lists them); beyond this only their number is kept
MAX_HELD_SHOWN = 1000
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
        reached_only: bool = False,
        quiet: QuietHours | None = None,
        book: ContactBook | None = None,
    ) -> None:
        self.ledger = ledger
        #: holds messages to people in their quiet hours; the book gives each contact's timezone column
        self.quiet, self.book = quiet, book
        self.resend_after = resend_after
        self.retry_unknown = retry_unknown
        #: an all-clear goes only to the people this notice reached before (public channels always get it)
        self.reached_only = reached_only
        #: (channel, recipient) never to contact: the suppression files and the ledger (STOP replies, earlier files)
        # compared by address_key, so a STOP or a listed One@x.example also holds for one@x.example
        self.blocked = {_blocked(c, r) for c, r in listed}
        if ledger is not None:
            self.blocked.update(_blocked(c, r) for c, recipients in ledger.suppressed().items() for r in recipients)
        #: channels whose suppressions this notice overrides (an emergency with override_suppressions: email)
        self.override = override
        #: the notice's follow-ups (followup.FollowUps): reminders due become sends; suppressions still hold
        self.follow: Any = None

    def sends_all(self, *, recorded: bool) -> bool:
        """Whether every message passes unchanged (``recorded`` as for __call__): then a plan's counts are its sends."""
        return not recorded and not self.blocked and not self.reached_only and self.follow is None

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
        if self.reached_only:
            decisions = self._reached(decisions)
        yield from self._held(self._screened(decisions))

    def _screened(self, decisions: Iterable[Decision]) -> Iterator[Decision]:
        """Decisions with the suppression files' and the ledger's suppressions applied (an emergency may override)."""
        for decision in decisions:
            if self.follow is not None:
                decision = self.follow.decide(decision)
            message = decision.message
            if decision.send and self.blocked and _blocked(message.channel, message.recipient) in self.blocked:
                if message.channel not in self.override:
                    decision = Decision(message, False, "suppressed")
                elif not decision.reason:  # a reminder or a retried unknown keeps its reason: claim needs it
                    decision = Decision(message, True, OVERRIDDEN)
            yield decision

    def _held(self, decisions: Iterable[Decision]) -> Iterator[Decision]:
        """Decisions with every message that would ring a phone in its recipient's quiet hours held (quiet.Held)."""
        if self.quiet is None:
            yield from decisions
            return
        chunk: list[Decision] = []
        for decision in decisions:
            chunk.append(decision)
            if len(chunk) >= REACHED_CHUNK:
                yield from self._held_chunk(chunk)
                chunk = []
        yield from self._held_chunk(chunk)

    def _held_chunk(self, chunk: list[Decision]) -> Iterator[Decision]:
        ringing = [d.message.contact_key for d in chunk if d.send and REGISTRY[d.message.channel].quiet_at_night]
        zones = self.book.timezones(ringing) if ringing and self.book is not None else {}
        for decision in chunk:
            if decision.send and REGISTRY[decision.message.channel].quiet_at_night:
                decision = self.quiet.hold(decision, zones.get(decision.message.contact_key, ""))
            yield decision

    def _reached(self, decisions: Iterable[Decision]) -> Iterator[Decision]:
        """Decisions with every personal message to someone this notice never reached turned into a skip."""
        chunk: list[Decision] = []
        for decision in decisions:
            chunk.append(decision)
            if len(chunk) >= REACHED_CHUNK:
                yield from self._reached_chunk(chunk)
                chunk = []
        yield from self._reached_chunk(chunk)

    def _reached_chunk(self, chunk: list[Decision]) -> Iterator[Decision]:
        personal = [d.message for d in chunk if d.send and REGISTRY[d.message.channel].personal]
        reached: set[tuple[str, str]] = set()
        if personal and self.ledger is not None:
            reached = self.ledger.reached(personal[0].notice_id, [(m.channel, m.contact_key) for m in personal])
        for decision in chunk:
            message = decision.message
            if decision.send and REGISTRY[message.channel].personal and (message.channel, message.contact_key) not in reached:
                decision = Decision(message, False, NOT_REACHED)
            yield decision


#: messages looked up at once when an all-clear asks who the notice reached
REACHED_CHUNK = 1000
#: why an all-clear skips someone
NOT_REACHED = "not reached by this notice before: an all-clear goes only to the people who got it"


def _blocked(channel: str, address: str) -> tuple[str, str]:
    """How a suppression and a message are compared: by the channel's address_key (an email whatever its case)."""
    adapter = REGISTRY.get(channel)
    return channel, adapter.address_key(address) if adapter is not None else address


class Billing:
    """Units billed per message (Channel.cost, e.g. SMS segments), counted once per rendering and name shape rather
    than once per recipient."""

    def __init__(self) -> None:
        self.memo: dict[tuple[str, str, str, tuple[str, int]], int] = {}

    def __call__(self, message: Message) -> int:
        adapter = REGISTRY[message.channel]
        if "%%" not in message.rendering.text:
            shape: tuple[str, int] | None = ("", 0)
        else:
            shape = name_shape(message.fields.get("name", ""))
            if shape is None:  # extension characters or emoji: their position matters, so count this one
                return adapter.cost(message.personal()).units
        key = (message.channel, message.language, message.rendering.variant, shape)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = adapter.cost(message.personal()).units
        return found


def over_limit(plan: Plan, max_segments: int) -> dict[str, int]:
    """Language → segments, for planned renderings that bill by segment and are longer than the limit."""
    return {
        lang: cost.units
        for (channel, lang, variant), rendering in plan.renders.renderings.items()
        if channel in plan.channels and REGISTRY[channel].billed and not variant and plan.counts[channel][lang]
        and (cost := REGISTRY[channel].cost(rendering)).units > max_segments
    }


def rendering_stats(
    renders: RenderSet,
    channels: list[str],
    counts: dict[str, Counter[str]] | None = None,
    *,
    billed: Counter[tuple[str, str]] | None = None,
    unit_price: float = 0.0,
) -> list[dict[str, Any]]:
    """Per channel × language: what a person checks before sending (SMS segments and cost, post lengths, subject).

    ``billed`` is (channel, language) → units for the messages to send, counted with each recipient's name filled
    in (a long name can add a segment; see Billing); ``unit_price`` prices them (--sms-segment-price).
    """
    rows = []
    for (channel, lang, variant), rendering in renders.renderings.items():
        if channel not in channels or variant:
            continue
        adapter = REGISTRY[channel]
        row: dict[str, Any] = {"channel": channel, "language": lang}
        if counts is not None:
            row["recipients"] = counts[channel][lang]
        row.update(adapter.stats(rendering))
        if billed is not None and adapter.billed:
            units = billed[(channel, lang)]
            row.update({f"billed_{adapter.cost(rendering).unit[1]}": units, "cost": round(units * unit_price, 4)})
        rows.append(row)
    return rows
