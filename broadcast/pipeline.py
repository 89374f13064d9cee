"""Before anything is sent: check a notice, prepare a plan (load → render → plan), find the ledger, write previews."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broadcast.channels.outbox import claim_folder, write_rendering
from broadcast.contacts import (
    DEFAULT_MAX_REJECTED,
    RejectionLimit,
    parse_max_rejected,
    read_contacts,
    read_suppressions,
    refuse_rejected,
)
from broadcast.errors import InputError, TemplateError
from broadcast.ledger import Ledger
from broadcast.notice import Notice, load_notice, missing_translations
from broadcast.plan import CHANNELS, Plan, Triage, build_plan, count_plan
from broadcast.render import RenderSet, Templates, label_problems, missing_contacts, render_notice
from broadcast.segments import count_segments

if TYPE_CHECKING:
    pass




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
    count_plan(plan, ledger)
    plan.sms_saved = checked.sms_saved
    for channel, n in plan.overridden.items():
        checked.warnings.append(
            Caution(channel, f"override_suppressions: {n} recipient(s) who unsubscribed get this emergency notice")
        )
    return plan, checked.warnings


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
