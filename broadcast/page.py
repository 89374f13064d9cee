"""The preview page: one self-contained index.html a person reads before a live send, loading nothing from the network."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from markupsafe import Markup, escape

from broadcast.channels import REGISTRY
from broadcast.channels.outbox import PAGE_FILE, claim_folder, write_file, write_rendering
from broadcast.display import MESSAGE_LIMIT, clip
from broadcast.message import Rendering
from broadcast.notice import localize
from broadcast.plan import Plan
from broadcast.segments import count_segments

#: contact problems listed on the page; a file with thousands of bad rows must not make an unreadable page
MAX_PROBLEMS = 200

# The page and every frame in it may load nothing: no scripts, no fonts, no remote images.
# Inline styles are the only thing allowed, so a user's template that links a remote logo shows a
# broken image here instead of calling out from the machine of the person reviewing a crisis notice.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; base-uri 'none'; form-action 'none'"

# Contact fields render as %%name%% (text) or %%name:html%% (HTML); see render.placeholder
_PLACEHOLDER = re.compile(r"%%([a-z_]+)(?::html)?%%")
_REMOTE = re.compile(r"""\b(?:src|background|poster)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//""", re.I)
_HEAD = re.compile(r"<head\b[^>]*>", re.I)


class CautionLike(Protocol):
    """What the page needs of a pipeline.Caution (kept structural so page.py does not import the pipeline)."""

    where: str
    message: str


@dataclass
class Post:
    text: str
    weighted: int
    over: bool


@dataclass
class Panel:
    """One channel in one language, as the page shows it."""

    channel: str
    language: str
    direction: str
    recipients: int
    #: recipients without a name on file, who get the "noname" variant
    noname: int = 0
    subject: str = ""
    text: str = ""
    #: a whole HTML document for an iframe's srcdoc (email body, web banner)
    document: str = ""
    remote: int = 0
    characters: int = 0
    encoding: str = ""
    segments: int = 0
    per_segment: int = 0
    over_limit: bool = False
    cost: float = 0.0
    posts: list[Post] = field(default_factory=list)
    #: which form of the SMS template went out (1 = full; later forms are shorter, see templates/sms.txt.j2)
    form: int = 0
    #: how the panel shows the message: "mail" (subject, HTML, plain text), "segments" (billed by SMS segment),
    #: "posts" (a thread), "document" (an HTML page part, the banner) or "text"
    kind: str = "text"
    #: one message per contact (else one per language: posted, published)
    personal: bool = True
    #: the most weighted characters one post may have, for a thread
    post_limit: int = 0
    #: this rendering's approval (approve.RenderingApproval.state: approved, changed, revoked, unapproved, audience)
    #: and its words ("sms × sl changed since Ana Novak approved at …"); "" when nobody asked about approval
    approval: str = ""
    approval_text: str = ""

    @property
    def id(self) -> str:
        return f"panel-{self.channel}-{self.language}"

    @property
    def title(self) -> str:
        return _title(self.channel)


@dataclass
class Language:
    code: str
    direction: str
    headline: str
    organization: str
    panels: list[Panel]


@dataclass
class PlanRow:
    channel: str
    title: str
    #: language → planned count, or None where the channel does not ship that language
    cells: list[int | None]
    total: int
    skipped: int
    skipped_reasons: list[tuple[str, int]]
    unknown: int


def write_preview(
    plan: Plan,
    directory: str | Path,
    cautions: Sequence[CautionLike] = (),
    *,
    sms_segment_price: float = 0.0,
    max_sms_segments: int = 3,
    templates_dir: str | Path | None = None,
    approval: Any = None,
) -> Path:
    """Write every rendering of the planned channels, the staff brief and the preview page; return the page."""
    from broadcast.brief import for_renders

    # someone else's non-empty folder is refused; broadcast's own loses the earlier preview first
    claim_folder(directory)
    for (channel, _, _), rendering in plan.renders.renderings.items():
        if channel in plan.channels:
            write_rendering(Path(directory), rendering)
    # the page links to the staff brief: what the people who answer need, beside what customers will get
    for_renders(plan.renders, directory, templates_dir=templates_dir)
    return write_page(
        plan, list(cautions), Path(directory), sms_segment_price=sms_segment_price, max_sms_segments=max_sms_segments,
        approval=approval,
    )


def write_page(
    plan: Plan,
    cautions: Sequence[CautionLike],
    directory: str | Path,
    *,
    sms_segment_price: float = 0.0,
    max_sms_segments: int = 3,
    approval: Any = None,
) -> Path:
    """Write ``directory/index.html``: counts and warnings first, then every channel × language as recipients see it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    page = render_page(
        plan, cautions, sms_segment_price=sms_segment_price, max_sms_segments=max_sms_segments, approval=approval
    )
    # Written whole and renamed, so a browser opened by --open never shows half a page, and a link
    # planted at index.html is replaced rather than written through
    return write_file(directory / PAGE_FILE, page)


def render_page(
    plan: Plan, cautions: Sequence[CautionLike], *, sms_segment_price: float = 0.0, max_sms_segments: int = 3,
    approval: Any = None,
) -> str:
    """The preview page as one HTML string (write_page writes it); ``approval`` (approve.PreviewApproval) adds each
    rendering's approval state."""
    notice = plan.notice
    renders = plan.renders
    languages = []
    for lang in notice.languages:
        direction = renders.catalogs[lang].direction if lang in renders.catalogs else "ltr"
        panels = []
        for channel in plan.channels:
            rendering = renders.renderings.get((channel, lang, ""))
            if rendering is None:  # social ships in fewer languages than the notice
                continue
            panels.append(
                _panel(
                    rendering,
                    direction,
                    plan.counts.get(channel, Counter())[lang],
                    plan.unnamed[(channel, lang)],
                    sms_segment_price=sms_segment_price,
                    max_sms_segments=max_sms_segments,
                )
            )
            found = approval.of(channel, lang) if approval is not None else None
            if found is not None:
                panels[-1].approval, panels[-1].approval_text = found.state, found.describe()
        local = localize(notice, lang)
        languages.append(Language(lang, direction, local.headline, local.organization.name, panels))

    book = plan.book
    problems = list(book.problems)
    rejected = sum(1 for p in problems if p.rejected)
    contact_warnings = len(problems) - rejected
    billed_panels = [p for lang in languages for p in lang.panels if p.kind == "segments"]
    verdict = _verdict(len(cautions), rejected, contact_warnings, len(plan.unknowns), plan.total, lost=book.lost_channel)
    context = {
        "notice": notice,
        "plan": plan,
        "verdict": verdict,
        "cautions": list(cautions),
        "problems": sorted(problems, key=lambda p: (not p.rejected, p.file, p.row))[:MAX_PROBLEMS],
        "problems_total": len(problems),
        "rejected": rejected,
        "contact_warnings": contact_warnings,
        "book": book,
        "fallbacks": [(tag, lang, how, n) for (tag, lang, how), n in sorted(plan.fallbacks.items())],
        "languages": languages,
        "plan_rows": _plan_rows(plan),
        "tiles": _tiles(plan, billed_panels, sms_segment_price),
        "versions": [(c, renders.versions.get(c, "")) for c in plan.channels],
        "max_sms_segments": max_sms_segments,
        "price": sms_segment_price,
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "csp": CSP,
        "approval": approval,
        # quiet hours: who waits for their morning, and until when in their own time
        "held": [
            (_title(d.message.channel), d.message.recipient, f"{d.local_until():%Y-%m-%d %H:%M}", d.zone)
            for d in plan.held_shown
        ],
        "held_total": sum(plan.held.values()),
        "quiet": plan.quiet,
    }
    return _environment().from_string(PAGE_TEMPLATE).render(context)


# -- what each panel shows ----------------------------------------------------------------------


def _title(channel: str) -> str:
    adapter = REGISTRY.get(channel)
    return adapter.title or channel if adapter is not None else channel


def _panel(
    rendering: Rendering, direction: str, recipients: int, noname: int, *, sms_segment_price: float, max_sms_segments: int
) -> Panel:
    adapter = REGISTRY[rendering.channel]
    rendering = adapter.preview(rendering, datetime.now(timezone.utc))
    panel = Panel(rendering.channel, rendering.language, direction, recipients, noname, personal=adapter.personal)
    panel.subject, panel.text = rendering.subject, rendering.text
    if rendering.html:
        panel.document = _frame_document(_highlight_html(rendering.html), rendering.language, direction)
        panel.remote = len(_REMOTE.findall(rendering.html))
    if rendering.posts:
        panel.kind, panel.post_limit = "posts", adapter.max_post_weight or 0
        panel.posts = [Post(p, w, bool(panel.post_limit) and w > panel.post_limit) for p in rendering.posts for w in [adapter.post_length(p)]]
    elif adapter.billed:
        panel.kind = "segments"
        info = count_segments(rendering.text)
        panel.characters, panel.encoding, panel.segments, panel.per_segment = (
            info.characters,
            info.encoding,
            info.segments,
            info.per_segment,
        )
        panel.over_limit = info.segments > max_sms_segments
        panel.form = rendering.form
        # The brief's estimate: every planned recipient pays for the segments of this language's text
        panel.cost = info.segments * recipients * sms_segment_price
    elif rendering.html:
        panel.kind = "mail" if rendering.text else "document"
    return panel


def _frame_document(body: str, lang: str, direction: str) -> str:
    """A full document for an iframe's srcdoc, carrying the same no-network policy as the page."""
    policy = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    match = _HEAD.search(body)
    if match:  # a whole email document: the policy goes first in its own head
        return body[: match.end()] + policy + body[match.end() :]
    return (
        f'<!DOCTYPE html><html lang="{html.escape(lang)}" dir="{html.escape(direction)}"><head><meta charset="utf-8">'
        f'{policy}</head><body style="margin:0;background:#fff">{body}</body></html>'
    )


def _highlight_html(text: str) -> str:
    """Placeholders inside the email's own HTML, shown as a highlighted field name (the page's choice: a token, not a sample)."""
    return _PLACEHOLDER.sub(
        lambda m: (
            '<mark title="filled in for each recipient" style="background:#fde68a;color:#78350f;'
            'border-radius:3px;padding:0 3px;font-family:inherit">'
            f"{html.escape(m.group(1))}</mark>"
        ),
        text,
    )


def _tokens(text: str) -> Markup:
    """Escape plain text, then show each placeholder as a highlighted token (Jinja filter)."""
    escaped = str(escape(text))
    return Markup(
        _PLACEHOLDER.sub(lambda m: f'<mark class="token" title="filled in for each recipient">{m.group(1)}</mark>', escaped)
    )


# -- what the top of the page says ------------------------------------------------------------


@dataclass
class Verdict:
    level: str  # stop | review | ready
    title: str
    detail: str


def _verdict(cautions: int, rejected: int, contact_warnings: int, unknown: int, planned: int, lost: int = 0) -> Verdict:
    # a person who lost a channel (a bad phone: email only) is not reached as planned, like a rejected row
    red = cautions + rejected + lost
    if red:
        parts = []
        if cautions:
            parts.append(f"{cautions} warning{'s' if cautions != 1 else ''} about the messages")
        if rejected:
            parts.append(f"{rejected} rejected contact row{'s' if rejected != 1 else ''}")
        if lost:
            parts.append(f"{lost} contact{'s' if lost != 1 else ''} who lost a channel")
        return Verdict("stop", f"Check {red} problem{'s' if red != 1 else ''} before sending", " and ".join(parts) + ", listed below in red.")
    if planned == 0:
        return Verdict("review", "Nothing to send", "No message is planned: check the contacts, --channel and the ledger's skips below.")
    amber = contact_warnings + unknown
    if amber:
        return Verdict(
            "review",
            f"Review {amber} item{'s' if amber != 1 else ''} before sending",
            "No warnings about the messages; some contact rows or earlier outcomes need a look.",
        )
    return Verdict("ready", "No warnings: ready to send", "Every channel and language rendered within its limits.")


@dataclass
class Tile:
    label: str
    value: str
    detail: str = ""
    level: str = ""


def _tiles(plan: Plan, billed_panels: list[Panel], price: float) -> list[Tile]:
    book = plan.book
    tiles = [Tile("Messages planned", f"{plan.total:,}", "across " + ", ".join(_title(c) for c in plan.channels))]
    for channel in plan.channels:
        planned, adapter = plan.planned(channel), REGISTRY[channel]
        if adapter.billed:
            panels = [p for p in billed_panels if p.channel == channel]
            over = [p.language for p in panels if p.over_limit and p.recipients]
            segments = sum(p.segments * p.recipients for p in panels)
            detail = f"recipients · {segments:,} segments"
            if price:
                detail += f" · est. cost {_money(sum(p.cost for p in panels))}"
            tiles.append(Tile(_title(channel), f"{planned:,}", detail, "stop" if over else ""))
        elif adapter.personal:
            tiles.append(Tile(_title(channel), f"{planned:,}", "recipients"))
        elif adapter.max_post_weight:
            posts = sum(
                adapter.cost(plan.renders.get(channel, lang)).units for lang in plan.counts[channel] if plan.counts[channel][lang]
            )
            tiles.append(Tile(_title(channel), f"{planned:,}", f"thread{'s' if planned != 1 else ''} · {posts} posts"))
        else:
            tiles.append(Tile(_title(channel), f"{planned:,}", f"language{'s' if planned != 1 else ''}"))
    tiles.append(
        Tile(
            "Contacts usable",
            f"{book.valid:,} of {book.read:,}",
            f"{book.rejected} rejected · {book.merged} merged",
            "stop" if book.rejected else "",
        )
    )
    skipped = sum(sum(c.values()) for c in plan.skipped.values())
    if skipped:
        tiles.append(Tile("Skipped", f"{skipped:,}", "already sent, suppressed, …", "review"))
    if plan.unknowns:
        tiles.append(Tile("Unknown", f"{len(plan.unknowns):,}", "earlier outcome unknown; not resent without --retry-unknown", "review"))
    held = sum(plan.held.values())
    if held:
        tiles.append(Tile("Held", f"{held:,}", "in their quiet hours; the first run after them sends them", "review"))
    return tiles


def _plan_rows(plan: Plan) -> list[PlanRow]:
    unknown = Counter(d.message.channel for d in plan.unknowns)
    rows = []
    for channel in plan.channels:
        counts = plan.counts.get(channel, Counter())
        shipped = REGISTRY[channel].languages(plan.notice)
        skipped = plan.skipped.get(channel, Counter())
        rows.append(
            PlanRow(
                channel,
                _title(channel),
                [counts[lang] if lang in shipped else None for lang in plan.notice.languages],
                sum(counts.values()),
                sum(skipped.values()),
                skipped.most_common(),
                unknown[channel],
            )
        )
    return rows


def _money(value: float) -> str:
    """A cost to two decimals, or up to four below 1: one SMS segment costs fractions of a cent."""
    if value >= 1 or value == 0:
        return f"{value:,.2f}"
    if value < 0.0001:
        return "<0.0001"
    digits = f"{value:.4f}".rstrip("0")
    return digits + "0" * max(0, 2 - len(digits.split(".")[1]))


def _environment():  # noqa: ANN202 - jinja2.sandbox.SandboxedEnvironment, imported lazily like render.py does
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # Autoescape everything: every notice text, contact row and file name on this page is data, never markup
    env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["tokens"] = _tokens
    env.filters["money"] = _money
    # every value the page echoes from the notice's metadata, contact files or the ledger is capped; the
    # renderings themselves are shown whole, since they are what recipients get
    env.filters["clip"] = clip
    env.filters["clip_message"] = lambda text: clip(text, MESSAGE_LIMIT)
    return env


# -- the page ---------------------------------------------------------------------------------
# Kept in this module rather than a file beside it, so it ships with the package without package data.

PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en" dir="ltr">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ '⛔' if verdict.level == 'stop' else ('⚠' if verdict.level == 'review' else '✓') }} Preview · {{ notice.id | clip }}</title>
<style>
:root{--ink:#111827;--muted:#4b5563;--faint:#6b7280;--line:#e5e7eb;--bg:#f3f4f6;--card:#fff;
--red:#b91c1c;--red-bg:#fef2f2;--red-line:#fecaca;--amber:#92400e;--amber-bg:#fffbeb;--amber-line:#fde68a;
--green:#166534;--green-bg:#f0fdf4;--green-line:#bbf7d0;--blue:#1d4ed8;
--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Helvetica Neue",Arial,sans-serif}
a{color:var(--blue)}
code,.mono{font-family:var(--mono);font-size:.9em}
h1,h2,h3{line-height:1.25;margin:0}
.wrap{max-width:1320px;margin:0 auto;padding:0 24px}
.topbar{background:#111827;color:#f9fafb}
.topbar .wrap{display:flex;flex-wrap:wrap;align-items:center;gap:8px 20px;padding-top:14px;padding-bottom:14px}
.brand{font-weight:700;letter-spacing:.02em;color:#9ca3af;text-transform:uppercase;font-size:12px}
.topbar h1{font-size:20px;font-family:var(--mono);font-weight:600}
.sev{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.05em;color:#fff;background:#a16207}
.sev-urgent{background:#c2410c}.sev-emergency{background:#dc2626}
.meta{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:13px;color:#d1d5db}
.meta b{color:#fff;font-weight:600}
.dry{margin-left:auto;font-size:13px;font-weight:600;color:#fde68a}
.verdict{margin:20px 0 0;border-radius:12px;padding:18px 22px;display:flex;gap:16px;align-items:flex-start;border:2px solid}
.verdict .icon{flex:none;width:40px;height:40px;border-radius:50%;display:grid;place-items:center;font-size:22px;font-weight:800;color:#fff}
.verdict h2{font-size:24px}
.verdict p{margin:4px 0 0;font-size:15px}
.v-stop{background:var(--red-bg);border-color:var(--red);color:#7f1d1d}.v-stop .icon{background:var(--red)}
.v-review{background:var(--amber-bg);border-color:#d97706;color:#78350f}.v-review .icon{background:#d97706}
.v-ready{background:var(--green-bg);border-color:#16a34a;color:#14532d}.v-ready .icon{background:#16a34a}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:16px 0 0}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px;border-top:4px solid #9ca3af}
.tile .label{font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.tile .value{font-size:28px;font-weight:700;line-height:1.2;font-variant-numeric:tabular-nums}
.tile .detail{font-size:13px;color:var(--muted)}
.tile.t-stop{border-top-color:var(--red)}.tile.t-stop .value{color:var(--red)}
.tile.t-review{border-top-color:#d97706}
section.block{background:var(--card);border:1px solid var(--line);border-radius:12px;margin:16px 0 0;padding:16px 20px}
section.block>h2{font-size:17px;margin-bottom:10px;display:flex;gap:10px;align-items:center}
.count{display:inline-block;min-width:24px;padding:0 8px;border-radius:999px;font-size:13px;font-weight:700;text-align:center;background:#e5e7eb;color:var(--ink)}
.block.red{border:2px solid var(--red);background:var(--red-bg)}
.block.red>h2{color:var(--red)}.block.red .count{background:var(--red);color:#fff}
ul.cautions{margin:0;padding:0;list-style:none}
ul.cautions li{padding:8px 12px;border-left:4px solid var(--red);background:#fff;margin:0 0 6px;border-radius:0 6px 6px 0}
ul.cautions .where{font-weight:700;color:var(--red);margin-right:6px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);background:#f9fafb}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.zero{color:#9ca3af}
td.na{color:#d1d5db;text-align:center}
tr.total td{font-weight:700}
tr.p-rejected td{background:var(--red-bg)}tr.p-rejected td:first-child{box-shadow:inset 4px 0 var(--red)}
tr.p-warning td{background:var(--amber-bg)}tr.p-warning td:first-child{box-shadow:inset 4px 0 #d97706}
.pill{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:700}
.pill.red{background:var(--red);color:#fff}.pill.amber{background:#fde68a;color:#78350f}
.pill.grey{background:#e5e7eb;color:#374151}.pill.green{background:#dcfce7;color:#166534}
.hint{color:var(--muted);font-size:13px}
.two{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:16px}
.two>section.block{margin:0}
.reasons{font-size:13px;color:var(--muted)}
nav.jump{display:flex;flex-wrap:wrap;gap:8px;margin:16px 0 0;align-items:center;font-size:14px}
nav.jump a{display:inline-flex;gap:6px;align-items:center;padding:4px 12px;border-radius:999px;background:#fff;border:1px solid var(--line);text-decoration:none;color:var(--ink);font-weight:600}
nav.jump a:hover{border-color:var(--blue)}
section.lang{margin:28px 0 0}
.lang-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 14px;padding:0 0 10px;border-bottom:2px solid #d1d5db;margin-bottom:14px}
.lang-head .code{font:700 13px var(--mono);background:#111827;color:#fff;border-radius:6px;padding:3px 8px}
.lang-head h2{font-size:22px}
.lang-head .dirnote{font-size:13px;color:var(--muted)}
.panels{display:grid;grid-template-columns:minmax(0,1.8fr) minmax(0,1fr);gap:16px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:12px;overflow:hidden;display:flex;flex-direction:column}
.panel.wide{grid-column:1/-1}
.panel.bad{border:2px solid var(--red)}
.panel-head{display:flex;flex-wrap:wrap;align-items:center;gap:6px 10px;padding:10px 14px;border-bottom:1px solid var(--line);background:#f9fafb;font-size:14px}
.panel-head h3{font-size:15px}
.panel-head .who{margin-inline-start:auto;color:var(--muted)}
.panel-head .who b{color:var(--ink)}
.panel-body{padding:14px;flex:1}
.subject{font-size:17px;font-weight:700;margin:0 0 10px}
.subject small{display:block;font-size:12px;font-weight:600;color:var(--faint);text-transform:uppercase;letter-spacing:.05em}
.frame{resize:vertical;overflow:hidden;border:1px solid var(--line);border-radius:8px;background:#fff;height:600px;min-height:160px}
.frame.banner{height:470px}
.frame iframe{display:block;width:100%;height:100%;border:0}
details.plain{margin-top:10px}
details.plain summary{cursor:pointer;font-weight:600;color:var(--muted);font-size:14px}
pre.text{white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.5 var(--mono);background:#f9fafb;border:1px solid var(--line);border-radius:8px;padding:10px 12px;margin:8px 0 0;max-height:420px;overflow:auto}
mark.token{background:#fde68a;color:#78350f;border-radius:3px;padding:0 3px;font-family:var(--mono);font-size:.92em}
.note{font-size:13px;color:var(--muted);margin:8px 0 0}
.note.warn{color:var(--amber)}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(96px,1fr));gap:8px;margin:0 0 14px}
.stat{border:1px solid var(--line);border-radius:8px;padding:6px 10px}
.stat .k{font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.stat .v{font-size:18px;font-weight:700;font-variant-numeric:tabular-nums}
.stat.bad{border-color:var(--red);background:var(--red-bg)}.stat.bad .v,.stat.bad .k{color:var(--red)}
.phone{max-width:340px;margin:0 auto;border:10px solid #1f2937;border-radius:28px;background:#f3f4f6;padding:12px 10px 16px}
.phone .from{text-align:center;font-size:12px;color:var(--faint);margin-bottom:8px}
.bubble{background:#e5e7eb;color:#111827;border-radius:18px;border-end-start-radius:4px;padding:10px 13px;white-space:pre-wrap;overflow-wrap:anywhere;font-size:14px;line-height:1.45;max-height:560px;overflow:auto}
.thread{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:12px}
.post{border:1px solid var(--line);border-radius:12px;padding:12px 14px;display:flex;flex-direction:column;gap:8px}
.post .who{display:flex;align-items:center;gap:8px;font-weight:700;font-size:14px}
.avatar{width:28px;height:28px;border-radius:50%;background:#111827;color:#fff;display:grid;place-items:center;font-size:13px;flex:none}
.post .body{white-space:pre-wrap;overflow-wrap:anywhere;font-size:14px;flex:1}
.post .foot{display:flex;justify-content:space-between;align-items:center;font-size:12px;color:var(--muted);font-variant-numeric:tabular-nums}
.meter{height:4px;border-radius:2px;background:#e5e7eb;overflow:hidden}
.meter span{display:block;height:100%;background:#60a5fa}
.post.over{border:2px solid var(--red)}.post.over .meter span{background:var(--red)}.post.over .foot{color:var(--red);font-weight:700}
.empty{opacity:.75}
footer{margin:32px 0;color:var(--faint);font-size:13px}
@media (max-width:900px){.panels{grid-template-columns:1fr}.dry{margin-left:0}}
@media print{.frame{height:auto}.topbar{background:#fff;color:#000}}
</style>
</head>
<body>
<header class="topbar">
<div class="wrap">
<span class="brand">broadcast preview</span>
<h1>{{ notice.id | clip }}</h1>
<span class="sev sev-{{ notice.severity }}">{{ notice.severity }}</span>
<div class="meta">
<span>Languages <b>{% for lang in languages %}{{ lang.code }}{% if lang.direction == 'rtl' %} (rtl){% endif %}{% if not loop.last %}, {% endif %}{% endfor %}</b></span>
{% if approval %}<span id="approval-policy">Approval <b>{{ 'required' if approval.required else 'optional' }}</b>{% if approval.state %} · fingerprint <b class="mono">{{ approval.state.fingerprint.digest }}</b>{% endif %}</span>{% endif %}
<span>Versions {% for channel, version in versions %}<b class="mono">{{ channel }} {{ version }}</b>{% if not loop.last %} · {% endif %}{% endfor %}</span>
</div>
<span class="dry">Preview only: nothing has been sent</span>
<a id="brief-link" href="brief.html" style="color:#93c5fd;font-size:13px;font-weight:600">Staff brief (for support agents)</a>
</div>
</header>

<main class="wrap">
<div class="verdict v-{{ verdict.level }}" id="verdict" role="status">
<div class="icon" aria-hidden="true">{{ '!' if verdict.level != 'ready' else '✓' }}</div>
<div><h2>{{ verdict.title }}</h2><p>{{ verdict.detail }}</p></div>
</div>

<div class="tiles" id="counts">
{% for tile in tiles %}
<div class="tile{% if tile.level %} t-{{ tile.level }}{% endif %}"><div class="label">{{ tile.label }}</div><div class="value">{{ tile.value }}</div><div class="detail">{{ tile.detail }}</div></div>
{% endfor %}
</div>

{% if cautions %}
<section class="block red" id="warnings">
<h2>Warnings <span class="count">{{ cautions | length }}</span></h2>
<ul class="cautions">
{% for caution in cautions %}
<li><span class="where">{{ caution.where | clip_message }}</span>{{ caution.message | clip_message }}</li>
{% endfor %}
</ul>
</section>
{% endif %}

{% if problems_total %}
<section class="block{% if rejected %} red{% endif %}" id="contact-problems">
<h2>Contact problems <span class="count">{{ problems_total }}</span>
<span class="pill {{ 'red' if rejected else 'grey' }}">{{ rejected }} rejected</span> <span class="pill {{ 'amber' if contact_warnings else 'grey' }}">{{ contact_warnings }} warning{{ 's' if contact_warnings != 1 }}</span></h2>
<table>
<thead><tr><th>What</th><th>File</th><th class="num">Row</th><th>Field</th><th>Problem</th></tr></thead>
<tbody>
{% for p in problems %}
<tr class="{{ 'p-rejected' if p.rejected else 'p-warning' }}">
<td>{% if p.rejected %}<span class="pill red">rejected</span>{% else %}<span class="pill amber">warning</span>{% endif %}</td>
<td class="mono">{{ p.file | clip }}</td><td class="num">{{ p.row or '' }}</td><td class="mono">{{ (p.field or '') | clip }}</td>
<td>{{ p.message | clip_message }}{% if p.hint %}<div class="hint">{{ p.hint | clip_message }}</div>{% endif %}</td>
</tr>
{% endfor %}
</tbody>
</table>
{% if problems_total > problems | length %}<p class="note">Showing {{ problems | length }} of {{ problems_total }}; the command's --json output lists them all.</p>{% endif %}
</section>
{% endif %}

<div class="two">
<section class="block" id="plan">
<h2>Plan: recipients per channel and language</h2>
<table>
<thead><tr><th>Channel</th>{% for lang in languages %}<th class="num">{{ lang.code }}</th>{% endfor %}<th class="num">Total</th><th class="num">Skipped</th><th class="num">Unknown</th></tr></thead>
<tbody>
{% for row in plan_rows %}
<tr data-channel="{{ row.channel }}">
<td><b>{{ row.title }}</b></td>
{% for cell in row.cells %}{% if cell is none %}<td class="na" title="not sent in this language">—</td>{% else %}<td class="num{% if cell == 0 %} zero{% endif %}">{{ cell }}</td>{% endif %}{% endfor %}
<td class="num"><b>{{ row.total }}</b></td>
<td class="num{% if not row.skipped %} zero{% endif %}">{{ row.skipped }}{% if row.skipped_reasons %}<div class="reasons">{% for reason, n in row.skipped_reasons %}{{ reason | clip_message }}: {{ n }}{% if not loop.last %}<br>{% endif %}{% endfor %}</div>{% endif %}</td>
<td class="num{% if not row.unknown %} zero{% endif %}">{{ row.unknown }}</td>
</tr>
{% endfor %}
</tbody>
</table>
<p class="note">X and web count one thread or banner per language. Skipped: left out by the ledger or a suppression list. Unknown: an earlier send's outcome is not known; sent again only with --retry-unknown.</p>
</section>

<section class="block" id="fallbacks">
<h2>Language fallbacks <span class="count">{{ fallbacks | sum(attribute=3) }}</span></h2>
{% if fallbacks %}
<table>
<thead><tr><th>Contact's language</th><th>Gets</th><th>How</th><th class="num">Contacts</th></tr></thead>
<tbody>
{% for tag, lang, how, n in fallbacks %}
<tr><td class="mono">{{ (tag | clip) if tag else '(none given)' }}</td><td class="mono">{{ lang }}</td><td>{{ 'base language' if how == 'base' else 'default language' }}</td><td class="num">{{ n }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="note">Every contact gets a language they asked for.</p>
{% endif %}
</section>
</div>

{% if held_total %}
<section class="block" id="held">
<h2>Held for quiet hours <span class="count">{{ held_total }}</span></h2>
<p class="note">This {{ notice.severity }} notice sends no SMS from {{ quiet.window.start.strftime('%H:%M') }} to {{ quiet.window.end.strftime('%H:%M') }} in each recipient's own time. These messages are not sent now; the first run after the time shown sends them.</p>
<table>
<thead><tr><th>Channel</th><th>Recipient</th><th>Goes out after (their time)</th><th>Time zone</th></tr></thead>
<tbody>
{% for title, recipient, until, zone in held %}
<tr><td>{{ title }}</td><td class="mono">{{ recipient | clip }}</td><td class="mono">{{ until }}</td><td class="mono">{{ zone }}</td></tr>
{% endfor %}
</tbody>
</table>
{% if held_total > held | length %}<p class="note">Showing {{ held | length }} of {{ held_total }}; plan.csv lists every one in its held_until column.</p>{% endif %}
</section>
{% endif %}

<nav class="jump" aria-label="Jump to a language">
<b>Jump to:</b>
{% for lang in languages %}<a href="#lang-{{ lang.code }}"><span class="mono">{{ lang.code }}</span> {% for panel in lang.panels %}<span class="pill grey">{{ panel.title }} {{ panel.recipients }}</span>{% endfor %}</a>{% endfor %}
</nav>

{% for lang in languages %}
<section class="lang" id="lang-{{ lang.code }}">
<div class="lang-head">
<span class="code">{{ lang.code }}</span>
<h2 lang="{{ lang.code }}" dir="{{ lang.direction }}">{{ lang.headline }}</h2>
{% if lang.direction == 'rtl' %}<span class="dirnote">right-to-left: shown as it reads</span>{% endif %}
</div>
<div class="panels">
{% for panel in lang.panels %}
<article class="panel panel-{{ panel.channel }}{% if not panel.personal %} wide{% endif %}{% if panel.over_limit %} bad{% endif %}{% if not panel.recipients %} empty{% endif %}"
 id="{{ panel.id }}" data-channel="{{ panel.channel }}" data-language="{{ panel.language }}" lang="{{ panel.language }}" dir="{{ panel.direction }}"
{% if panel.kind == 'segments' %} data-segments="{{ panel.segments }}" data-form="{{ panel.form }}" data-recipients="{{ panel.recipients }}" data-sms-cost="{{ '%.6f' | format(panel.cost) }}"{% endif %}>
<div class="panel-head" dir="ltr" lang="en">
<h3>{{ panel.title }} · <span class="mono">{{ panel.language }}</span></h3>
{% if panel.over_limit %}<span class="pill red">{{ panel.segments }} segments, over {{ max_sms_segments }}</span>{% endif %}
{% if panel.approval %}<span class="pill approval {{ 'green' if panel.approval == 'approved' else ('red' if approval.required else 'grey') }}" data-approval="{{ panel.approval }}" title="{{ panel.approval_text }}">{{ panel.approval_text | clip }}</span>{% endif %}
<span class="who">{% if panel.kind == 'posts' %}<b>{{ panel.posts | length }}</b> post{{ 's' if panel.posts | length != 1 }}{% if panel.recipients %}, posted once{% else %}, not posted{% endif %}{% elif not panel.personal %}{% if panel.recipients %}<b>published</b>{% else %}not published{% endif %}{% elif panel.recipients %}<b>{{ panel.recipients }}</b> recipient{{ 's' if panel.recipients != 1 }}{% else %}<span class="pill grey">no recipients in this language</span>{% endif %}</span>
</div>
<div class="panel-body">
{% if panel.kind == 'mail' %}
<p class="subject"><small dir="ltr" lang="en">Subject</small>{{ panel.subject | tokens }}</p>
<div class="frame"><iframe title="{{ panel.title }} body, {{ panel.language }}" sandbox srcdoc="{{ panel.document }}" loading="eager"></iframe></div>
<details class="plain"><summary dir="ltr" lang="en">Plain-text part</summary><pre class="text">{{ panel.text | tokens }}</pre></details>
{% elif panel.kind == 'segments' %}
<div class="stats" dir="ltr" lang="en">
<div class="stat"><div class="k">Characters</div><div class="v">{{ panel.characters }}</div></div>
<div class="stat"><div class="k">Encoding</div><div class="v">{{ panel.encoding }}</div></div>
<div class="stat"><div class="k">Form</div><div class="v sms-form">{{ panel.form }}</div></div>
<div class="stat{% if panel.over_limit %} bad{% endif %}"><div class="k">Segments</div><div class="v">{{ panel.segments }}{% if panel.over_limit %} &gt; {{ max_sms_segments }}{% endif %}</div></div>
<div class="stat{% if panel.over_limit and panel.recipients %} bad{% endif %}"><div class="k">Est. cost</div><div class="v sms-cost">{% if price %}{{ panel.cost | money }}{% else %}—{% endif %}</div></div>
</div>
<div class="phone"><div class="from" dir="ltr" lang="en">Text message</div><div class="bubble">{{ panel.text | tokens }}</div></div>
<p class="note" dir="ltr" lang="en">{% if panel.form > 1 %}Form {{ panel.form }}: shortened to fit {{ max_sms_segments }} segment{{ 's' if max_sms_segments != 1 }} (form 1 is the full text; see the forms in sms.txt.j2). {% endif %}{{ panel.encoding }}: {{ panel.per_segment }} characters per segment. Cost = {{ panel.segments }} segments × {{ panel.recipients }} recipients × {% if price %}{{ price }}{% else %}price not set (--sms-segment-price){% endif %}.</p>
{% elif panel.kind == 'posts' %}
<div class="thread">
{% for post in panel.posts %}
<div class="post{% if post.over %} over{% endif %}">
<div class="who"><span class="avatar" aria-hidden="true">{{ lang.organization[:1] | upper }}</span><span>{{ lang.organization }}</span></div>
<div class="body">{{ post.text | tokens }}</div>
<div class="meter" aria-hidden="true"><span style="width:{{ [post.weighted * 100 // (panel.post_limit or 1), 100] | min }}%"></span></div>
<div class="foot" dir="ltr" lang="en"><span>{{ loop.index }}/{{ loop.length }}</span><span class="weight">{{ post.weighted }}{% if panel.post_limit %}/{{ panel.post_limit }}{% endif %}</span></div>
</div>
{% endfor %}
</div>
{% elif panel.kind == 'document' %}
<div class="frame banner"><iframe title="{{ panel.title }}, {{ panel.language }}" sandbox srcdoc="{{ panel.document }}" loading="eager"></iframe></div>
{% else %}
<pre class="text">{{ panel.text | tokens }}</pre>
{% endif %}
{% if panel.noname %}<p class="note" dir="ltr" lang="en">{{ panel.noname }} of {{ panel.recipients }} recipient{{ 's' if panel.recipients != 1 }} have no name on file and get the version without <mark class="token">name</mark>.</p>{% endif %}
{% if panel.remote %}<p class="note warn" dir="ltr" lang="en">This {{ panel.title | lower }} refers to {{ panel.remote }} remote image(s) or style(s); they are blocked here, so the preview loads nothing.</p>{% endif %}
</div>
</article>
{% endfor %}
</div>
</section>
{% endfor %}

<footer>
Written {{ written }} by <span class="mono">broadcast</span>. <mark class="token">name</mark> marks a field filled in for each recipient.
This page loads nothing from the network; links inside the messages are shown as recipients see them.
</footer>
</main>
</body>
</html>
"""
