"""Load and validate the notice file: pydantic models of localized text, with errors that name file, line and field."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from broadcast.errors import NoticeError

#: a text that is the same in every language is stored under this key
ANY_LANGUAGE = "*"

SLUG = r"^[a-z0-9][a-z0-9._-]{0,79}$"
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
#: what render.placeholder makes of a contact field (%%name%%, %%name:html%%): broadcast fills these in per
#: recipient after rendering, the HTML form escaped; in notice text one would put a raw name into the email HTML
RESERVED_TOKEN = re.compile(r"%%[^%\s]*%%")


def _as_text(value: Any) -> Any:
    """A plain string means the same text in every language; a mapping is language → text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        return {ANY_LANGUAGE: value}
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or (key != ANY_LANGUAGE and not LANGUAGE_TAG.match(key)):
                raise ValueError(f"{key!r} is not a language code; use codes like en, sw, sl, pt-BR")
        return {k: str(v) if isinstance(v, (int, float)) else v for k, v in value.items()}
    raise ValueError("expected a text, or a mapping of language code to text (en: ..., sl: ...)")


Text = Annotated[dict[str, Annotated[str, Field(min_length=1)]], BeforeValidator(_as_text)]
Slug = Annotated[str, Field(pattern=SLUG)]
Language = Annotated[str, Field(pattern=LANGUAGE_TAG.pattern)]

ChannelKind = Literal["phone", "sms", "chat", "email", "web", "social", "in_person"]
Severity = Literal["info", "advisory", "urgent", "emergency"]


def _problem_at(loc: tuple[str | int, ...], message: str, hint: str) -> PydanticCustomError:
    """A cross-field problem that names the field to change, not the model whose validator found it.

    Pydantic reports a model validator's error at the model itself; ``_notice_error`` adds ``loc`` from the
    context to that, so the error names the field and its line.
    """
    return PydanticCustomError("notice_reference", "{message}", {"message": message, "loc": loc, "hint": hint})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organization(_Strict):
    name: Text
    website: str | None = None


class SupportChannel(_Strict):
    """One way customers can reach support; every rendering must show all of them."""

    id: Slug
    kind: ChannelKind
    label: Text
    contact: Annotated[str, Field(min_length=1)]
    hours: Text | None = None

    @property
    def href(self) -> str:
        """A link a phone or browser can act on, derived so authors write each contact once."""
        contact = self.contact.strip()
        if self.kind in ("phone", "sms") and re.fullmatch(r"[+\d][\d\s().-]{3,}", contact):
            digits = re.sub(r"[^\d+]", "", contact)
            return f"{'tel' if self.kind == 'phone' else 'sms'}:{digits}"
        if self.kind == "email" and "@" in contact and not contact.startswith("mailto:"):
            return f"mailto:{contact}"
        if re.match(r"^(https?|mailto|tel|sms):", contact):
            return contact
        return ""


class Route(_Strict):
    need: Text
    channel: Slug


class Resource(_Strict):
    title: Text
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    kind: Literal["government", "community", "self_care", "other"] = "other"
    description: Text | None = None


class SocialSettings(_Strict):
    languages: list[Language] | None = None


class Notice(_Strict):
    """One crisis notice: everything every channel says, in every language it ships in."""

    id: Slug
    severity: Severity = "advisory"
    #: lets an emergency notice reach email recipients who unsubscribed. Suppressions from SMS STOP replies are
    #: never overridden, because carriers forbid texting a number after STOP.
    #: Left out of model_dump, and so out of render's content version: it changes who gets the notice, not what it
    #: says, so turning it on for a notice already sent reaches the suppressed people without re-sending to everyone.
    override_suppressions: bool = Field(default=False, exclude=True)
    languages: Annotated[list[Language], Field(min_length=1)]
    organization: Organization
    headline: Text
    summary: Text
    channels: Annotated[list[SupportChannel], Field(min_length=1)]
    routing: Annotated[list[Route], Field(min_length=1)]
    reassurance: Text | None = None
    story: Text | None = None
    options: list[Text] = []
    questions: list[Text] = []
    resources: list[Resource] = []
    social: SocialSettings = SocialSettings()
    #: "error": a missing translation stops the run; "default": use the default language's text
    fallback: Literal["error", "default"] = "error"
    #: the notice's own words for template labels, per language (``{en: {how_to_reach: Who can help}}``), in place of
    #: the catalog's. Which keys exist depends on the templates, so check compares them (render.unknown_labels).
    labels: dict[Language, dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], str]] = {}

    @field_validator("languages")
    @classmethod
    def _unique_languages(cls, value: list[str]) -> list[str]:
        twice = sorted({lang for lang in value if value.count(lang) > 1})
        if twice:
            raise ValueError(f"listed twice: {', '.join(map(repr, twice))}; list each language once")
        return value

    @model_validator(mode="after")
    def _references(self) -> Notice:
        ids = [c.id for c in self.channels]
        for i, cid in enumerate(ids):
            if cid in ids[:i]:
                raise _problem_at(
                    ("channels", i, "id"),
                    f"channel id {cid!r} is already used by channels[{ids.index(cid)}]",
                    "give each channel its own id, and name that id in routing",
                )
        for i, route in enumerate(self.routing):
            if route.channel not in ids:
                raise _problem_at(
                    ("routing", i, "channel"),
                    f"routing names channel {route.channel!r}, which is not in channels (known: {', '.join(ids)})",
                    "use one of the ids under `channels:`, or add a channel with that id",
                )
        for lang in self.social_languages:
            if lang not in self.languages:
                raise _problem_at(
                    ("social", "languages"),
                    f"social.languages lists {lang!r}, which is not in languages ({', '.join(self.languages)})",
                    f"remove {lang!r} from social.languages, or add it to `languages:` with its translations",
                )
        return self

    @model_validator(mode="after")
    def _labels_in_notice_languages(self) -> Notice:
        for lang in self.labels:
            if lang not in self.languages:
                raise _problem_at(
                    ("labels", lang),
                    f"labels has {lang!r}, which is not in languages ({', '.join(self.languages)})",
                    f"labels apply to one language each: use one of {', '.join(self.languages)}, or remove {lang!r}",
                )
        return self

    @model_validator(mode="after")
    def _override_only_in_emergency(self) -> Notice:
        # writing to people who unsubscribed is only defensible when lives or health are at stake
        if self.override_suppressions and self.severity != "emergency":
            raise _problem_at(
                ("override_suppressions",),
                f"override_suppressions is only allowed on a notice with severity: emergency (this one is "
                f"{self.severity})",
                "it sends email to people who unsubscribed, so only an emergency may: set `severity: emergency` if "
                "this notice is about danger to life or health, or remove override_suppressions",
            )
        return self

    @property
    def default_language(self) -> str:
        return self.languages[0]

    @property
    def social_languages(self) -> list[str]:
        return self.social.languages or [self.languages[0]]

    def channel(self, channel_id: str) -> SupportChannel:
        return next(c for c in self.channels if c.id == channel_id)


def texts(notice: Notice) -> Iterator[tuple[str, dict[str, str]]]:
    """Every localized text in the notice with its field path (``channels[1].label``)."""
    # label overrides are keyed by language already, each for its own language: not a text to translate
    return ((path, text) for path, text in _walk(notice, "", strings=False) if path != "labels")


def _walk(value: Any, path: str, *, strings: bool) -> Iterator[tuple[str, Any]]:
    """Field paths below ``value`` with each localized text (language → text), or with ``strings`` each plain
    string, a localized one named by field and language (``summary.en``; ``summary`` for every language)."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{path}.{name}" if path else name, strings=strings)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]", strings=strings)
    elif isinstance(value, dict) and not strings:
        yield path, value
    elif isinstance(value, dict):
        for lang, text in value.items():
            yield from _walk(text, path if lang == ANY_LANGUAGE else f"{path}.{lang}", strings=True)
    elif isinstance(value, str) and strings:
        yield path, value


def missing_translations(notice: Notice) -> list[tuple[str, str]]:
    """``(field path, language)`` for every text that lacks a language the notice ships in."""
    missing = []
    for path, text in texts(notice):
        if ANY_LANGUAGE in text:
            continue
        for lang in notice.languages:
            if lang not in text:
                missing.append((path, lang))
    return missing


def pick(text: dict[str, str] | None, lang: str, default: str) -> str | None:
    """The text in ``lang``, else the same-everywhere text, else the default language's."""
    if text is None:
        return None
    return text.get(lang) or text.get(ANY_LANGUAGE) or text.get(default)


# -- localized view for templates ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalChannel:
    id: str
    kind: str
    label: str
    contact: str
    href: str
    hours: str | None


@dataclass(frozen=True, slots=True)
class LocalRoute:
    need: str
    channel: LocalChannel


@dataclass(frozen=True, slots=True)
class LocalResource:
    title: str
    url: str
    kind: str
    description: str | None


@dataclass(frozen=True, slots=True)
class LocalOrganization:
    name: str
    website: str | None


@dataclass(frozen=True, slots=True)
class LocalNotice:
    """The notice in one language: what templates see as ``notice``."""

    id: str
    severity: str
    is_update: bool
    organization: LocalOrganization
    headline: str
    summary: str
    reassurance: str | None
    story: str | None
    options: list[str]
    questions: list[str]
    channels: list[LocalChannel]
    routing: list[LocalRoute]
    resources: list[LocalResource]


def localize(notice: Notice, lang: str, *, is_update: bool = False) -> LocalNotice:
    """Resolve every text of ``notice`` to ``lang`` (missing ones fall back to the default language)."""
    d = notice.default_language

    def t(text: dict[str, str] | None) -> str | None:
        return pick(text, lang, d)

    channels = {
        c.id: LocalChannel(c.id, c.kind, t(c.label) or c.id, c.contact, c.href, t(c.hours)) for c in notice.channels
    }
    return LocalNotice(
        id=notice.id,
        severity=notice.severity,
        is_update=is_update,
        organization=LocalOrganization(t(notice.organization.name) or "", notice.organization.website),
        headline=t(notice.headline) or "",
        summary=t(notice.summary) or "",
        reassurance=t(notice.reassurance),
        story=t(notice.story),
        options=[t(o) or "" for o in notice.options],
        questions=[t(q) or "" for q in notice.questions],
        channels=list(channels.values()),
        routing=[LocalRoute(t(r.need) or "", channels[r.channel]) for r in notice.routing],
        resources=[LocalResource(t(r.title) or "", r.url, r.kind, t(r.description)) for r in notice.resources],
    )


# -- loading ------------------------------------------------------------------------------------


class _DuplicateKey(yaml.MarkedYAMLError):
    """A key written twice in one mapping, which PyYAML would settle by keeping the last without a word."""

    def __init__(self, field: str, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(problem=f"{field!r} is written twice", problem_mark=second)
        self.field = field
        self.lines = (first.line + 1, second.line + 1)


class _NoticeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is an error.

    A field pasted twice would otherwise replace the first silently: the notice goes out saying the later text.
    Checked as the document is composed, where the keys are exactly as written; once constructed, ``<<`` merges
    have mixed in keys that a mapping may rightly override.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        #: the field the composer is in, so a duplicate names its field path and not only its key
        self._path: list[str | int] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # the composer passes a mapping value's key node or a sequence item's position; a key itself gets None
        if index is None:
            return super().compose_node(parent, index)
        self._path.append(index if isinstance(index, int) else getattr(index, "value", "?"))
        try:
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            # a list or mapping as a key is left for validation to report; `<<` merges may be overridden
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            earlier = first.setdefault((key.tag, key.value), key)
            if earlier is not key:
                raise _DuplicateKey(_field_path([*self._path, key.value]), earlier.start_mark, key.start_mark)
        return node


def load_notice(path: str | Path) -> Notice:
    """Read and validate a notice file; raise NoticeError naming file, line and field on any problem."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NoticeError("notice file not found", file=path, hint="check the path; examples/ has complete notices")
    except IsADirectoryError:
        raise NoticeError("this is a folder, not a notice file", file=path, hint="name the .yaml file itself")
    except PermissionError:
        raise NoticeError("cannot read the notice file (permission denied)", file=path, hint="check the file's permissions")
    except UnicodeDecodeError as exc:
        raise NoticeError(
            f"the notice is not UTF-8 text (byte {exc.start})", file=path, hint="save the file as UTF-8 and run again"
        )
    node = None
    try:
        node = yaml.compose(source, Loader=_NoticeLoader)
        data = yaml.load(source, Loader=_NoticeLoader)
    except _DuplicateKey as exc:
        first, second = exc.lines
        where = f"it appears at lines {first} and {second}" if first != second else f"both are on line {first}"
        raise NoticeError(
            "this field is written twice, and YAML would silently keep only the second",
            file=path,
            row=second,
            field=exc.field,
            hint=f"remove one of the two {exc.field.rsplit('.', 1)[-1]!r} entries; {where}",
        ) from None
    except RecursionError:
        # the composer recurses once per level of nesting; no notice is more than a few levels deep
        raise NoticeError(
            "the notice is nested too deeply to read",
            file=path,
            hint="look for a long run of [ or { in the file; examples/boil-water.yaml shows the expected shape",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise NoticeError(
            f"not valid YAML: {problem}",
            file=path,
            row=mark.line + 1 if mark else None,
            hint="check indentation and quoting near that line; quote texts that contain ': ' or start with a symbol",
        )
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these, not YAMLError, for a value that does not fit its tag (`!!int x`)
        raise NoticeError(
            f"a value does not fit its YAML type tag: {exc}",
            file=path,
            row=_unfitting_line(node),
            hint="remove the !!tag there (for example !!int or !!float) or write a value of that type",
        ) from None
    if data is None:
        raise NoticeError("the notice file is empty", file=path, hint="start from examples/boil-water.yaml")
    if not isinstance(data, dict):
        raise NoticeError(
            "the notice must be a mapping of fields (id:, languages:, ...)",
            file=path,
            row=1,
            hint="start from examples/boil-water.yaml; each top-level line is `field: value`",
        )
    lines = _line_index(node)
    try:
        notice = Notice.model_validate(data)
    except ValidationError as exc:
        raise _notice_error(exc, path, lines) from None
    tokens = reserved_tokens(notice)
    if tokens:
        raise _reserved_token_error(tokens, path, lines)
    if notice.fallback == "error":
        missing = missing_translations(notice)
        if missing:
            first_path = missing[0][0]
            listed = "\n".join(f"  - {p} × {lang}" for p, lang in missing[:20])
            more = f"\n  … and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise NoticeError(
                f"{len(missing)} missing translation(s):\n{listed}{more}",
                file=path,
                row=lines.get(first_path),
                field=first_path,
                hint="add the missing languages, or set `fallback: default` to use the default language's text",
            )
    return notice


def reserved_tokens(notice: Notice) -> list[tuple[str, str]]:
    """``(field path, token)`` for every notice string holding a per-recipient token such as ``%%name%%``.

    Every string counts, not only the translated texts: a channel's contact or a resource's URL reaches the
    email HTML as well. A text meant for every language is named by its field (``summary``), one language's
    text by field and language (``summary.en``).
    """
    found = []
    for field, text in _walk(notice, "", strings=True):
        match = RESERVED_TOKEN.search(text)
        if match:
            found.append((field, match.group()))
    return found


def _reserved_token_error(tokens: list[tuple[str, str]], path: Path, lines: dict[str, int]) -> NoticeError:
    field, token = tokens[0]
    hint = (
        "take out the %%…%%: notice text is the same for everyone. Emails already greet each person by name, "
        "with {{ contact.name }} in templates/email/body.html.j2 and body.txt.j2; to change that greeting, "
        "edit greeting_named_before and greeting_named_after in templates/labels/<language>.yaml"
    )
    why = (
        "which is reserved for what broadcast fills in per recipient: here it would put each contact's name, "
        "unescaped, in the email"
    )
    if len(tokens) == 1:
        return NoticeError(
            f"the text contains {token}, {why}", file=path, row=_nearest_line(field, lines), field=field, hint=hint
        )
    listed = "\n".join(f"  - line {_nearest_line(f, lines) or '?'}, field '{f}': {t}" for f, t in tokens)
    return NoticeError(f"{len(tokens)} texts contain %%…%%, {why}:\n{listed}", file=path, hint=hint)


def field_line(path: str | Path, field: str) -> int | None:
    """The line of ``field`` (``labels.en.footer``) in a notice file already loaded, for errors found after loading."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8-sig"), Loader=_NoticeLoader)
    except (OSError, yaml.YAMLError, ValueError, RecursionError):
        return None
    return _nearest_line(field, _line_index(node))


def _unfitting_line(node: Any) -> int | None:
    """The 1-based line of the first scalar whose tag cannot make a value of it, or None."""
    constructor = yaml.SafeLoader("")
    pending, lines = [node], []
    while pending:
        current = pending.pop()
        if isinstance(current, yaml.ScalarNode):
            try:
                constructor.construct_object(current)
            except (ValueError, TypeError, OverflowError, yaml.YAMLError):
                lines.append(current.start_mark.line + 1)
        elif isinstance(current, yaml.SequenceNode):
            pending.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            pending.extend(part for pair in current.value for part in pair)
    return min(lines, default=None)


def _line_index(node: Any) -> dict[str, int]:
    """Map field paths (``channels[1].label``) to 1-based line numbers, so errors can point at a line."""
    index: dict[str, int] = {}
    seen: set[int] = set()

    def walk(n: Any, path: str) -> None:
        index.setdefault(path, n.start_mark.line + 1)
        # an alias points back at a node already walked: walking it again is how alias bombs explode
        if id(n) in seen:
            return
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                child = f"{path}.{key.value}" if path else str(key.value)
                index[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, f"{path}[{i}]")

    if node is not None:
        walk(node, "")
    return index


def _notice_error(exc: ValidationError, path: Path, lines: dict[str, int]) -> NoticeError:
    problems = []
    for err in exc.errors():
        context = err.get("ctx") or {}
        # a cross-field check raised by a model validator says in its context which field it is about
        loc = (*err["loc"], *context.get("loc", ()))
        # pydantic puts union/validator names into loc; keep only the parts a person wrote
        field = _field_path(p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "dict[")))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against examples/README.md"
        elif err["type"] == "missing":
            message = "this field is required"
        elif err["type"] == "literal_error":
            message = f"{message}, got {err.get('input')!r}"
        elif err["type"] == "string_pattern_mismatch" and field.endswith("id"):
            message = "use lowercase letters, digits, '-', '_' or '.' (a slug such as boil-water-2026-03)"
        line = _nearest_line(field, lines)
        problems.append((field or "(top)", line, message, context.get("hint")))
    if len(problems) == 1:
        field, line, message, hint = problems[0]
        return NoticeError(message, file=path, row=line, field=field, hint=hint or _hint(field))
    listed = "\n".join(f"  - line {line or '?'}, field '{f}': {m}" for f, line, m, _ in problems)
    return NoticeError(
        f"{len(problems)} problems:\n{listed}",
        file=path,
        hint="fix each field listed; examples/README.md documents every field",
    )


def _field_path(parts: Iterable[str | int]) -> str:
    """``("channels", 1, "label")`` as ``channels[1].label``, the way errors name a field."""
    field = ""
    for part in parts:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field


def _nearest_line(field: str, lines: dict[str, int]) -> int | None:
    while field:
        if field in lines:
            return lines[field]
        parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", field)
        if parent == field:
            break
        field = parent
    return None


def _hint(field: str) -> str:
    if field.startswith("routing"):
        return "each routing entry needs `need:` and `channel:` naming an id from `channels:`"
    if field.startswith("channels"):
        return "each channel needs id, kind (phone|sms|chat|email|web|social|in_person), label and contact"
    return "examples/README.md documents every field; examples/boil-water.yaml is a complete notice"


def resolve_language(tag: str, languages: list[str]) -> tuple[str, str]:
    """The notice language for a contact's tag, and how it was found: exact, base, default or unset.

    The chain is exact tag (pt-BR) → base language (pt) → the notice's default language.
    """
    if not tag:
        return languages[0], "unset"
    if tag in languages:
        return tag, "exact"
    lowered = {lang.lower(): lang for lang in languages}
    if tag.lower() in lowered:
        return lowered[tag.lower()], "exact"
    base = tag.split("-", 1)[0].lower()
    if base in lowered:
        return lowered[base], "base"
    return languages[0], "default"
