"""The staff brief: what the people who answer the support channels need, assembled from the same notice."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from broadcast.channels import REGISTRY, defaults
from broadcast.errors import InputError, TemplateError
from broadcast.notice import (
    ANY_LANGUAGE,
    LocalChannel,
    LocalNotice,
    Notice,
    load_notice,
    localize,
    missing_translations,
    pick,
)
from broadcast.render import NO_NAME, Labels, RenderSet, Templates, render_notice

HTML_FILE = "brief.html"
MARKDOWN_FILE = "brief.md"
TEMPLATE_FILES = {HTML_FILE: "brief/brief.html.j2", MARKDOWN_FILE: "brief/brief.md.j2"}
#: notice fields that say nothing an agent repeats to a customer, left out of "what changed"
_NOT_TOLD = ("id", "languages", "social", "fallback", "override_suppressions")


@dataclass(frozen=True)
class Gap:
    """Something the support agents will miss in a notice: a check warning, an error with --strict."""

    field: str
    message: str


def support_gaps(notice: Notice) -> list[Gap]:
    """The article's heart of crisis support that this notice leaves out: triage questions, reassurance, outside help."""
    gaps = []
    if not notice.questions:
        gaps.append(Gap("questions", "no triage questions: agents have nothing to ask to find the one problem that, "
                                     "solved, fixes most of the others; add `questions:`"))
    if not notice.reassurance:
        gaps.append(Gap("reassurance", "no reassurance: agents cannot say this has been handled before; "
                                       "add `reassurance:`"))
    if not notice.resources:
        gaps.append(Gap("resources", "no outside help: agents have nowhere to point people when there is no quick "
                                     "fix; add `resources:`"))
    return gaps


@dataclass(frozen=True)
class Change:
    """One notice text that reads differently in one language than in the earlier version."""

    field: str
    language: str
    before: str | None
    after: str | None


def changes(previous: Notice, current: Notice) -> list[Change]:
    """Every field × language of ``current`` whose text differs from ``previous`` (added and removed ones too).

    A text written once for every language counts as changed in each language it reaches.
    """
    before, after = _told(previous), _told(current)
    found = []
    for path in [*after, *(p for p in before if p not in after)]:
        for lang in current.languages:
            old = pick(before[path], lang, previous.default_language) if path in before else None
            new = pick(after[path], lang, current.default_language) if path in after else None
            if old != new:
                found.append(Change(path, lang, old, new))
    return found


def _told(notice: Notice) -> dict[str, dict[str, str]]:
    """Field path → text per language, for every text the notice tells customers (contacts and links included)."""
    out: dict[str, dict[str, str]] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                if not (path == "" and name in _NOT_TOLD):
                    walk(getattr(value, name), f"{path}.{name}" if path else name)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif isinstance(value, dict):
            out[path] = value
        elif isinstance(value, str):
            out[path] = {ANY_LANGUAGE: value}

    walk(notice, "")
    return out


# -- what the templates see ---------------------------------------------------------------------


@dataclass(frozen=True)
class Told:
    """One channel's message in one language, as customers get it."""

    channel: str
    text: str
    #: the channel's name for a person, when the label catalogs have no brief_channel_<name> for it
    title: str = ""

    @property
    def fence(self) -> str:
        """A Markdown code fence longer than any run of backticks in the text, so the text cannot close it."""
        return "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", self.text)), default=0))


@dataclass(frozen=True)
class Team:
    """One support channel and the needs its agents handle (routing), in one language."""

    channel: LocalChannel
    needs: list[str]


@dataclass
class Section:
    """The brief in one language."""

    lang: str
    dir: str
    t: Labels
    notice: LocalNotice
    told: list[Told]
    teams: list[Team]
    changes: list[Change]


@dataclass
class Brief:
    """The staff brief of one notice: what is written, and what a person should know about it."""

    notice: Notice
    languages: list[str]
    html: str
    markdown: str
    changes: list[Change] | None
    warnings: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def assemble(
    notice: Notice,
    templates: Templates,
    *,
    languages: list[str] | None = None,
    previous: Notice | None = None,
    since: str = "",
    renders: RenderSet | None = None,
) -> Brief:
    """Render the brief in ``languages`` (default: every notice language) through the sandboxed templates.

    ``renders`` are the customers' messages as a send renders them (an update says it is one); without them
    every channel is rendered here. ``previous`` is the earlier version, for "what changed".
    """
    languages = languages or list(notice.languages)
    renders = renders or render_notice(notice, templates, channels=defaults())
    found = changes(previous, notice) if previous is not None else None
    sections = []
    for lang in languages:
        catalog = templates.catalog(lang, fallback="en")
        local = localize(notice, lang)
        teams = [
            Team(channel, [route.need for route in local.routing if route.channel.id == channel.id])
            for channel in local.channels
        ]
        sections.append(
            Section(
                lang, catalog.direction, Labels(catalog.labels), local, _told_in(renders, lang), teams,
                [c for c in found or [] if c.language == lang],
            )
        )
    context = {"sections": sections, "notice": notice, "since": since, "has_changes": found is not None}
    # Markdown has no autoescape: notice text goes in with its `<` escaped, so a helpdesk or wiki that renders
    # HTML inside Markdown shows a notice's <script> as text; the messages sit in code blocks, inert already
    inert = [replace(s, notice=_inert(s.notice), teams=_inert(s.teams), changes=_inert(s.changes)) for s in sections]
    brief = Brief(
        notice, languages,
        html=templates.render_file(TEMPLATE_FILES[HTML_FILE], context),
        markdown=templates.render_file(TEMPLATE_FILES[MARKDOWN_FILE], {**context, "sections": inert}).strip() + "\n",
        changes=found,
    )
    brief.warnings = [f"notice field {path} × {lang}: missing, shown in {notice.default_language}"
                      for path, lang in missing_translations(notice) if lang in languages]
    for lang in languages:
        catalog = templates.catalog(lang, fallback="en")
        shown_in = catalog.source if catalog.source != lang else "en"
        brief.warnings.extend(f"labels/{lang}.yaml: label '{key}' missing, shown in {shown_in}"
                              for key in catalog.borrowed if key.startswith("brief_"))
    return brief


def _inert(value: Any) -> Any:
    """``value`` with every string's ``<`` backslash-escaped, which CommonMark shows as a plain ``<``."""
    if isinstance(value, str):
        return value.replace("<", "\\<")
    if isinstance(value, list):
        return [_inert(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _inert(getattr(value, f.name)) for f in fields(value)})
    return value


def _told_in(renders: RenderSet, lang: str) -> list[Told]:
    told = []
    for channel in REGISTRY:
        # the version for a contact without a name reads as the message does, without a %%name%% token in it
        rendering = renders.renderings.get((channel, lang, NO_NAME)) or renders.renderings.get((channel, lang, ""))
        if rendering is None:  # social ships in fewer languages than the notice
            continue
        told.append(Told(channel, REGISTRY[channel].readable(rendering), REGISTRY[channel].title))
    return told


def write(brief: Brief, directory: str | Path) -> list[Path]:
    """Write brief.html and brief.md into ``directory``, each whole or not at all (temp file, rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in ((HTML_FILE, brief.html), (MARKDOWN_FILE, brief.markdown)):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the brief is for every agent on the team
            os.replace(tmp, directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(directory / name)
    brief.paths = paths
    return paths


def for_renders(renders: RenderSet, directory: str | Path, *, templates_dir: str | Path | None = None) -> list[Path]:
    """The staff brief (brief.html, brief.md) of a planned notice, from the messages this run sends."""
    return write(assemble(renders.notice, templates_for(templates_dir), renders=renders), directory)


def templates_for(directory: str | Path | None) -> Templates:
    """The templates to write the brief with: ``directory``, unless it predates the brief and has no brief/ in it.

    A --templates folder copied before the brief existed still previews and sends; its brief comes from the
    shipped templates rather than stopping a send over a page for staff.
    """
    templates = Templates(directory)
    if directory is not None and not all((templates.directory / name).is_file() for name in TEMPLATE_FILES.values()):
        return Templates()
    return templates


def strict_refusal(notice_path: str | Path, brief: Brief, gaps: list[Gap]) -> TemplateError | None:
    """With --strict, what the brief borrowed or lacks is an error; this is it, or None."""
    problems = [*brief.warnings, *(f"notice field {g.field}: {g.message}" for g in gaps)]
    if not problems:
        return None
    return TemplateError(
        f"--strict: the staff brief has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems),
        file=notice_path,
        hint="translate each listed field or label and add what is missing, or run without --strict",
    )


def make(
    notice_path: str | Path,
    *,
    out_dir: str | Path = "brief",
    languages: list[str] | None = None,
    since: str | Path | None = None,
    templates_dir: str | Path | None = None,
    strict: bool = False,
) -> Brief:
    """`broadcast brief`: load the notice (and the earlier version, with ``since``), assemble and write the brief."""
    notice = load_notice(notice_path)
    chosen = _languages(notice, languages, notice_path)
    previous = None
    if since is not None:
        previous = load_notice(since)
        if previous.id != notice.id:
            raise InputError(
                f"--since names notice {previous.id!r}, but this notice is {notice.id!r}; nothing was written",
                file=since,
                field="id",
                hint="pass the earlier version of this same notice (e.g. `git show HEAD~1:notice.yaml > old.yaml`)",
            )
    brief = assemble(notice, templates_for(templates_dir), languages=chosen, previous=previous, since=str(since or ""))
    gaps = support_gaps(notice)
    if strict:
        refusal = strict_refusal(notice_path, brief, gaps)
        if refusal is not None:
            raise refusal
    brief.warnings.extend(f"notice field {g.field}: {g.message}" for g in gaps)
    write(brief, out_dir)
    return brief


def _languages(notice: Notice, asked: list[str] | None, notice_path: str | Path) -> list[str]:
    if not asked:
        return list(notice.languages)
    unknown = [lang for lang in asked if lang not in notice.languages]
    if unknown:
        raise InputError(
            f"--language {', '.join(unknown)}: the notice has no text in that language; nothing was written",
            file=notice_path,
            field="languages",
            hint=f"choose from {', '.join(notice.languages)}, or add the language to the notice with its translations",
        )
    return list(dict.fromkeys(asked))
