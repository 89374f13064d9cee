"""Render the notice through the Jinja2 templates: once per channel × language, never once per recipient."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jinja2 import pass_environment

from broadcast.channels import REGISTRY
from broadcast.channels.base import Channel, RenderOptions
from broadcast.errors import TemplateError
from broadcast.message import CONTACT_FIELDS, Rendering, placeholder
from broadcast.notice import Notice, is_blank, localize

#: variant of a personal rendering for contacts whose name is empty
NO_NAME = "noname"


#: the token a contact field renders as when checking that a template prints it unchanged (see Templates.render_file)
def _probe(name: str) -> str:
    # differs from the field's name at both ends, so a slice of the token differs too
    return f"~{name}~"


class Placeholder(str):
    """A contact field at render time: prints as its token; in autoescaped HTML, as the HTML token."""

    def __new__(cls, name: str, *, probe: bool = False) -> Placeholder:
        obj = super().__new__(cls, placeholder(_probe(name) if probe else name))
        obj.field = _probe(name) if probe else name  # type: ignore[attr-defined]
        return obj

    def __html__(self) -> str:
        return placeholder(self.field, html_part=True)  # type: ignore[attr-defined]


def variant_for(fields: Mapping[str, str]) -> str:
    """Which rendering variant fits a recipient: templates may say something different when the name is empty."""
    return "" if fields.get("name") else NO_NAME


# -- templates ----------------------------------------------------------------------------------


def default_templates_dir() -> Path:
    """The templates shipped with broadcast: beside the package in a checkout, or under the install prefix."""
    env = os.environ.get("BROADCAST_TEMPLATES")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parent.parent / "templates"
    if beside.is_dir():
        return beside
    return Path(sys.prefix) / "share" / "broadcast" / "templates"


class Labels:
    """Label lookup for templates: only labels, so ``t.update`` can never hit a dict method by accident."""

    __slots__ = ("_labels",)

    def __init__(self, labels: Mapping[str, str]) -> None:
        self._labels = dict(labels)

    def __getitem__(self, key: str) -> str:
        return self._labels[key]

    def __contains__(self, key: object) -> bool:
        return key in self._labels


@dataclass
class Catalog:
    """Fixed template words for one language, plus what had to be borrowed from the fallback language."""

    language: str
    labels: dict[str, str]
    direction: str
    source: str
    borrowed: list[str] = field(default_factory=list)


class Templates:
    """A template folder: the sandboxed Jinja2 environment and the per-language label catalogs."""

    def __init__(self, directory: str | Path | None = None) -> None:
        from jinja2 import FileSystemLoader, StrictUndefined

        self.directory = Path(directory) if directory else default_templates_dir()
        if not self.directory.is_dir():
            raise TemplateError(
                "templates folder not found",
                file=self.directory,
                hint="pass --templates DIR with email/, sms.txt.j2, social.txt.j2, web/ and labels/ inside",
            )
        # Sandboxed and immutable: templates may come from users (--templates) and must not reach Python internals
        self.env = _sandbox()(
            loader=FileSystemLoader(str(self.directory)),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["fmt"] = _fmt
        self.env.filters["bare_url"] = bare_url
        self._catalogs: dict[str, Catalog] = {}

    def catalog_languages(self) -> list[str]:
        return sorted(p.stem for p in (self.directory / "labels").glob("*.yaml"))

    def catalog(self, lang: str, fallback: str = "en") -> Catalog:
        """Labels for ``lang`` (exact file, then base language); missing keys are borrowed from ``fallback``."""
        if lang in self._catalogs:
            return self._catalogs[lang]
        own, source = self._read_catalog(lang), lang
        if own is None and "-" in lang:
            own, source = self._read_catalog(lang.split("-", 1)[0]), lang.split("-", 1)[0]
        base = self._read_catalog(fallback) if fallback != source else None
        if own is None and base is None:
            raise TemplateError(
                f"no label catalog for language {lang!r}",
                file=self.directory / "labels" / f"{lang}.yaml",
                hint=f"add labels/{lang}.yaml (copy labels/en.yaml and translate it)",
            )
        labels = dict(base or {})
        borrowed = sorted(k for k in labels if k not in (own or {}) and not k.startswith("_"))
        labels.update(own or {})
        meta = labels.pop("_meta", {}) or {}
        direction = meta.get("dir", "ltr") if own is not None else "ltr"
        catalog = Catalog(lang, labels, direction, source if own is not None else fallback, borrowed)
        self._catalogs[lang] = catalog
        return catalog

    def _read_catalog(self, lang: str) -> dict[str, Any] | None:
        import yaml

        path = self.directory / "labels" / f"{lang}.yaml"
        if not path.is_file():
            return None
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            raise TemplateError(
                f"label catalog is not valid YAML: {getattr(exc, 'problem', exc)}",
                file=path,
                row=mark.line + 1 if mark else None,
                hint="each line is `key: text`; quote texts containing ': '",
            )
        if not isinstance(data, dict):
            raise TemplateError(
                "label catalog must be a mapping of key: text", file=path, hint="copy labels/en.yaml and translate its texts"
            )
        # a label that shows nothing (" ", a zero-width space) is a missing translation: left out here, it is
        # borrowed from the fallback language and reported like any other missing label (an error with --strict).
        # An empty "" is different: the catalog says on purpose that nothing is printed unless the notice says it
        return {
            key: value for key, value in data.items() if not (isinstance(value, str) and value != "" and is_blank(value))
        }

    def render_file(self, name: str, context: Mapping[str, Any]) -> str:
        """Render one template file, turning every Jinja2 failure into a TemplateError with file and line.

        Contact fields must reach the output as their tokens, unchanged, so each recipient's value can be
        filled in (and HTML-escaped in HTML): a template that changes one (``contact.name | upper``) is an error.
        """
        text = self._render(name, context)
        contact = context.get("contact") or {}
        probes = {f: Placeholder(f, probe=True) for f, v in contact.items() if isinstance(v, Placeholder)}
        if probes:
            # the same template with differently spelled tokens must give the same text, token for token
            probed = self._render(name, {**context, "contact": {**contact, **probes}})
            for field_name in probes:
                for html_part in (False, True):
                    probed = probed.replace(
                        placeholder(_probe(field_name), html_part=html_part), placeholder(field_name, html_part=html_part)
                    )
            if probed != text:
                raise TemplateError(
                    "the template changes or tests contact.name (a filter, a slice or a comparison), so it cannot be "
                    "filled in and escaped for each recipient; nothing was sent",
                    file=self.directory / name,
                    row=_line_using_contact(self.directory / name),
                    hint="print it exactly as {{ contact.name }}; to test for a missing name use "
                    "{% if contact.name %}, and correct names in the contacts file",
                )
        if name.endswith(".html.j2"):
            # SendGrid fills a token the same in the text and HTML parts, so HTML carries only the HTML token,
            # whose value is escaped: a filter that turned the field into a plain string must not undo that
            for field_name in CONTACT_FIELDS:
                text = text.replace(placeholder(field_name), placeholder(field_name, html_part=True))
        return text

    def _render(self, name: str, context: Mapping[str, Any]) -> str:
        from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
        from jinja2.exceptions import SecurityError

        try:
            template = self.env.get_template(name)
            self.env.deadline = time.monotonic() + MAX_RENDER_SECONDS
            return _capped(template, context)
        except (
            TemplateNotFound, TemplateSyntaxError, UndefinedError, SecurityError, _TooMuch, RecursionError, MemoryError,
            TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError, OverflowError,
        ) as exc:
            raise self._failure(exc, name) from exc

    def _failure(self, exc: BaseException, name: str) -> TemplateError:
        """What went wrong in template ``name``, where, and what to do, for a person who edits templates."""
        from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
        from jinja2.exceptions import SecurityError

        path = self.directory / name
        if isinstance(exc, TemplateNotFound):
            wanted = exc.name or name
            if wanted != name and _outside(wanted):
                return TemplateError(
                    f"the template includes {wanted!r}, which is outside the templates folder; templates may only "
                    "include files inside it (nothing was sent)",
                    file=path,
                    row=_template_line(exc, path),
                    hint=f"copy what you need into {self.directory} and include it by its path there",
                )
            if wanted != name:
                return TemplateError(
                    f"the template includes {wanted!r}, which is not in the templates folder",
                    file=path,
                    row=_template_line(exc, path),
                    hint=f"add {wanted} to {self.directory}, or remove the include",
                )
            return TemplateError(
                "template file is missing", file=path, hint=f"every templates folder needs {name}; copy it from the defaults"
            )
        if isinstance(exc, TemplateSyntaxError):
            return TemplateError(
                f"template syntax error: {exc.message}", file=path, row=exc.lineno,
                hint="check the {{ }} and {% %} tags on that line",
            )
        if isinstance(exc, UndefinedError):
            return TemplateError(
                f"unknown template variable: {exc.message}",
                file=path,
                row=_template_line(exc, path),
                hint="templates may use notice.*, contact.name, t.<label>, lang and dir; "
                "a missing t.<label> must be added to every labels/*.yaml",
            )
        if isinstance(exc, _TooMuch):
            return TemplateError(
                f"the template does too much work: {exc.args[0]}; a notice never needs that (nothing was sent)",
                file=path,
                row=exc.args[1] if len(exc.args) > 1 else _template_line(exc, path),
                hint="look for loops inside loops, a large repeat (*) or power (**), or a growing string on that line; "
                "if that line prints a notice text, the notice text is far too long for any message: shorten it",
            )
        if isinstance(exc, RecursionError):
            return TemplateError(
                "the template calls itself without end (a macro calling itself, or a file including itself); "
                "nothing was sent",
                file=path,
                row=_template_line(exc, path, first=True),
                hint="remove the recursive macro call or {% include %} of the same file",
            )
        if isinstance(exc, MemoryError):
            return TemplateError(
                "the template builds a value too large for memory; nothing was sent",
                file=path,
                hint="look for a large width or count given to a filter (center, indent, wordwrap) or a large repeat",
            )
        if isinstance(exc, SecurityError):
            return TemplateError(
                f"template tried something the sandbox forbids: {exc}",
                file=path,
                row=_template_line(exc, path),
                hint="templates can only print notice data; remove attribute access to Python internals",
            )
        return TemplateError(
            f"template failed: {exc}", file=path, row=_template_line(exc, path), hint="check that line of the template"
        )


def _capped(template: Any, context: Mapping[str, Any]) -> str:
    """The template's output, stopped at MAX_RENDERED_CHARS with the line that wrote past it."""
    out: list[str] = []
    size = 0
    chunks = template.generate(context)
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            # the template's own generator is paused at the line that wrote the last chunk
            inner = getattr(chunks, "gi_yieldfrom", None)
            frame = getattr(inner, "gi_frame", None)
            row = template.get_corresponding_lineno(frame.f_lineno) if frame is not None else None
            raise _TooMuch(f"it writes more than {MAX_RENDERED_CHARS:,} characters", row)
        out.append(chunk)
    return "".join(out)


#: most characters one template file may write for one rendering: a notice is far shorter (an email body is a
#: few KB); a template that writes more is looping out of control
MAX_RENDERED_CHARS = 1_000_000
#: most seconds one template file may take to render once
MAX_RENDER_SECONDS = 10.0


def _sandbox() -> Any:
    """Jinja2's immutable sandbox with limits on work, so a template cannot run forever or fill memory."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class LimitedSandbox(ImmutableSandboxedEnvironment):
        # Jinja2 then routes these operators through call_binop instead of running them (or folding constants)
        intercepted_binops = frozenset({"*", "**", "+"})
        deadline = float("inf")

        def _in_time(self) -> None:
            if time.monotonic() > self.deadline:
                raise _TooMuch(f"it ran for more than {MAX_RENDER_SECONDS:g} seconds")

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            self._in_time()
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_RENDERED_CHARS:
                        raise _TooMuch(f"it repeats a value {count:,} times, more than {MAX_RENDERED_CHARS:,} characters")
            if operator == "**" and isinstance(left, int) and isinstance(right, int):
                if abs(left) > 1 and right * max(abs(left), 2).bit_length() > 10_000:
                    raise _TooMuch(f"it raises {left} to the power {right:,}")
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            __self._in_time()
            return super().call(__context, __obj, *args, **kwargs)

        def getattr(self, obj: Any, attribute: str) -> Any:
            self._in_time()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            self._in_time()
            return super().getitem(obj, argument)

    return LimitedSandbox


class _TooMuch(Exception):
    """A template went over MAX_RENDERED_CHARS or MAX_RENDER_SECONDS."""


def _outside(name: str) -> bool:
    """True for a template path that leaves the templates folder: ``..`` or an absolute path."""
    parts = name.replace("\\", "/").split("/")
    return ".." in parts or name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name))


def _line_using_contact(path: Path) -> int | None:
    """The first line of a template that does more with contact.name than print it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for number, line in enumerate(lines, 1):
        if re.search(r"contact\.name\s*(\||\[|==|!=|<|>|\bin\b|\.)|contact\[", line):
            return number
    return None


@pass_environment
def _fmt(env: Any, label: str, **values: Any) -> str:
    """``{{ t.footer | fmt(org=...) }}``: fill ``{org}`` slots so word order can differ by language.

    Formatting runs through the sandbox's formatter: a plain str.format would let a user template
    walk ``{x.__init__.__globals__}`` to the environment and its secrets.
    """
    from jinja2.sandbox import SandboxedFormatter

    try:
        return SandboxedFormatter(env).vformat(str(label), (), values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"label {label!r} has a slot that fmt() was not given: {exc}") from None


def bare_url(contact: str) -> str:
    """A link as a phone shows it, for SMS where every character costs: ``https://a.example/x/`` → ``a.example/x``.

    Phones link a bare domain all the same; only https:// goes, since a browser given a bare name tries https first.
    """
    if not contact.startswith("https://"):
        return contact
    return contact.removeprefix("https://").rstrip("/")


def _template_line(exc: BaseException, path: Path, *, first: bool = False) -> int | None:
    """Jinja2 rewrites tracebacks so template frames carry the template's file and line.

    ``first``: the outermost such line, where a recursion started, rather than the innermost.
    """
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
            if first:
                return line
        tb = tb.tb_next
    return line


# -- rendering ----------------------------------------------------------------------------------


@dataclass
class RenderSet:
    """Every rendering of one notice: (channel, language, variant) → Rendering, with per-channel versions."""

    notice: Notice
    renderings: dict[tuple[str, str, str], Rendering]
    catalogs: dict[str, Catalog]
    versions: dict[str, str]
    #: channel → language → form → variant → Rendering, for channels whose template has several forms (SMS):
    #: every form, so check can see that each names every support channel
    forms: dict[str, dict[str, dict[int, dict[str, Rendering]]]] = field(default_factory=dict)
    #: (channel, language) → the version of that language's rendering: what a message carries, so an edit of one
    #: language sends again to that language's recipients only. ``versions`` (one per channel, over every
    #: language) is how broadcast versioned before; the ledger still matches rows recorded under it.
    language_versions: dict[tuple[str, str], str] = field(default_factory=dict)

    def get(self, channel: str, lang: str, variant: str = "") -> Rendering:
        return self.renderings[(channel, lang, variant)]

    def of(self, channel: str) -> list[Rendering]:
        return [r for (c, _, _), r in self.renderings.items() if c == channel]


def render_notice(
    notice: Notice,
    templates: Templates,
    *,
    channels: Iterable[str] | None = None,
    updated: Iterable[tuple[str, str]] = (),
    sms_transliterate: bool = False,
    sms_max_segments: int | None = None,
    release: int = 1,
) -> RenderSet:
    """Render ``channels`` (default: every registered one) in their notice languages; the ``updated``
    (channel, language) renderings say the notice is an update, as does every rendering of a notice whose phase
    is update.

    ``sms_transliterate`` folds the SMS text to GSM-7 where it can (č→c), which the person asked for to
    pay for fewer segments; it is part of the SMS version, since recipients see the difference.
    ``sms_max_segments``: a channel with several forms sends the first that fits (Channel.fits); None sends the
    first form.
    """

    options = RenderOptions(max_segments=sms_max_segments, transliterate=sms_transliterate, release=release)
    channels = list(REGISTRY if channels is None else channels)
    updated = set(updated)
    catalogs = {lang: templates.catalog(lang, fallback="en") for lang in notice.languages}
    # the notice's own words for a label win over the catalog's, in every channel of that language
    labels = {lang: {**catalogs[lang].labels, **notice.labels.get(lang, {})} for lang in notice.languages}
    renderings: dict[tuple[str, str, str], Rendering] = {}
    alternatives: dict[str, dict[str, dict[int, dict[str, Rendering]]]] = {}
    versions, language_versions = {}, {}
    for channel in channels:
        adapter = REGISTRY[channel]
        # a personal rendering has a variant for contacts without a name; a public one never names anyone
        variants = ("", NO_NAME) if adapter.personal else ("",)
        for lang in adapter.languages(notice):
            # written in another language where the channel cannot carry this one (voice: no Twilio voice for it)
            words = adapter.written_in(lang, notice)[0]
            local = localize(notice, words, is_update=(channel, lang) in updated or notice.phase == "update")
            context = {"lang": words, "dir": catalogs[words].direction, "t": Labels(labels[words]), "notice": local}
            # only what goes out as an update or all-clear is told apart by its release (an X thread's numbering)
            shaping = options if local.is_update or local.phase == "all_clear" else replace(options, release=1)
            forms = {
                form: {variant: _render_channel(templates, adapter, lang, variant, form, context, shaping) for variant in variants}
                for form in adapter.forms
            }
            chosen = next(
                (form for form, each in forms.items() if all(adapter.fits(r, shaping) for r in each.values())), max(forms)
            )
            for variant in variants:
                renderings[(channel, lang, variant)] = forms[chosen][variant]
            if len(forms) > 1:
                alternatives.setdefault(channel, {})[lang] = forms
            # every form: which form fits --max-sms-segments says nothing new to recipients
            language_versions[(channel, lang)] = content_version(r for f in forms.values() for r in f.values())
        # every form of every language: which form fits --max-sms-segments says nothing new to recipients, so
        # changing the limit sends nothing again; a change to any form's wording is a new version
        versions[channel] = content_version(
            (r for forms in alternatives[channel].values() for f in forms.values() for r in f.values())
            if channel in alternatives else (r for (c, _, _), r in renderings.items() if c == channel)
        )
    return RenderSet(notice, renderings, catalogs, versions, alternatives, language_versions)


def rendering_digest(rendering: Rendering) -> str:
    """A hash of exactly what one rendering's recipients receive (placeholders unfilled)."""
    # JSON keeps the parts apart: "ab" + "c" and "a" + "bc" must not hash alike
    parts = [rendering.channel, rendering.language, rendering.variant, rendering.subject, rendering.html, rendering.text]
    return hashlib.sha256(json.dumps([*parts, list(rendering.posts)], ensure_ascii=False).encode()).hexdigest()


def content_version(renderings: Iterable[Rendering]) -> str:
    """A channel's version: a hash of its renderings in every language and variant, and of nothing else.

    Anything that does not change what recipients read (a stray file in the templates folder, a label
    catalog for a language the notice does not use, a notice field no template prints) keeps the version,
    so it never sends the notice again. The flags that change the text (--sms-transliterate) are in it.
    """
    digests = sorted(rendering_digest(r) for r in renderings)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:12]


def _render_channel(
    templates: Templates, adapter: type[Channel], lang: str, variant: str, form: int, context: dict[str, Any],
    options: RenderOptions,
) -> Rendering:
    personal = adapter.personal and variant == ""
    contact = {f: Placeholder(f) for f in CONTACT_FIELDS} if personal else dict.fromkeys(CONTACT_FIELDS, "")
    context = {**context, "contact": contact, "form": form}
    parts = {part: templates.render_file(name, context) for part, name in adapter.templates.items()}
    blank = Rendering(adapter.name, lang, variant, form=form)
    return adapter.shape(blank, parts, options, context["notice"])


# -- checks -------------------------------------------------------------------------------------


def missing_contacts(rendering: Rendering, notice: Notice) -> list[str]:
    """Support channels whose contact a rendering leaves out: every channel must say how to reach all of them."""
    texts = []
    if rendering.html:
        texts.append(html.unescape(re.sub(r"<[^>]+>", " ", rendering.html)))
    if rendering.text:
        texts.append(rendering.text)
    if rendering.posts:
        texts.append("\n".join(rendering.posts))
    # squashed once, not once per support channel: a long notice made this the slowest part of check
    squashed = [_squash(text) for text in texts]
    missing = []
    for channel in notice.channels:
        # a link may be shown without https:// (bare_url), which still takes a phone to it
        needles = (_squash(channel.contact), _squash(bare_url(channel.contact)))
        if any(not any(needle in text for needle in needles) for text in squashed):
            missing.append(channel.id)
    return missing


@dataclass(frozen=True)
class LabelProblem:
    """A label the notice overrides that the templates cannot take: an unknown key, or a slot the label lacks."""

    language: str
    key: str
    message: str
    hint: str


def label_problems(notice: Notice, templates: Templates) -> list[LabelProblem]:
    """Check the notice's ``labels:`` against the catalogs: known keys only, and only the {slots} each label fills."""
    import string

    problems = []
    for lang, overrides in notice.labels.items():
        known = templates.catalog(lang, fallback="en").labels
        for key, text in overrides.items():
            if key not in known:
                problems.append(LabelProblem(
                    lang, key, f"unknown label {key!r}",
                    f"known labels: {', '.join(sorted(known))} (templates/labels/{lang}.yaml says what each is)",
                ))
                continue
            try:
                slots = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
            except ValueError as exc:
                problems.append(LabelProblem(lang, key, f"label {key!r} has a broken {{slot}}: {exc}",
                                             "write {{ and }} for a literal brace"))
                continue
            allowed = {name for _, name, _, _ in string.Formatter().parse(known[key]) if name is not None}
            if slots - allowed:
                hint = (
                    f"it can use {', '.join('{' + a + '}' for a in sorted(allowed))}; write {{{{ and }}}} for a literal brace"
                    if allowed else "this label is printed as written, with nothing filled in: write the words themselves"
                )
                problems.append(LabelProblem(
                    lang, key, f"label {key!r} uses {', '.join('{' + n + '}' for n in sorted(slots - allowed))}, "
                    "which this label is not given", hint,
                ))
    return problems


def _squash(text: str) -> str:
    # Whitespace differs between HTML and text forms; the contact must be there, however it is wrapped
    return re.sub(r"\s+", "", text)
