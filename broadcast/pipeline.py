"""One function per command, wiring the data path in order: load → render → plan → send → record."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broadcast.channels.base import Channel
from broadcast.channels.outbox import Outbox, OutboxChannel, claim_folder, write_rendering
from broadcast.contacts import (
    DEFAULT_MAX_REJECTED,
    RejectionLimit,
    address_key,
    parse_max_rejected,
    read_contacts,
    read_suppressions,
    refuse_rejected,
)
from broadcast.errors import InputError, TemplateError
from broadcast.ledger import Ledger
from broadcast.ledger import now as ledger_now
from broadcast.message import Decision, Message, Receipt
from broadcast.notice import Notice, load_notice, missing_translations
from broadcast.plan import CHANNELS, Plan, build_plan
from broadcast.render import RenderSet, Templates, label_problems, missing_contacts, render_notice, weighted_length
from broadcast.segments import count_segments, name_shape
from broadcast.send import Outcome, RetryPolicy, deliver

if TYPE_CHECKING:
    from broadcast.rate import Gate


#: --json lists at most this many contact problems (problems_total counts them all)
MAX_JSON_PROBLEMS = 1000


@dataclass
class Caution:
    """Something a person should look at before sending; never stops a run by itself."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Checked:
    """A notice rendered in every channel and language, with what a person should know about it."""

    notice: Notice
    templates: Templates
    renders: RenderSet
    warnings: list[Caution] = field(default_factory=list)
    #: language → (segments before, after) when --sms-transliterate folded the SMS
    sms_saved: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: channels a live send would word as an update: the ledger has an earlier version of them
    updated: list[str] = field(default_factory=list)
    #: language → segments, for SMS renderings (in the wording a live send would use) over --max-sms-segments
    sms_too_long: dict[str, int] = field(default_factory=dict)


def check(
    notice_path: str | Path,
    *,
    templates_dir: str | Path | None = None,
    max_sms_segments: int = 3,
    sms_transliterate: bool = False,
    strict: bool = False,
    channels: list[str] | None = None,
    ledger: Ledger | None = None,
) -> Checked:
    """Load the notice and render every channel in every language; raise on anything that must not be sent.

    With a ledger, each channel is rendered in the wording a live send would use now (first send or update),
    so `check`, `preview` and `send` count segments and apply limits on the same text.
    Translation fallbacks (a text or a label borrowed from another language) are warnings, or errors
    with ``strict``.
    """
    notice = load_notice(notice_path)
    templates = Templates(templates_dir)
    _check_labels(notice, templates, notice_path)
    # a send on some channels renders only those; `check` itself renders them all
    renders, updated = render_as_sent(
        notice, templates, channels or list(CHANNELS), ledger=ledger, sms_transliterate=sms_transliterate,
        sms_max_segments=max_sms_segments,
    )
    checked = Checked(notice, templates, renders, updated=updated)
    # what loading found allowed but worth a look (an http:// link), shown by check, preview and send alike
    checked.warnings.extend(Caution(w.where, w.message) for w in notice.warnings)
    if sms_transliterate and "sms" in renders.versions:
        plain = render_notice(
            notice, templates, channels=["sms"], updated=[c for c in updated if c == "sms"], sms_max_segments=max_sms_segments
        )
        for (channel, lang, variant), rendering in plain.renderings.items():
            if not variant:
                before, after = count_segments(rendering.text), count_segments(renders.get(channel, lang).text)
                checked.sms_saved[lang] = (before.segments, after.segments)
    fallbacks = _fallbacks(notice, renders)
    if strict and fallbacks:
        raise TemplateError(
            f"--strict: {len(fallbacks)} translation fallback(s):\n" + "\n".join(f"  - {f}" for f in fallbacks),
            file=notice_path,
            hint="translate each listed field or label, or run without --strict",
        )
    gaps = []
    for (channel, lang, variant), rendering in renders.renderings.items():
        if channel == "sms":
            continue  # below, with every form
        for channel_id in missing_contacts(rendering, notice):
            gaps.append(f"  - {channel} ({lang}{', ' + variant if variant else ''}) leaves out {channel_id}: {notice.channel(channel_id).contact}")
    # every SMS form, not only the one this limit picks: another limit, or an update's prefix, sends another form
    for lang, forms in renders.sms_forms.items():
        left_out: dict[tuple[str, str], list[int]] = {}
        for form, variants in forms.items():
            for variant, rendering in variants.items():
                for channel_id in missing_contacts(rendering, notice):
                    left_out.setdefault((variant, channel_id), []).append(form)
        for (variant, channel_id), in_forms in left_out.items():
            which = "" if len(in_forms) == len(forms) else f", form {', '.join(map(str, in_forms))}"
            gaps.append(f"  - sms ({lang}{', ' + variant if variant else ''}{which}) leaves out {channel_id}: {notice.channel(channel_id).contact}")
    if gaps:
        raise TemplateError(
            "a rendering leaves out a support channel's contact; every channel must say how to reach all of them:\n"
            + "\n".join(gaps),
            file=templates.directory,
            hint="print every notice.channels entry (label and contact) in each template",
        )
    checked.warnings.extend(fallbacks)
    _check_sms_body_limit(renders, notice_path)
    # what the staff brief needs to help the people who answer (brief.support_gaps): warned, or with --strict refused
    from broadcast.brief import support_gaps

    gaps = support_gaps(notice)
    if strict and gaps:
        raise TemplateError(
            f"--strict: {len(gaps)} part(s) of crisis support missing:\n" + "\n".join(f"  - {g.field}: {g.message}" for g in gaps),
            file=notice_path,
            field=gaps[0].field,
            hint="add the listed fields (examples/README.md documents them), or run without --strict",
        )
    checked.warnings.extend(Caution(f"notice field {g.field}", g.message) for g in gaps)
    # a later send of an edited notice says it is an update, and that prefix may need a shorter form than fits now
    updates = (
        render_notice(
            notice, templates, channels=["sms"], updated=["sms"], sms_transliterate=sms_transliterate,
            sms_max_segments=max_sms_segments,
        ) if "sms" in renders.versions else None
    )
    for rendering in renders.of("sms"):
        if rendering.variant:
            continue  # the unnamed variant is never longer than the named one
        info = count_segments(rendering.text)
        as_update = updates.get("sms", rendering.language) if updates is not None else rendering
        update_info = count_segments(as_update.text)
        if info.segments > max_sms_segments:
            checked.sms_too_long[rendering.language] = info.segments
            wording = " as an update" if "sms" in updated else ""
            checked.warnings.append(
                Caution(
                    f"sms ({rendering.language})",
                    f"{info.segments} segments{wording} ({info.encoding}, {info.characters} characters) is over the "
                    f"limit of {max_sms_segments} even in the SMS template's shortest form ({rendering.form}), so a "
                    "live send refuses it without --force; shorten the headline, the first channel's needs or the "
                    "contacts, or the SMS template, or raise --max-sms-segments",
                )
            )
        elif update_info.segments > max_sms_segments:
            checked.warnings.append(
                Caution(
                    f"sms ({rendering.language}, update)",
                    f"fits now, but sent again as an update it is {update_info.segments} segments ({update_info.encoding}, "
                    f"{update_info.characters} characters), over the limit of {max_sms_segments} even in the shortest "
                    "form, so a live send of an edited notice would refuse; shorten the headline, the first channel's "
                    "needs or the contacts, or raise --max-sms-segments",
                )
            )
    return checked


def _check_labels(notice: Notice, templates: Templates, notice_path: str | Path) -> None:
    """The notice's ``labels:`` must name labels the templates have, with only the {slots} each one fills."""
    from broadcast.errors import NoticeError
    from broadcast.notice import field_line

    problems = label_problems(notice, templates)
    if not problems:
        return
    first = problems[0]
    field_path = f"labels.{first.language}.{first.key}"
    if len(problems) == 1:
        raise NoticeError(first.message, file=notice_path, row=field_line(notice_path, field_path), field=field_path, hint=first.hint)
    listed = "\n".join(
        f"  - line {field_line(notice_path, f'labels.{p.language}.{p.key}') or '?'}, field 'labels.{p.language}.{p.key}': {p.message}"
        for p in problems
    )
    raise NoticeError(
        f"{len(problems)} problems in labels:\n{listed}", file=notice_path, row=field_line(notice_path, field_path),
        field=field_path, hint=first.hint,
    )


def render_as_sent(
    notice: Notice,
    templates: Templates,
    channels: list[str],
    *,
    ledger: Ledger | None,
    sms_transliterate: bool = False,
    sms_max_segments: int | None = None,
) -> tuple[RenderSet, list[str]]:
    """Every rendering in the wording a live send would use now, and the channels that word it as an update.

    The one place that decides the wording: `check`, `preview` and `send` all call it, so what one approves
    is what the other sends. A channel whose ledger holds a version other than this one is an update.
    """
    renders = render_notice(
        notice, templates, channels=channels, sms_transliterate=sms_transliterate, sms_max_segments=sms_max_segments
    )
    if ledger is None:
        return renders, []
    earlier = ledger.sent_versions(notice.id)
    updated = [c for c in channels if earlier.get(c, set()) - {renders.versions[c]}]
    if updated:
        # the update wording goes out under the version of the content: were the version a hash of the update
        # wording, the next run would find a version the ledger never sent and send it again
        renders = replace(render_notice(
            notice, templates, channels=channels, updated=updated, sms_transliterate=sms_transliterate,
            sms_max_segments=sms_max_segments,
        ), versions=renders.versions)
    return renders, updated


def refuse_long_sms(too_long: dict[str, int], max_segments: int, *, force: bool, sent: str = "nothing was sent") -> None:
    """Stop on SMS longer than ``max_segments`` unless ``force``: the one rule `check`, `preview` and `send` apply."""
    if not too_long or force:
        return
    listed = ", ".join(f"{lang}: {n} segments" for lang, n in sorted(too_long.items()))
    raise InputError(
        f"the SMS is longer than --max-sms-segments {max_segments} ({listed}); a live send refuses it; {sent}",
        field="sms",
        hint="shorten the SMS template or notice texts, add --sms-transliterate, raise --max-sms-segments, "
        "or add --force to pay for the longer SMS",
    )


def _check_sms_body_limit(renders: RenderSet, notice_path: str | Path) -> None:
    """Twilio refuses a body over its limit whatever --max-sms-segments allows: refuse it here, before sending."""
    from broadcast.channels.twilio import TwilioChannel
    from broadcast.message import placeholder
    from broadcast.render import CONTACT_FIELDS

    limit = TwilioChannel.max_body
    over = []
    for rendering in renders.of("sms"):
        # a contact's name adds to this; the adapter refuses the one message a long name pushes over
        text = rendering.text
        for name in CONTACT_FIELDS:
            text = text.replace(placeholder(name), "")
        line = f"  - sms ({rendering.language}): {len(text):,} characters"
        if len(text) > limit and line not in over:  # the variant without a name is the same text, so one line
            over.append(line)
    if over:
        raise TemplateError(
            f"an SMS is longer than Twilio's limit of {limit:,} characters per message, so Twilio would refuse "
            "it for every recipient (nothing was sent):\n" + "\n".join(over),
            file=notice_path,
            hint="shorten the notice texts the SMS template prints (headline, summary) or the SMS template itself; "
            "--max-sms-segments cannot raise this limit",
        )


def _fallbacks(notice: Notice, renders: RenderSet) -> list[Caution]:
    """Every text shown in another language than the reader's: notice fields × language, catalog keys."""
    out = [
        Caution(f"notice field {path} × {lang}", f"missing, shown in {notice.default_language}")
        for path, lang in missing_translations(notice)
    ]
    for lang, catalog in renders.catalogs.items():
        shown_in = catalog.source if catalog.source != lang else "en"
        overridden = notice.labels.get(lang, {})  # the notice's own words for a label are no fallback
        out.extend(
            Caution(f"labels/{lang}.yaml", f"label '{key}' missing, shown in {shown_in}")
            for key in catalog.borrowed if key not in overridden
        )
    return out


def prepare(
    notice_path: str | Path,
    contact_paths: list[str | Path],
    *,
    channels: list[str] | None = None,
    templates_dir: str | Path | None = None,
    region: str | None = None,
    max_sms_segments: int = 3,
    suppression_paths: list[str | Path] | None = None,
    ledger: Ledger | None = None,
    resend_after: timedelta | None = None,
    retry_unknown: bool = False,
    sms_transliterate: bool = False,
    strict: bool = False,
    max_rejected: RejectionLimit | None = None,
    allow_number_types: list[str] | None = None,
) -> tuple[Plan, list[Caution]]:
    """Load, render and plan: everything before the first message leaves, and nothing that sends.

    Raises ContactsError when more contact rows were rejected than ``max_rejected`` allows (default 10%).

    With a ledger, the plan keeps only what still needs sending: new recipients, transient failures,
    reminders due, and (when asked) unknowns; everyone else is counted as skipped, with the reason.
    """
    # an edited notice is a new version: everyone gets it again, and it says it is an update (check decides)
    checked = check(
        notice_path, templates_dir=templates_dir, max_sms_segments=max_sms_segments,
        sms_transliterate=sms_transliterate, strict=strict, channels=channels, ledger=ledger,
    )
    renders = checked.renders
    chosen = channels or list(CHANNELS)
    book = read_contacts(contact_paths, default_region=region, allow_number_types=allow_number_types or ())
    refuse_rejected(book, max_rejected or parse_max_rejected(DEFAULT_MAX_REJECTED))
    plan = build_plan(renders, book, chosen)
    # read before the contacts' plan is used: a suppressions file that cannot be read completely stops the run
    suppressions = read_suppressions(suppression_paths or [], default_region=region)
    suppressed = suppressions.entries
    checked.warnings.extend(Caution(f"suppressions {p.where}", p.message) for p in suppressions.problems)
    if ledger is not None and suppressed:
        ledger.suppress((channel, recipient, "listed in a suppression file", source) for channel, recipient, source in suppressed)
    # an emergency may reach people who unsubscribed from email, if the notice says so; STOP for SMS always holds
    override = frozenset({"email"}) if checked.notice.override_suppressions else frozenset()
    plan.decide = Triage(
        ledger, {(channel, recipient) for channel, recipient, _ in suppressed},
        resend_after=resend_after, retry_unknown=retry_unknown, override=override,
    )
    _count(plan, ledger)
    plan.sms_saved = checked.sms_saved
    for channel, n in plan.overridden.items():
        checked.warnings.append(
            Caution(channel, f"override_suppressions: {n} recipient(s) who unsubscribed get this emergency notice")
        )
    return plan, checked.warnings


def _count(plan: Plan, ledger: Ledger | None) -> None:
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


def write_preview(
    plan: Plan,
    directory: str | Path,
    cautions: list[Caution] | None = None,
    *,
    sms_segment_price: float = 0.0,
    max_sms_segments: int = 3,
    templates_dir: str | Path | None = None,
) -> Path:
    """Write every rendering of the planned channels and the preview page (DIR/index.html); return the page."""
    from broadcast.page import write_page

    # someone else's non-empty folder is refused; broadcast's own loses the earlier preview first
    claim_folder(directory)
    for (channel, _, _), rendering in plan.renders.renderings.items():
        if channel in plan.channels:
            write_rendering(Path(directory), rendering)
    # the page links to the staff brief: what the people who answer need, beside what customers will get
    write_brief(plan, directory, templates_dir=templates_dir)
    return write_page(
        plan, cautions or [], Path(directory), sms_segment_price=sms_segment_price, max_sms_segments=max_sms_segments
    )


def write_brief(plan: Plan, directory: str | Path, *, templates_dir: str | Path | None = None) -> list[Path]:
    """The staff brief (brief.html, brief.md) of the planned notice, from the messages this run sends."""
    from broadcast import brief

    return brief.write(brief.assemble(plan.notice, brief.templates_for(templates_dir), renders=plan.renders), directory)


def dry_run_channels(plan: Plan, directory: str | Path) -> dict[str, Channel]:
    """Dry-run is ordinary sending through the outbox channel: nothing that talks to a network is built."""
    outbox = Outbox(directory)
    return {name: OutboxChannel(name, outbox) for name in plan.channels}


def live_channels(plan: Plan, settings: dict[str, Any]) -> dict[str, Channel]:
    """The real adapters for the planned channels, imported only now so --help and dry-runs stay fast."""
    from broadcast.channels import live_channel

    return {name: live_channel(name, settings[name]) for name in plan.channels}


def execute(
    plan: Plan,
    channels: dict[str, Channel],
    *,
    ledger: Ledger | None = None,
    policy: RetryPolicy | None = None,
    progress: Callable[[list[Receipt]], None] | None = None,
    limits: dict[str, Gate] | None = None,
) -> Outcome:
    """Send the plan through ``channels``, each batch claimed in the ledger before and settled after.

    ``limits`` holds a rate.Gate per channel (--rate, --concurrency); look-ups of earlier unknowns obey it too.
    """
    # triage decisions that claim needs (reminders, retried unknowns), from when a message streams out until it is claimed
    pending: dict[str, Decision] = {}

    decide = plan.decide or Triage(None, set())

    def stream(channel: str) -> Iterator[Message]:
        # a channel the ledger had no row for when the plan was counted needs no second look-up per message
        for decision in decide(plan.messages(channel), recorded=plan.recorded[channel] > 0):
            if decision.send:
                if decision.reason:
                    pending[decision.message.id] = decision
                yield decision.message

    for name, channel in channels.items():
        channel.gate = (limits or {}).get(name)
    if ledger is None:
        return _unread(plan, deliver(
            {name: stream(name) for name in plan.channels}, channels, policy=policy, progress=progress, limits=limits
        ))

    def claim(batch: list[Message]) -> list[Message]:
        return ledger.claim([pending.pop(m.id, None) or Decision(m, True) for m in batch])

    ledger.start_run(plan.notice.id)
    try:
        found = reconcile(plan, channels, ledger)
        outcome = deliver(
            {name: stream(name) for name in plan.channels}, channels,
            policy=policy, claim=claim, on_receipts=ledger.settle, progress=progress, limits=limits,
        )
        outcome.reconciled.update(found)
        return _unread(plan, outcome)
    finally:
        ledger.finish_run()


def _unread(plan: Plan, outcome: Outcome) -> Outcome:
    """After Ctrl-C: messages the senders never read from the plan were not started either; count them."""
    if outcome.interrupted:
        for name in plan.channels:
            settled = sum(n for status, n in outcome.counts.get(name, Counter()).items() if status != "skipped")
            outcome.unread[name] = max(0, plan.to_send[name] - settled)
    return outcome


def reconcile(plan: Plan, channels: dict[str, Channel], ledger: Ledger) -> Counter[str]:
    """Settle unknowns from an earlier run by asking providers that offer a look-up (Twilio).

    Found → recorded as sent; provably never arrived → recorded as a transient failure, so the send
    that follows picks it up; otherwise they stay unknown. Returns channel → messages found delivered.
    """
    found: Counter[str] = Counter()
    remaining = []
    groups: dict[str, list[Decision]] = {}
    for decision in plan.unknowns:
        groups.setdefault(decision.message.channel, []).append(decision)
    for channel_name, group in groups.items():
        channel = channels.get(channel_name)
        owned = ledger.claim(group) if channel is not None else []
        by_id = {d.message.id: d for d in group}
        receipts = (
            channel.reconcile([(_as_tried(plan, by_id[m.id]), by_id[m.id].since or ledger_now()) for m in owned])
            if owned
            else None
        )
        if receipts is None:
            if owned:  # no look-up here: hand the rows back exactly as they were
                ledger.settle([Receipt(m.id, m.channel, m.recipient, "unknown", reason=by_id[m.id].reason) for m in owned])
            remaining.extend(group)
            continue
        ledger.settle(receipts)
        for receipt in receipts:
            if receipt.status == "sent":
                found[channel_name] += 1
            elif receipt.status == "retry":
                plan.to_send[channel_name] += 1
            else:
                remaining.append(by_id[receipt.message_id])
        owned_ids = {m.id for m in owned}
        remaining.extend(d for d in group if d.message.id not in owned_ids)
    plan.unknowns = remaining
    return found


def _as_tried(plan: Plan, decision: Decision) -> Message:
    """The message as the earlier attempt wrote it: in the language the ledger recorded, if that has changed since."""
    message, lang = decision.message, decision.language
    key = (message.channel, lang, message.rendering.variant)
    if not lang or lang == message.language or key not in plan.renders.renderings:
        return message
    return replace(message, language=lang, rendering=plan.renders.renderings[key])


def ledger_url(url: str | None, notice_path: str | Path | None = None) -> str:
    """The ledger a run uses: --ledger / BROADCAST_LEDGER, else the one beside the notice file (ledger.default_url)."""
    from broadcast.ledger import DEFAULT_URL, default_url

    return url or os.environ.get("BROADCAST_LEDGER") or (default_url(notice_path) if notice_path else DEFAULT_URL)


def open_ledger(url: str | None, *, dry_run: bool, notice: str | Path | None = None) -> Ledger | None:
    """The ledger for a run; a dry-run only reads one that exists, read-only, and never creates it."""
    from broadcast.ledger import Ledger, ledger_exists

    url = ledger_url(url, notice)
    if dry_run and not ledger_exists(url):
        return None
    return Ledger(url, read_only=dry_run)


def stray_ledger(notice_path: str | Path, url: str, *, live: bool, chosen: str | None = None) -> Caution | None:
    """The ledger broadcast used before it moved beside the notice (./.broadcast in the working folder), when it
    knows this notice and the ledger ``url`` does not: planning a first send from there would reach everyone again.

    Checked before the run opens (and so creates) its own ledger, and only for the default: a ledger ``chosen``
    with --ledger / BROADCAST_LEDGER is the person's decision. A live send refuses (LedgerError); a dry-run
    gets the warning back.
    """
    from broadcast.errors import LedgerError
    from broadcast.ledger import Ledger, masked_url

    old = Path(os.path.abspath(".broadcast/ledger.db"))
    if chosen or not url.startswith("sqlite:///") or not old.is_file():
        return None
    new = Path(os.path.abspath(url.removeprefix("sqlite:///")))
    if new == old:
        return None
    notice = load_notice(notice_path).id

    def knows(path: Path) -> bool:
        ledger = Ledger(f"sqlite:///{path}", read_only=True)
        try:
            return ledger.has_notice(notice)
        finally:
            ledger.engine.dispose()

    if (new.is_file() and knows(new)) or not knows(old):
        return None
    message = (
        f"{notice} has deliveries in {old} (the ledger of the folder you run from), but none in {masked_url(url)}, "
        "the ledger beside the notice file that broadcast now uses; planned as a first send, it would reach "
        "everyone again" + ("; nothing was sent" if live else "")
    )
    if new.exists():
        hint = f"use the old ledger for this notice: --ledger sqlite:///{old} ({new} already holds other notices)"
    else:
        hint = f"move the ledger beside the notice: mkdir -p {new.parent} && mv {old}* {new.parent}/"
    if live:
        raise LedgerError(message, hint=hint)
    return Caution("ledger", f"{message}. {hint}")


def summary(plan: Plan, outcome: Outcome, *, dry_run: bool, sms_segment_price: float = 0.0) -> dict[str, Any]:
    """The --json object: counts from receipts only, never from what was planned."""
    book = plan.book
    channels: dict[str, Any] = {}
    for name in plan.channels:
        counts = outcome.counts.get(name, Counter())
        channels[name] = {
            "planned": plan.planned(name),
            "sent": counts["sent"],
            "skipped": counts["skipped"] + sum(plan.skipped.get(name, Counter()).values()),
            "failed": counts["failed"] + counts["retry"] - outcome.not_started[name],
            # Ctrl-C: not sent, and sent by the next run
            "not_started": outcome.not_started[name] + outcome.unread[name],
            "unknown": counts["unknown"] + sum(1 for d in plan.unknowns if d.message.channel == name),
            "reconciled": outcome.reconciled[name],
            "overridden_suppressions": plan.overridden[name],
            "skipped_reasons": dict(plan.skipped.get(name, Counter())),
            "previewed": counts["previewed"],
            "languages": dict(plan.counts.get(name, Counter())),
        }
    return {
        "notice": plan.notice.id,
        "dry_run": dry_run,
        "versions": {name: plan.renders.versions[name] for name in plan.channels},
        "contacts": {
            "read": book.read, "valid": book.valid, "rejected": book.rejected, "merged": book.merged,
            "lost_channel": book.lost_channel,
        },
        "fallbacks": [
            {"tag": tag, "language": lang, "how": how, "contacts": n} for (tag, lang, how), n in sorted(plan.fallbacks.items())
        ],
        "channels": channels,
        "stopped": outcome.stopped,
        "interrupted": outcome.interrupted,
        "problems": [
            {"file": p.file, "row": p.row, "field": p.field, "message": p.message, "rejected": p.rejected}
            for p in book.problems[:MAX_JSON_PROBLEMS]
        ],
        "problems_total": len(book.problems),
        "renderings": rendering_stats(
            plan.renders, plan.channels, plan.counts, billed=plan.billed, sms_segment_price=sms_segment_price
        ),
        "sms_transliterated": {lang: {"before": b, "after": a} for lang, (b, a) in plan.sms_saved.items()},
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


def status(notice: str, url: str | None) -> dict[str, Any]:
    """The ledger's view of a notice; ``notice`` may be its id or the notice file."""
    from broadcast.errors import LedgerError
    from broadcast.ledger import masked_url

    path = None
    if notice.endswith((".yaml", ".yml")) and Path(notice).is_file():
        path, notice = notice, load_notice(notice).id
    where = ledger_url(url, path)
    ledger = open_ledger(where, dry_run=True)
    if ledger is None:
        raise LedgerError(
            f"no ledger yet at {masked_url(where)}: nothing has been sent with it",
            hint="run `broadcast send … --yes` first; give `status` the notice file to read the ledger beside it, "
            "or point --ledger / BROADCAST_LEDGER at the shared ledger",
        )
    try:
        return {**ledger.status(notice), "ledger": masked_url(where)}
    finally:
        ledger.engine.dispose()
