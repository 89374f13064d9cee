"""Before anything is sent: validate a notice and render it in the wording a live send would use now.

`check`, `preview` and `send` all call :func:`check`, so what one approves is what the other sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from broadcast.channels import REGISTRY
from broadcast.errors import BroadcastError, InputError, NoticeError, TemplateError
from broadcast.ledger import Ledger
from broadcast.message import CONTACT_FIELDS, placeholder
from broadcast.notice import Notice, field_line, load_notice, missing_translations
from broadcast.render import RenderSet, Templates, label_problems, missing_contacts, render_notice


@dataclass(frozen=True)
class CheckRequest:
    """What `broadcast check` was asked: one notice, rendered as a live send would render it now."""

    notice: Path
    templates_dir: Path | None = None
    max_sms_segments: int = 3
    sms_transliterate: bool = False
    strict: bool = False
    force: bool = False
    #: --ledger / BROADCAST_LEDGER; None: the ledger beside the notice (ledger.ledger_url)
    ledger: str | None = None


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
    #: (channel, language) renderings a live send would word as an update: the ledger has an earlier version
    updated: list[tuple[str, str]] = field(default_factory=list)
    #: language → segments, for SMS renderings (in the wording a live send would use) over --max-sms-segments
    sms_too_long: dict[str, int] = field(default_factory=dict)
    #: the ledger the wording was decided with, as it may be shown (password hidden)
    ledger: str = ""
    #: what a live send would refuse (a long SMS without --force): raised after the report is shown
    refusal: BroadcastError | None = None
    #: the approval fingerprint of every rendering (approval.fingerprint), as `approve` and `send` compute it
    fingerprint: str = ""


def run(request: CheckRequest) -> Checked:
    """`broadcast check`: the notice checked and rendered against its ledger, as a live send would word it now."""
    from broadcast.ledger import masked_url, open_ledger, resolve_url, stray_ledger

    where = resolve_url(request.ledger, request.notice)
    stray = stray_ledger(request.notice, where, live=False, chosen=request.ledger)
    checked = check(
        request.notice, templates_dir=request.templates_dir, max_sms_segments=request.max_sms_segments,
        sms_transliterate=request.sms_transliterate, strict=request.strict, ledger=open_ledger(where, dry_run=True),
    )
    checked.warnings.extend(Caution(*stray) for stray in [stray] if stray)
    checked.ledger = masked_url(where)
    checked.refusal = long_sms_refusal(
        checked.sms_too_long, request.max_sms_segments, force=request.force, sent="check found it"
    )
    from broadcast import approval

    # what a send without --channel would send: the fingerprint approve and send compute for the same run
    fp = approval.fingerprint(checked.renders, [c for c in checked.renders.versions if REGISTRY[c].by_default])
    checked.fingerprint = fp.digest
    approval.record_beside(
        where, "check", checked.notice.id, fp=fp, counts={"renderings": len(fp.renderings)},
        exit_code=checked.refusal.exit_code if checked.refusal else 0,
    )
    return checked


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
        notice, templates, channels or list(REGISTRY), ledger=ledger, sms_transliterate=sms_transliterate,
        sms_max_segments=max_sms_segments,
    )
    checked = Checked(notice, templates, renders, updated=updated)
    # what loading found allowed but worth a look (an http:// link), shown by check, preview and send alike
    checked.warnings.extend(Caution(w.where, w.message) for w in notice.warnings)
    fallbacks = _fallbacks(notice, renders)
    if strict and fallbacks:
        raise TemplateError(
            f"--strict: {len(fallbacks)} translation fallback(s):\n" + "\n".join(f"  - {f}" for f in fallbacks),
            file=notice_path,
            hint="translate each listed field or label, or run without --strict",
        )
    _check_contacts_named(renders, templates)
    checked.warnings.extend(fallbacks)
    _check_body_limit(renders, notice_path)
    checked.warnings.extend(_support_gaps(notice, notice_path, strict=strict))
    # the channels billed per segment: --max-sms-segments, --sms-transliterate and the segment price concern them
    billed = [c for c in renders.versions if REGISTRY[c].billed]
    if billed:
        _check_segments(checked, billed, max_sms_segments, sms_transliterate)
    return checked


def _check_contacts_named(renders: RenderSet, templates: Templates) -> None:
    """Every rendering must say how to reach every support channel; a channel with several forms, in each form
    (another limit, or an update's prefix, sends another form than this run picks)."""
    notice, gaps = renders.notice, []
    for (channel, lang, variant), rendering in renders.renderings.items():
        if channel in renders.forms:
            continue  # below, with every form
        for channel_id in missing_contacts(rendering, notice):
            gaps.append(f"  - {channel} ({lang}{', ' + variant if variant else ''}) leaves out {channel_id}: {notice.channel(channel_id).contact}")
    for channel, languages in renders.forms.items():
        for lang, forms in languages.items():
            left_out: dict[tuple[str, str], list[int]] = {}
            for form, variants in forms.items():
                for variant, rendering in variants.items():
                    for channel_id in missing_contacts(rendering, notice):
                        left_out.setdefault((variant, channel_id), []).append(form)
            for (variant, channel_id), in_forms in left_out.items():
                which = "" if len(in_forms) == len(forms) else f", form {', '.join(map(str, in_forms))}"
                gaps.append(f"  - {channel} ({lang}{', ' + variant if variant else ''}{which}) leaves out {channel_id}: {notice.channel(channel_id).contact}")
    if gaps:
        raise TemplateError(
            "a rendering leaves out a support channel's contact; every channel must say how to reach all of them:\n"
            + "\n".join(gaps),
            file=templates.directory,
            hint="print every notice.channels entry (label and contact) in each template",
        )


def _support_gaps(notice: Notice, notice_path: str | Path, *, strict: bool) -> list[Caution]:
    """What the staff brief needs to help the people who answer (brief.support_gaps): warned, or with --strict
    refused."""
    from broadcast.brief import support_gaps

    gaps = support_gaps(notice)
    if strict and gaps:
        raise TemplateError(
            f"--strict: {len(gaps)} part(s) of crisis support missing:\n" + "\n".join(f"  - {g.field}: {g.message}" for g in gaps),
            file=notice_path,
            field=gaps[0].field,
            hint="add the listed fields (examples/README.md documents them), or run without --strict",
        )
    return [Caution(f"notice field {g.field}", g.message) for g in gaps]


def _check_segments(checked: Checked, billed: list[str], max_segments: int, transliterate: bool) -> None:
    """Segment counts of the channels billed by segment (SMS), in the wording a live send uses now and as a later
    update would word them: over --max-sms-segments is refused without --force, so it is shown here first."""
    from broadcast.segments import count_segments

    notice, templates, renders, updated = checked.notice, checked.templates, checked.renders, checked.updated
    if transliterate:
        plain = render_notice(
            notice, templates, channels=billed, updated=[u for u in updated if u[0] in billed], sms_max_segments=max_segments
        )
        for (channel, lang, variant), rendering in plain.renderings.items():
            if not variant:
                cost = REGISTRY[channel].cost
                checked.sms_saved[lang] = (cost(rendering).units, cost(renders.get(channel, lang)).units)
    # a later send of an edited notice says it is an update, and that prefix may need a shorter form than fits now
    updates = render_notice(
        notice, templates, channels=billed, updated=[(c, lang) for c in billed for lang in REGISTRY[c].languages(notice)],
        sms_transliterate=transliterate, sms_max_segments=max_segments,
    )
    for rendering in (r for channel in billed for r in renders.of(channel)):
        if rendering.variant:
            continue  # the unnamed variant is never longer than the named one
        info = count_segments(rendering.text)
        update_info = count_segments(updates.get(rendering.channel, rendering.language).text)
        if info.segments > max_segments:
            checked.sms_too_long[rendering.language] = info.segments
            wording = " as an update" if (rendering.channel, rendering.language) in updated else ""
            checked.warnings.append(
                Caution(
                    f"{rendering.channel} ({rendering.language})",
                    f"{info.segments} segments{wording} ({info.encoding}, {info.characters} characters) is over the "
                    f"limit of {max_segments} even in the SMS template's shortest form ({rendering.form}), so a "
                    "live send refuses it without --force; shorten the headline, the first channel's needs or the "
                    "contacts, or the SMS template, or raise --max-sms-segments",
                )
            )
        elif update_info.segments > max_segments:
            checked.warnings.append(
                Caution(
                    f"{rendering.channel} ({rendering.language}, update)",
                    f"fits now, but sent again as an update it is {update_info.segments} segments ({update_info.encoding}, "
                    f"{update_info.characters} characters), over the limit of {max_segments} even in the shortest "
                    "form, so a live send of an edited notice would refuse; shorten the headline, the first channel's "
                    "needs or the contacts, or raise --max-sms-segments",
                )
            )


def _check_labels(notice: Notice, templates: Templates, notice_path: str | Path) -> None:
    """The notice's ``labels:`` must name labels the templates have, with only the {slots} each one fills."""
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
) -> tuple[RenderSet, list[tuple[str, str]]]:
    """Every rendering in the wording a live send would use now, and the (channel, language) renderings that word
    it as an update.

    The one place that decides the wording: `check`, `preview` and `send` all call it, so what one approves
    is what the other sends. A rendering whose ledger holds another version of the same channel and language is
    an update; one whose content did not change keeps its wording, so it is not sent again.
    """
    from broadcast.lifecycle import release_number

    release = release_number(ledger, notice) if ledger is not None else 1
    renders = render_notice(
        notice, templates, channels=channels, sms_transliterate=sms_transliterate, sms_max_segments=sms_max_segments,
        release=release,
    )
    if ledger is None:
        return renders, []
    earlier = ledger.sent_versions(notice.id)
    # a row recorded under the channel's whole version (before versions were per language) is this content too
    updated = [
        (channel, lang) for (channel, lang), version in renders.language_versions.items()
        if earlier.get((channel, lang), set()) - {version, renders.versions[channel]}
    ]
    if updated:
        # the update wording goes out under the version of the content: were the version a hash of the update
        # wording, the next run would find a version the ledger never sent and send it again
        renders = replace(render_notice(
            notice, templates, channels=channels, updated=updated, sms_transliterate=sms_transliterate,
            sms_max_segments=sms_max_segments, release=release,
        ), versions=renders.versions, language_versions=renders.language_versions)
    return renders, updated


def long_sms_refusal(
    too_long: dict[str, int], max_segments: int, *, force: bool, sent: str = "nothing was sent"
) -> InputError | None:
    """The refusal of SMS longer than ``max_segments`` unless ``force``: the one rule `check`, `preview` and `send`
    apply (a live send raises it before sending; check and preview after showing what they found)."""
    if not too_long or force:
        return None
    listed = ", ".join(f"{lang}: {n} segments" for lang, n in sorted(too_long.items()))
    return InputError(
        f"the SMS is longer than --max-sms-segments {max_segments} ({listed}); a live send refuses it; {sent}",
        field="--max-sms-segments",
        hint="shorten the SMS template or notice texts, add --sms-transliterate, raise --max-sms-segments, "
        "or add --force to pay for the longer SMS",
    )


def _check_body_limit(renders: RenderSet, notice_path: str | Path) -> None:
    """A provider refuses a body over its limit (Twilio: 1,600 characters) whatever --max-sms-segments allows:
    refuse it here, before sending."""
    over, limits = [], {}
    for channel in renders.versions:
        limit = REGISTRY[channel].max_body
        if limit is None:
            continue
        limits[channel] = limit
        for rendering in renders.of(channel):
            # a contact's name adds to this; the adapter refuses the one message a long name pushes over
            text = rendering.text
            for name in CONTACT_FIELDS:
                text = text.replace(placeholder(name), "")
            line = f"  - {channel} ({rendering.language}): {len(text):,} characters"
            if len(text) > limit and line not in over:  # the variant without a name is the same text, so one line
                over.append(line)
    if over:
        said = " or ".join(f"{REGISTRY[c].provider}'s limit of {n:,} characters per message" for c, n in limits.items())
        raise TemplateError(
            f"a message is longer than {said}, so the provider would refuse it for every recipient (nothing was "
            "sent):\n" + "\n".join(over),
            file=notice_path,
            hint="shorten the notice texts the template prints (headline, summary) or the template itself; "
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


