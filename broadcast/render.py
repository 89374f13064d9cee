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

from broadcast.errors import TemplateError
from broadcast.message import Rendering, personalize, placeholder
from broadcast.notice import LocalNotice, Notice, is_blank, localize

#: the channels that carry a rendering, and the template files each one uses
TEMPLATES: dict[str, dict[str, str]] = {
    "email": {"subject": "email/subject.txt.j2", "html": "email/body.html.j2", "text": "email/body.txt.j2"},
    "sms": {"text": "sms.txt.j2"},
    "social": {"text": "social.txt.j2"},
    "web": {"html": "web/banner.html.j2"},
}
#: channels addressed to a contact; the others (social, web) are one message per language
PERSONAL_CHANNELS = ("email", "sms")
#: per-recipient fields templates may use; they render as placeholders and are filled per message
CONTACT_FIELDS = ("name",)
#: variant of a personal rendering for contacts whose name is empty
NO_NAME = "noname"
#: the SMS template's forms, longest first (documented in templates/sms.txt.j2); the first that fits is sent
SMS_FORMS = range(1, 8)
#: stands in for a recipient's name while the SMS form is chosen: a long name must not push the sent SMS over the
#: limit. Thirty letters covers all but a few names; billing counts each real name (plan.SmsBilling).
LONG_NAME = "x" * 30
X_MAX_WEIGHT = 280


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

        path = self.directory / name
        try:
            template = self.env.get_template(name)
            self.env.deadline = time.monotonic() + MAX_RENDER_SECONDS
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
        except TemplateNotFound as exc:
            wanted = exc.name or name
            if wanted != name and _outside(wanted):
                raise TemplateError(
                    f"the template includes {wanted!r}, which is outside the templates folder; templates may only "
                    "include files inside it (nothing was sent)",
                    file=path,
                    row=_template_line(exc, path),
                    hint=f"copy what you need into {self.directory} and include it by its path there",
                )
            if wanted != name:
                raise TemplateError(
                    f"the template includes {wanted!r}, which is not in the templates folder",
                    file=path,
                    row=_template_line(exc, path),
                    hint=f"add {wanted} to {self.directory}, or remove the include",
                )
            raise TemplateError(
                "template file is missing", file=path, hint=f"every templates folder needs {name}; copy it from the defaults"
            )
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template syntax error: {exc.message}",
                file=path,
                row=exc.lineno,
                hint="check the {{ }} and {% %} tags on that line",
            )
        except UndefinedError as exc:
            raise TemplateError(
                f"unknown template variable: {exc.message}",
                file=path,
                row=_template_line(exc, path),
                hint="templates may use notice.*, contact.name, t.<label>, lang and dir; "
                "a missing t.<label> must be added to every labels/*.yaml",
            )
        except _TooMuch as exc:
            raise TemplateError(
                f"the template does too much work: {exc.args[0]}; a notice never needs that (nothing was sent)",
                file=path,
                row=exc.args[1] if len(exc.args) > 1 else _template_line(exc, path),
                hint="look for loops inside loops, a large repeat (*) or power (**), or a growing string on that line; "
                "if that line prints a notice text, the notice text is far too long for any message: shorten it",
            )
        except RecursionError as exc:
            raise TemplateError(
                "the template calls itself without end (a macro calling itself, or a file including itself); "
                "nothing was sent",
                file=path,
                row=_template_line(exc, path, first=True),
                hint="remove the recursive macro call or {% include %} of the same file",
            )
        except MemoryError:
            raise TemplateError(
                "the template builds a value too large for memory; nothing was sent",
                file=path,
                hint="look for a large width or count given to a filter (center, indent, wordwrap) or a large repeat",
            )
        except SecurityError as exc:
            raise TemplateError(
                f"template tried something the sandbox forbids: {exc}",
                file=path,
                row=_template_line(exc, path),
                hint="templates can only print notice data; remove attribute access to Python internals",
            )
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError, OverflowError) as exc:
            raise TemplateError(
                f"template failed: {exc}", file=path, row=_template_line(exc, path), hint="check that line of the template"
            )


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
    #: language → form → variant → Rendering: every form of the SMS, so check can see that each names every channel
    sms_forms: dict[str, dict[int, dict[str, Rendering]]] = field(default_factory=dict)

    def get(self, channel: str, lang: str, variant: str = "") -> Rendering:
        return self.renderings[(channel, lang, variant)]

    def of(self, channel: str) -> list[Rendering]:
        return [r for (c, _, _), r in self.renderings.items() if c == channel]


def render_notice(
    notice: Notice,
    templates: Templates,
    *,
    channels: Iterable[str] = tuple(TEMPLATES),
    updated: Iterable[str] = (),
    sms_transliterate: bool = False,
    sms_max_segments: int | None = None,
) -> RenderSet:
    """Render ``channels`` in every notice language; ``updated`` channels say the notice is an update.

    ``sms_transliterate`` folds the SMS text to GSM-7 where it can (č→c), which the person asked for to
    pay for fewer segments; it is part of the SMS version, since recipients see the difference.
    ``sms_max_segments``: each language's SMS is the first of the template's forms that fits (see sms_form);
    None sends the full form.
    """
    channels = list(channels)
    updated = set(updated)
    catalogs = {lang: templates.catalog(lang, fallback="en") for lang in notice.languages}
    # the notice's own words for a label win over the catalog's, in every channel of that language
    labels = {lang: {**catalogs[lang].labels, **notice.labels.get(lang, {})} for lang in notice.languages}
    renderings: dict[tuple[str, str, str], Rendering] = {}
    sms_alternatives: dict[str, dict[int, dict[str, Rendering]]] = {}
    for channel in channels:
        languages = notice.social_languages if channel == "social" else notice.languages
        variants = ("", NO_NAME) if channel in PERSONAL_CHANNELS else ("",)
        for lang in languages:
            local = localize(notice, lang, is_update=channel in updated)
            if channel == "sms":
                forms = sms_forms(
                    templates, local, labels[lang], catalogs[lang].direction, lang, transliterated=sms_transliterate
                )
                chosen = sms_form(forms, sms_max_segments)
                sms_alternatives[lang] = forms
                for variant in variants:
                    renderings[(channel, lang, variant)] = forms[chosen][variant]
                continue
            for variant in variants:
                contact = {f: Placeholder(f) for f in CONTACT_FIELDS} if variant == "" else dict.fromkeys(CONTACT_FIELDS, "")
                if channel not in PERSONAL_CHANNELS:
                    contact = dict.fromkeys(CONTACT_FIELDS, "")
                context = {
                    "lang": lang,
                    "dir": catalogs[lang].direction,
                    "t": Labels(labels[lang]),
                    "notice": local,
                    "contact": contact,
                }
                rendering = _render_channel(templates, channel, lang, variant, context)
                renderings[(channel, lang, variant)] = rendering
    versions = {}
    for channel in channels:
        if channel == "sms":
            # every form of every language: which form fits --max-sms-segments says nothing new to recipients, so
            # changing the limit sends nothing again; a change to any form's wording is a new version
            contents: Iterable[Rendering] = (r for forms in sms_alternatives.values() for f in forms.values() for r in f.values())
        else:
            contents = (r for (c, _, _), r in renderings.items() if c == channel)
        versions[channel] = content_version(contents)
    return RenderSet(notice, renderings, catalogs, versions, sms_alternatives)


def sms_forms(
    templates: Templates,
    local: LocalNotice,
    labels: Mapping[str, str],
    direction: str,
    lang: str,
    *,
    transliterated: bool = False,
) -> dict[int, dict[str, Rendering]]:
    """Every form of one language's SMS: form → variant → Rendering, each as it would go out."""
    forms: dict[int, dict[str, Rendering]] = {}
    for form in SMS_FORMS:
        forms[form] = {}
        for variant in ("", NO_NAME):
            contact = {f: Placeholder(f) for f in CONTACT_FIELDS} if variant == "" else dict.fromkeys(CONTACT_FIELDS, "")
            context = {
                "lang": lang,
                "dir": direction,
                "t": Labels(labels),
                "notice": local,
                "contact": contact,
                "form": form,
            }
            rendering = replace(_render_channel(templates, "sms", lang, variant, context), form=form)
            if transliterated:
                from broadcast.segments import transliterate

                rendering = replace(rendering, text=transliterate(rendering.text))
            forms[form][variant] = rendering
    return forms


def sms_form(forms: Mapping[int, Mapping[str, Rendering]], max_segments: int | None) -> int:
    """The first form whose SMS fits ``max_segments`` for every recipient, named or not; else the last form.

    A name is counted as LONG_NAME wherever the template prints it, so a long name does not push the SMS over.
    """
    from broadcast.segments import count_segments

    if max_segments is None:
        return min(forms)
    for form, variants in forms.items():
        if all(
            count_segments(personalize(r, dict.fromkeys(CONTACT_FIELDS, LONG_NAME)).text).segments <= max_segments
            for r in variants.values()
        ):
            return form
    return max(forms)


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


def _render_channel(templates: Templates, channel: str, lang: str, variant: str, context: dict[str, Any]) -> Rendering:
    parts = {part: templates.render_file(name, context) for part, name in TEMPLATES[channel].items()}
    if channel == "email":
        return Rendering(channel, lang, variant, subject=" ".join(parts["subject"].split()), html=parts["html"], text=_tidy(parts["text"]))
    if channel == "sms":
        return Rendering(channel, lang, variant, text=_compact(parts["text"]))
    if channel == "social":
        text = _tidy(parts["text"])
        return Rendering(channel, lang, variant, text=text, posts=split_thread(text))
    # the web banner's subject is its headline, for the banner.json a site script reads
    return Rendering(channel, lang, variant, subject=context["notice"].headline, html=parts["html"].strip())


def _tidy(text: str) -> str:
    """Strip line ends and keep at most one blank line between paragraphs."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _compact(text: str) -> str:
    """SMS: every character costs, so strip each line and drop empty ones."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def weighted_length(text: str) -> int:
    """X's weighted length: URLs count 23, CJK and emoji 2 (twitter-text rules)."""
    if text.isascii():
        # Exactly what parse_tweet counts, at a fraction of its cost (it tries its emoji pattern at every
        # character): ASCII holds no emoji and every ASCII character weighs 1, so only links differ
        from twitter_text import extract_urls_with_indices

        text = text.replace("\r\n", "\n")
        # a link needs a dot before its top-level domain, so most sentences never reach the link pattern
        links = extract_urls_with_indices(text) if _DOT_LETTER.search(text) else []
        return len(text) - sum(end - start for start, end in (u["indices"] for u in links)) + 23 * len(links)
    from twitter_text import parse_tweet

    return parse_tweet(text).weightedLength


_DOT_LETTER = re.compile(r"\.[A-Za-z]")
#: where a paragraph too long for one post is split, in order of preference: lines, sentences, words
_SEPARATORS = ("\n", ". ", " ")


def split_thread(text: str, limit: int = X_MAX_WEIGHT) -> tuple[str, ...]:
    """One post if it fits, else a thread: paragraphs packed greedily, numbered " (1/3)".

    Every post is at most ``limit`` with its number. Packing adds up the weights of the pieces, each
    measured once, so a long text costs time in proportion to its length (re-measuring each growing
    post made a 1 MB headline take minutes); every post is measured once more at the end to be sure.
    """
    if weighted_length(text) <= limit:
        return (text,)
    digits, slack = 1, 0
    while True:
        # the suffix " (n/N)" is as wide as N, and N is what the packing decides: try widths until they agree
        room = limit - len(f" ({'9' * digits}/{'9' * digits})") - slack
        if room < 1:
            raise ValueError(f"a thread post cannot hold any text within {limit} characters")
        pieces = [piece for paragraph in text.split("\n\n") for piece in _fit(paragraph, room)]
        posts = [post for post, _ in _pack(pieces, "\n\n", room)]
        total = len(posts)
        if len(str(total)) > digits:
            digits = len(str(total))
            continue
        numbered = tuple(f"{post} ({i}/{total})" for i, post in enumerate(posts, 1))
        over = max(weighted_length(post) for post in numbered) - limit
        if over <= 0:
            return numbered
        slack += over  # weights did not add up exactly (a link or emoji across a join): pack tighter


def _pack(pieces: list[tuple[str, int]], join: str, room: int) -> list[tuple[str, int]]:
    """Greedy packing by summed weights: pieces joined by ``join`` while they fit in ``room``."""
    out: list[tuple[str, int]] = []
    for piece, weight in pieces:
        if out and out[-1][1] + len(join) + weight <= room:
            out[-1] = (f"{out[-1][0]}{join}{piece}", out[-1][1] + len(join) + weight)
        else:
            out.append((piece, weight))
    return out


def _fit(paragraph: str, room: int, weight: int | None = None) -> list[tuple[str, int]]:
    """Split a paragraph that is too long for one post: by lines, then sentences, then words; with weights."""
    if weight is None:
        weight = weighted_length(paragraph)
    if weight <= room:
        return [(paragraph, weight)]
    for separator in _SEPARATORS:
        units = paragraph.split(separator)
        if len(units) == 1:
            continue
        if separator == ". ":
            units = [unit + "." for unit in units[:-1]] + units[-1:]
        join = " " if separator == ". " else separator
        pieces: list[tuple[str, int]] = []
        for unit in units:
            unit_weight = weighted_length(unit)
            pieces.extend(_fit(unit, room, unit_weight) if unit_weight > room else [(unit, unit_weight)])
        return _pack(pieces, join, room)
    # a single unbroken run of text longer than a post: cut it by characters (none weighs more than 2)
    cut = max(1, room // 2)
    return [(chunk, weighted_length(chunk)) for chunk in (paragraph[i : i + cut] for i in range(0, len(paragraph), cut))]


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
