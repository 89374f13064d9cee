"""Load and validate the notice file: pydantic models of localized text, with errors that name file, line and field."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from broadcast.errors import NoticeError, shown

#: a text that is the same in every language is stored under this key
ANY_LANGUAGE = "*"

SLUG = r"^[a-z0-9][a-z0-9._-]{0,79}$"
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

# Limits, documented in examples/README.md ("Limits"). Each is far above any real notice and far below what makes
# check or send slow: a notice is read, rendered and sent in every language, so its size multiplies.
#: bytes of the notice file
MAX_NOTICE_BYTES = 1_000_000
#: YAML values (mappings, lists, texts) once every alias (*name) is filled in: stops an alias bomb before it is built
MAX_YAML_NODES = 100_000
#: characters of one text in one language (a headline, a summary, a label ...)
MAX_TEXT_CHARS = 5_000
#: characters of a contact, a URL or the organization's website
MAX_ADDRESS_CHARS = 2_000
#: characters of a language code: BCP 47 asks implementations to allow 35
MAX_LANGUAGE_CHARS = 35
MAX_LANGUAGES = 30
MAX_CHANNELS = 20
MAX_ROUTES = 40
MAX_RESOURCES = 20
#: entries in options and in questions, each
MAX_LIST_TEXTS = 20
LIMITS_HINT = "examples/README.md lists the limits of a notice"
#: polygons, circles and geocodes of an area, each
MAX_AREA_SHAPES = 20
#: points of one area polygon: a county outline fits, a survey-grade coastline does not belong in an alert
MAX_POLYGON_POINTS = 1_000
#: check warns when a notice expires further ahead than this: an alert is about now, and feeds show it until then
EXPIRES_WARN_AHEAD = timedelta(days=7)

#: support channel kinds whose contact is a web address
URL_KINDS = ("chat", "web", "social")
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
            if not isinstance(key, str) or key != ANY_LANGUAGE:
                _language_tag(key)
        return {k: str(v) if isinstance(v, (int, float)) else v for k, v in value.items()}
    raise ValueError("expected a text, or a mapping of language code to text (en: ..., sl: ...)")


def _problem(message: str, hint: str) -> PydanticCustomError:
    """A field's problem with the hint that says what to write instead."""
    return PydanticCustomError("notice_problem", "{message}", {"message": message, "hint": hint})


def _language_tag(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_LANGUAGE_CHARS or not LANGUAGE_TAG.match(value):
        too_long = isinstance(value, str) and len(value) > MAX_LANGUAGE_CHARS
        raise _problem(
            f"{shown(value)} is not a language code" + (f" (longer than {MAX_LANGUAGE_CHARS} characters)" if too_long else ""),
            "use codes like en, sw, sl, pt-BR: two or three lowercase letters, then optional -parts such as a country",
        )
    return value


def is_blank(text: str) -> bool:
    """Whether a reader would see nothing: only whitespace and invisible characters (zero-width space, BOM, ...)."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc", "Zs", "Zl", "Zp") for ch in text)


def _visible(limit: int, what: str) -> Callable[[str], str]:
    """A validator: the text must show something, and be at most ``limit`` characters."""

    def check(value: str) -> str:
        if len(value) > limit:
            raise _problem(
                f"this {what} is {len(value):,} characters; a notice allows at most {limit:,}",
                f"shorten it; every message repeats it, in every language. {LIMITS_HINT}",
            )
        if is_blank(value):
            raise _problem(
                f"this {what} is blank: it holds only spaces or invisible characters, so people would see nothing",
                f"write the {what} people should read, or remove the field if it is optional",
            )
        return value

    return check


def _at_most(limit: int, what: str) -> BeforeValidator:
    """A list of at most ``limit`` entries, counted before any entry is validated."""

    def check(value: Any) -> Any:
        if isinstance(value, list) and len(value) > limit:
            raise _problem(
                f"{len(value):,} {what}; a notice allows at most {limit}",
                f"keep the {what} people need most; every message carries them, in every language. {LIMITS_HINT}",
            )
        return value

    return BeforeValidator(check)


def link_problem(url: str) -> tuple[str, str] | None:
    """What is wrong with ``url`` as a link people will click, and a hint; None when it may become a link.

    The one rule for every URL in a notice: an absolute https:// address (http:// is allowed, with a warning from
    ``link_warnings``). Anything else (javascript:, data:, a bare wa.me/...) must never reach an email or the banner.
    """
    text = shown(url)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    if scheme is None or re.match(r"^[\w-]+(\.[\w-]+)+:\d", url):
        if re.match(r"^[\w-]+(\.[\w-]+)+(:\d+)?([/?#]\S*)?$", url):
            return (
                f"{text} has no https:// in front, so it would not become a link",
                f"write it in full: https://{shown(url, quote=False)}",
            )
        return f"{text} is not a web address", "write a full address starting with https://, e.g. https://example.org/help"
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in url):
        return f"{text} contains a space or an invisible character", "write the address without spaces, as one word"
    if scheme.group(1).lower() not in ("https", "http"):
        return (
            f"{text} is a {scheme.group(1).lower()}: address; only https:// (or http://) addresses may become links",
            "write the https:// address of the page; for an email address or a phone number add a channel of kind "
            "email, phone or sms",
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if not host or not url[len(scheme.group(0)):].startswith("//"):
        return f"{text} names no website after {scheme.group(0)}//", "write the full address, e.g. https://example.org/help"
    if "@" in parts.netloc:
        # https://lakeside.example@elsewhere.example goes to elsewhere.example: the classic disguised link
        return (
            f"{text} has a user name before '@', which hides where the link really goes",
            f"write the address without the part before '@', e.g. https://{host}",
        )
    return None


def _link(value: str) -> str:
    problem = link_problem(value)
    if problem:
        raise _problem(*problem)
    return value


Text = Annotated[
    dict[str, Annotated[str, AfterValidator(_visible(MAX_TEXT_CHARS, "text"))]], BeforeValidator(_as_text)
]
Slug = Annotated[str, Field(pattern=SLUG)]
Language = Annotated[str, AfterValidator(_language_tag)]
Link = Annotated[str, AfterValidator(_visible(MAX_ADDRESS_CHARS, "address")), AfterValidator(_link)]

ChannelKind = Literal["phone", "sms", "chat", "email", "web", "social", "in_person"]
Severity = Literal["info", "advisory", "urgent", "emergency"]


def _region(value: str) -> str:
    import phonenumbers

    if value not in phonenumbers.SUPPORTED_REGIONS:
        hint = "use a two-letter country code such as KE, SI, GB" + (" (the United Kingdom is GB)" if value == "UK" else "")
        raise _problem(f"{shown(value)} is not a country code phone numbers are known for", hint)
    return value


Region = Annotated[str, AfterValidator(_region)]


def _phone_problem(contact: str, region: str | None) -> tuple[str, str] | str:
    """The E.164 form of a support phone number, or what is wrong with it and a hint."""
    import phonenumbers

    example = _example_number(region)
    if not contact.lstrip().startswith("+") and region is None:
        return (
            f"{shown(contact)} has no country code, so people abroad and phones that roam cannot call it",
            f"write it internationally, e.g. {example}, or set `region:` at the top of the notice (e.g. region: KE) "
            "to say which country numbers without + belong to",
        )
    try:
        parsed = phonenumbers.parse(contact, region)
    except phonenumbers.NumberParseException:
        return f"{shown(contact)} is not a phone number", f"write it internationally, e.g. {example}"
    if not phonenumbers.is_valid_number(parsed):
        country = phonenumbers.region_code_for_country_code(parsed.country_code)
        where = f"+{parsed.country_code}" if country == "ZZ" else f"{country} (+{parsed.country_code})"
        example = example if country == "ZZ" else _example_number(country)
        return (
            f"{shown(contact)} is not a valid phone number for {where}: a digit is missing, extra or wrong",
            f"check the number against your phone system and write it internationally, e.g. {example}",
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _example_number(region: str | None) -> str:
    import phonenumbers

    number = phonenumbers.example_number(region or "SI")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL) if number else "+386 1 555 01 00"


def _email_problem(contact: str) -> tuple[str, str] | None:
    from email_validator import EmailNotValidError, validate_email

    try:
        # offline: a DNS look-up would make check depend on the network, and fail during the very outage it announces
        validate_email(contact, check_deliverability=False)
    except EmailNotValidError as exc:
        return (
            f"{shown(contact)} is not a valid email address: {str(exc).rstrip('.')}",
            "write just the address, e.g. help@example.org",
        )
    return None


def _problem_at(loc: tuple[str | int, ...], message: str, hint: str) -> PydanticCustomError:
    """A cross-field problem that names the field to change, not the model whose validator found it.

    Pydantic reports a model validator's error at the model itself; ``_notice_error`` adds ``loc`` from the
    context to that, so the error names the field and its line.
    """
    return PydanticCustomError("notice_reference", "{message}", {"message": message, "loc": loc, "hint": hint})


@dataclass(frozen=True, slots=True)
class NoticeWarning:
    """Something in the notice a person should look at before sending; shaped like pipeline.Caution."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organization(_Strict):
    name: Text
    website: Link | None = None


class SupportChannel(_Strict):
    """One way customers can reach support; every rendering must show all of them."""

    id: Slug
    kind: ChannelKind
    label: Text
    contact: Annotated[str, AfterValidator(_visible(MAX_ADDRESS_CHARS, "contact"))]
    hours: Text | None = None
    #: a phone or SMS contact in E.164, set when the notice validates (it may need the notice's region)
    _dial: str = PrivateAttr(default="")

    @property
    def href(self) -> str:
        """A link a phone or browser can act on, derived so authors write each contact once.

        Only a contact the notice validated for its kind becomes a link: phone and SMS numbers in E.164, whatever
        spacing the notice shows; email as mailto:; chat, web and social as their https:// (or http://) address.
        """
        if self.kind in ("phone", "sms"):
            return f"{'tel' if self.kind == 'phone' else 'sms'}:{self._dial}" if self._dial else ""
        if self.kind == "email":
            return f"mailto:{self.contact.strip()}"
        if self.kind in URL_KINDS and link_problem(self.contact) is None:
            return self.contact
        return ""


class Route(_Strict):
    need: Text
    channel: Slug


class Resource(_Strict):
    title: Text
    url: Link
    kind: Literal["government", "community", "self_care", "other"] = "other"
    description: Text | None = None


def _reply_keywords(value: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each reply word means one answer, and none is a carrier keyword: STOP and START change a subscription and are
    never counted as an answer (results.action)."""
    from broadcast.results import action, normalize

    meaning: dict[str, str] = {}
    for name, words in value.items():
        for word in words:
            said = normalize(word)
            if not said:
                raise _problem(f"{name}: {shown(word)} is only spaces or punctuation, which no reply can match",
                               "write the word people reply, e.g. 1 or safe")
            if action(word):
                raise _problem(
                    f"{name}: {shown(word)} is a carrier keyword (STOP, START and their synonyms): a reply of it opts the "
                    "person out of or back into SMS, and is never counted as an answer",
                    "choose another word, e.g. a number: 1, 2",
                )
            if said in meaning and meaning[said] != name:
                raise _problem(f"{shown(word)} is a reply for both {meaning[said]} and {name}",
                               "give each reply word to one keyword only")
            meaning[said] = name
    return value


class ReplySettings(_Strict):
    """A notice that asks people to answer: the prompt added to the SMS and email, and the words each answer counts."""

    #: answer → the replies that mean it, matched whatever their case, accents and punctuation: {SAFE: ["1", "safe"]}
    keywords: Annotated[
        dict[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")],
             Annotated[list[Annotated[str, Field(min_length=1, max_length=40)]], Field(min_length=1, max_length=20)]],
        Field(min_length=1, max_length=10), AfterValidator(_reply_keywords),
    ]
    #: what the message asks, per language: "Reply 1 if you are safe"
    prompt: Text


class FollowUpRule(_Strict):
    """One follow-up the next `send` makes: ``{if: undelivered, after: 15m, then: other_channel}`` reaches a contact
    whose message was not delivered on their other channel (email ↔ SMS); ``{if: no_reply, after: 2h, then: resend}``
    sends the message again, once, to a contact who has not replied."""

    when: Literal["undelivered", "no_reply"] = Field(alias="if")
    #: how long after the message (its failure, or its sending) the follow-up is due: 90s, 15m, 2h, 1d
    after: Annotated[str, Field(pattern=r"^\s*\d+\s*[smhd]\s*$")]
    then: Literal["other_channel", "resend"]


class SocialSettings(_Strict):
    languages: list[Language] | None = None


# -- lifecycle and public-alert fields (CAP 1.2) -----------------------------------------------------

Phase = Literal["alert", "update", "all_clear"]
#: characters CAP 1.2 forbids in a sender or identifier: space, comma, and the XML-restricted & < (and " for safety)
_CAP_RESTRICTED = re.compile(r'[\s,&<>"]')
_COORDINATE = r"-?\d{1,3}(?:\.\d+)?"
_POINT = re.compile(rf"^({_COORDINATE})\s*,\s*({_COORDINATE})$")
_CIRCLE = re.compile(rf"^({_COORDINATE})\s*,\s*({_COORDINATE})\s+(\d+(?:\.\d+)?)$")


def cap_sender_problem(value: str) -> tuple[str, str] | None:
    """What makes ``value`` unusable as a CAP sender, and a hint; None when CAP accepts it."""
    hint = "use one word that identifies your organization, such as alerts@lakeside.example or lakeside-water"
    if not value or is_blank(value):
        return "the CAP sender is empty", hint
    if len(value) > MAX_ADDRESS_CHARS:
        return f"the CAP sender is {len(value):,} characters; at most {MAX_ADDRESS_CHARS:,}", hint
    bad = _CAP_RESTRICTED.search(value) or re.search(r"[\x00-\x1f\x7f]", value)
    if bad:
        what = "a space" if bad.group().isspace() else repr(bad.group())
        return f"{shown(value)} contains {what}; CAP 1.2 forbids spaces, commas, & and < in a sender", hint
    return None


def _cap_sender(value: str) -> str:
    problem = cap_sender_problem(value)
    if problem:
        raise _problem(*problem)
    return value


def _expires(value: Any) -> datetime:
    """An ISO 8601 time with its zone; YAML gives a datetime when unquoted, a string when quoted."""
    hint = "write the date, time and zone, e.g. 2026-11-30T18:00:00+03:00 (or 2026-11-30T15:00:00Z for UTC)"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _problem(f"{shown(value)} is not an ISO 8601 date and time", hint) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        raise _problem(f"{value.isoformat()} is a date without a time and zone", hint)
    if not isinstance(value, datetime):
        raise _problem(f"{shown(value)} is not a date and time", hint)
    if value.tzinfo is None or value.utcoffset() is None:
        raise _problem(
            f"{value.isoformat()} has no time zone, so it would expire at a different moment for each reader",
            hint,
        )
    return value


def _points(value: Any) -> tuple[str, ...]:
    """A polygon as CAP writes it ("lat,lon lat,lon ...") or as a YAML list of "lat,lon" points, checked."""
    example = 'e.g. ["46.05,14.50", "46.06,14.52", "46.04,14.53", "46.05,14.50"]'
    if isinstance(value, str):
        raw = re.sub(r"\s*,\s*", ",", value.strip()).split()
    elif isinstance(value, list):
        raw = [str(p) if isinstance(p, str) else p for p in value]
    else:
        raise _problem("a polygon is a list of \"lat,lon\" points", example)
    if len(raw) > MAX_POLYGON_POINTS:
        raise _problem(f"{len(raw):,} points; a polygon allows at most {MAX_POLYGON_POINTS:,}", f"simplify the outline. {LIMITS_HINT}")
    points = []
    for i, point in enumerate(raw, 1):
        match = _POINT.match(point.strip()) if isinstance(point, str) else None
        if match is None:
            raise _problem(f"point {i}, {shown(point)}, is not \"latitude,longitude\" in decimal degrees", example)
        lat, lon = float(match.group(1)), float(match.group(2))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise _problem(
                f"point {i}, {shown(point)}, is off the map: latitude is -90 to 90, longitude -180 to 180",
                "write latitude first, then longitude (WGS 84, decimal degrees)",
            )
        points.append((lat, lon, f"{match.group(1)},{match.group(2)}"))
    if len(points) < 4:
        raise _problem(
            f"a polygon needs at least 4 points (3 corners and the first again); this one has {len(points)}",
            f"list at least 3 corners and repeat the first as the last, {example}",
        )
    if points[0][:2] != points[-1][:2]:
        raise _problem(
            f"the polygon is not closed: it starts at {points[0][2]} and ends at {points[-1][2]}",
            f"repeat the first point, {points[0][2]}, as the last",
        )
    return tuple(p[2] for p in points)


def _circle(value: Any) -> str:
    match = _CIRCLE.match(value.strip()) if isinstance(value, str) else None
    hint = 'write "latitude,longitude radius" with the radius in km, e.g. "46.05,14.50 3.5"'
    if match is None:
        raise _problem(f"{shown(value)} is not a circle", hint)
    lat, lon = float(match.group(1)), float(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise _problem(f"the centre {match.group(1)},{match.group(2)} is off the map", hint)
    return f"{match.group(1)},{match.group(2)} {match.group(3)}"


Polygon = Annotated[tuple[str, ...], BeforeValidator(_points)]
Circle = Annotated[str, BeforeValidator(_circle)]
CapSender = Annotated[str, AfterValidator(_cap_sender)]
Expires = Annotated[datetime, BeforeValidator(_expires)]


class Geocode(_Strict):
    """A code for the area in a named system, as CAP writes it (valueName SAME, value 006113)."""

    name: Annotated[str, AfterValidator(_visible(MAX_ADDRESS_CHARS, "geocode name"))]
    value: Annotated[str, AfterValidator(_visible(MAX_ADDRESS_CHARS, "geocode value"))]

    @field_validator("name", "value", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        # YAML reads unquoted 006113 as a number (an octal one, even): the code would silently change
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise _problem(
                "a geocode is text, but this one was written as a number, and YAML drops its leading zeros",
                "write it in quotes, exactly as the code list gives it, e.g. value: \"006113\"",
            )
        return value


class Area(_Strict):
    """Where the notice applies, for public alert feeds (CAP <area>)."""

    description: Text
    geocodes: Annotated[list[Geocode], _at_most(MAX_AREA_SHAPES, "geocodes")] = []
    polygons: Annotated[list[Polygon], _at_most(MAX_AREA_SHAPES, "polygons")] = []
    circles: Annotated[list[Circle], _at_most(MAX_AREA_SHAPES, "circles")] = []


class ApprovalPolicy(_Strict):
    """Whether a second person must approve the notice before `send` sends it, and what their approval covers."""

    #: required: `send` refuses content nobody else approved (also BROADCAST_REQUIRE_APPROVAL=1)
    policy: Literal["required", "optional"] = "optional"
    #: renderings: an approval holds while the texts are unchanged (new contacts are fine); fixed: any change of
    #: the contact set or the chosen channels voids it too
    audience: Literal["renderings", "fixed"] = "renderings"

    @model_validator(mode="before")
    @classmethod
    def _word(cls, value: Any) -> Any:
        # `approval: required` is the short form of `approval: {policy: required}`
        return {"policy": value} if isinstance(value, str) else value


def _clock(value: Any) -> str:
    from broadcast.quiet import parse_clock

    try:
        return parse_clock(value).strftime("%H:%M")
    except ValueError as exc:
        raise _problem(str(exc), 'write the time of day in quotes, e.g. start: "21:00" and end: "08:00"') from None


def _quiet_hours(value: Any) -> Any:
    """``false`` (off) or a window; anything else is refused with what to write instead of pydantic's union error."""
    if value is False or isinstance(value, dict):
        return value
    raise _problem(
        f"{str(value).lower() if isinstance(value, bool) else repr(value)} is neither a window nor false",
        'write a window, e.g. quiet_hours: {start: "21:00", end: "08:00"}, or quiet_hours: false to send at any hour',
    )


def _time_zone(value: str) -> str:
    from broadcast.quiet import zone_problem

    problem = zone_problem(value)
    if problem:
        raise _problem(problem, "use an IANA zone name such as Africa/Nairobi, Europe/Ljubljana or America/Los_Angeles")
    return value


class QuietHoursSetting(_Strict):
    """When info and advisory notices send no SMS: from ``start`` to ``end`` in each recipient's own time (by default
    21:00 to 08:00, a night anywhere)."""

    start: Annotated[str, BeforeValidator(_clock)] = "21:00"
    end: Annotated[str, BeforeValidator(_clock)] = "08:00"
    #: the zone of recipients whose own zone is not known (no timezone column, a number with several zones)
    timezone: Annotated[str, AfterValidator(_time_zone)] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursSetting:
        if self.start == self.end:
            raise _problem_at(
                ("end",), f"start and end are both {self.start}, so the quiet hours would last no time at all",
                'give the window a length, e.g. start: "21:00" and end: "08:00"',
            )
        return self


class Notice(_Strict):
    """One crisis notice: everything every channel says, in every language it ships in."""

    id: Slug
    severity: Severity = "advisory"
    #: lets an emergency notice reach email recipients who unsubscribed. Suppressions from SMS STOP replies are
    #: never overridden, because carriers forbid texting a number after STOP.
    #: Left out of model_dump, and so out of render's content version: it changes who gets the notice, not what it
    #: says, so turning it on for a notice already sent reaches the suppressed people without re-sending to everyone.
    override_suppressions: bool = Field(default=False, exclude=True)
    languages: Annotated[list[Language], Field(min_length=1), _at_most(MAX_LANGUAGES, "languages")]
    #: the country of phone numbers written without +country code (ISO 3166 code, as phonenumbers knows it)
    region: Region | None = None
    organization: Organization
    headline: Text
    summary: Text
    channels: Annotated[list[SupportChannel], Field(min_length=1), _at_most(MAX_CHANNELS, "support channels")]
    routing: Annotated[list[Route], Field(min_length=1), _at_most(MAX_ROUTES, "routing entries")]
    reassurance: Text | None = None
    story: Text | None = None
    options: Annotated[list[Text], _at_most(MAX_LIST_TEXTS, "options")] = []
    questions: Annotated[list[Text], _at_most(MAX_LIST_TEXTS, "questions")] = []
    resources: Annotated[list[Resource], _at_most(MAX_RESOURCES, "resources")] = []
    social: SocialSettings = SocialSettings()
    #: "error": a missing translation stops the run; "default": use the default language's text
    fallback: Literal["error", "default"] = "error"
    #: the notice's own words for template labels, per language (``{en: {how_to_reach: Who can help}}``), in place of
    #: the catalog's. Which keys exist depends on the templates, so check compares them (render.unknown_labels).
    labels: dict[Language, dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], str]] = {}
    #: where the notice is in its life: the first alert, an update, or the all-clear
    phase: Phase = "alert"
    #: when the notice stops being true: nothing is sent after it, and public feeds drop it
    expires: Expires | None = None
    #: where the notice applies, for CAP feeds
    area: Area | None = None
    #: who publishes the CAP alerts (else BROADCAST_CAP_SENDER): one word, no spaces or commas
    cap_sender: CapSender | None = None
    #: who must look before it goes out (approve.py). Left out of model_dump, so out of the release digest: requiring
    #: approval changes who may send, not what recipients read
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy, exclude=True)
    #: ask people to reply (``{keywords: {SAFE: ["1", "safe"]}, prompt: {en: "Reply 1 if you are safe"}}``): the prompt
    #: goes in the SMS, and `status` counts the replies per keyword. Left out of model_dump, so out of the release
    #: digest (a notice without it keeps the digest it had): the prompt changes the SMS, whose own version says so
    reply: ReplySettings | None = Field(default=None, exclude=True)
    #: what the next `send` does about people not reached or not answering (followup.py). Left out of model_dump, so
    #: out of the content version: adding a rule changes who gets a message, not what it says
    follow_up: Annotated[list[FollowUpRule], _at_most(10, "follow_up rules")] = Field(default_factory=list, exclude=True)
    #: when an info or advisory notice holds SMS for the recipient's morning (quiet.py). Left out of model_dump, so
    #: out of every content version: it changes when people get the notice, not what it says
    #: ``quiet_hours: false`` turns them off: an info notice that people want at any hour (a water-main repair done)
    quiet_hours: Annotated[QuietHoursSetting | Literal[False], BeforeValidator(_quiet_hours)] = Field(
        default_factory=QuietHoursSetting, exclude=True)

    @field_validator("languages")
    @classmethod
    def _unique_languages(cls, value: list[str]) -> list[str]:
        twice = sorted({lang for lang in value if value.count(lang) > 1})
        if twice:
            raise ValueError(f"listed twice: {', '.join(map(repr, twice))}; list each language once")
        return value

    #: what a person should look at before sending (an http:// link); set by load_notice, never stops a run
    _warnings: list[NoticeWarning] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _contacts(self) -> Notice:
        # each kind's rule needs the notice's region (phone numbers), so it runs here and not on the channel
        for i, channel in enumerate(self.channels):
            contact = channel.contact
            problem: tuple[str, str] | str | None = None
            if channel.kind in ("phone", "sms"):
                problem = _phone_problem(contact, self.region)
                if isinstance(problem, str):
                    channel._dial, problem = problem, None
            elif channel.kind == "email":
                problem = _email_problem(contact)
            elif channel.kind in URL_KINDS:
                problem = link_problem(contact)
            if problem:
                message, hint = problem
                raise _problem_at(
                    ("channels", i, "contact"),
                    f"{message}; every message lists this {channel.kind} contact, and people would reach no one",
                    hint,
                )
        return self

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

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # the dump is part of every channel's content version (render.py): a notice without `region` must keep the
        # version it had before the field existed, or upgrading would send every notice already sent again
        data = handler(self)
        if self.region is None:
            data.pop("region", None)
        return data

    @property
    def default_language(self) -> str:
        return self.languages[0]

    @property
    def warnings(self) -> list[NoticeWarning]:
        """What check should show before sending: each http:// link, with file, line and field."""
        return list(self._warnings)

    @property
    def social_languages(self) -> list[str]:
        return self.social.languages or [self.languages[0]]

    def channel(self, channel_id: str) -> SupportChannel:
        return next(c for c in self.channels if c.id == channel_id)

    def expired(self, now: datetime) -> bool:
        """Whether ``now`` (a time with its zone) is at or past ``expires``; a notice without it never expires."""
        return self.expires is not None and now >= self.expires


def links(notice: Notice) -> Iterator[tuple[str, str]]:
    """``(field path, URL)`` for every notice value that becomes a web link in an email or the banner."""
    if notice.organization.website:
        yield "organization.website", notice.organization.website
    for i, channel in enumerate(notice.channels):
        if channel.kind in URL_KINDS:
            yield f"channels[{i}].contact", channel.contact
    for i, resource in enumerate(notice.resources):
        yield f"resources[{i}].url", resource.url


def link_warnings(notice: Notice, path: str | Path, lines: dict[str, int]) -> list[NoticeWarning]:
    """A warning for each http:// link: allowed, but anyone on the network can change the page people get."""
    found = []
    for field, url in links(notice):
        if url.lower().startswith("http://"):
            line = _nearest_line(field, lines)
            found.append(
                NoticeWarning(
                    f"{path}{f', line {line}' if line else ''}, field '{field}'",
                    f"{shown(url)} is an http:// link: unencrypted, so a network on the way can change or fake the "
                    "page people open; write https:// if the site supports it",
                )
            )
    return found


def expiry_warnings(notice: Notice, path: str | Path, lines: dict[str, int], now: datetime) -> list[NoticeWarning]:
    """A warning when ``expires`` has passed (nothing would be sent) or is more than EXPIRES_WARN_AHEAD away."""
    if notice.expires is None:
        return []
    line = _nearest_line("expires", lines)
    where = f"{path}{f', line {line}' if line else ''}, field 'expires'"
    when = notice.expires.isoformat()
    if notice.expired(now):
        return [NoticeWarning(where, f"{when} is in the past: the notice has expired, so send would send nothing "
                                     "and feeds drop it; set a later time if it still holds")]
    if notice.expires - now > EXPIRES_WARN_AHEAD:
        days = (notice.expires - now) / timedelta(days=1)
        return [NoticeWarning(where, f"{when} is {days:.0f} days ahead: feeds and banners would show the notice "
                                     "that long; set when it stops being true, and send an update to extend it")]
    return []


def texts(notice: Notice) -> Iterator[tuple[str, dict[str, str]]]:
    """Every localized text in the notice with its field path (``channels[1].label``)."""
    # label overrides are keyed by language already, each for its own language: not a text to translate; nor are
    # reply keywords, keyed by answer, whose words are matched in any language
    return ((path, text) for path, text in _walk(notice, "", strings=False) if path not in ("labels", "reply.keywords"))


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
    #: where the notice is in its life (alert, update, all_clear: an all-clear has its own wording in every
    #: template) and when it stops being true (None: never)
    phase: str = "alert"
    expires: datetime | None = None
    #: what the notice asks people to reply, in this language ("Reply 1 if you are safe"); None when it asks nothing
    reply_prompt: str | None = None


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
        phase=notice.phase,
        expires=notice.expires,
        reply_prompt=t(notice.reply.prompt) if notice.reply is not None else None,
    )


# -- loading ------------------------------------------------------------------------------------


class _DuplicateKey(yaml.MarkedYAMLError):
    """A key written twice in one mapping, which PyYAML would settle by keeping the last without a word."""

    def __init__(self, field: str, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(problem=f"{field!r} is written twice", problem_mark=second)
        self.field = field
        self.lines = (first.line + 1, second.line + 1)


#: libyaml's parser when PyYAML was built with it: several times faster than the pure-Python one on a large notice,
#: and it refuses nesting deeper than 1,000 levels by itself
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _refuse_duplicate_keys(root: Any) -> None:
    """A key written twice in one mapping is an error, which PyYAML would settle by keeping the last without a word.

    A field pasted twice would otherwise replace the first silently: the notice goes out saying the later text.
    Checked on the composed nodes, where the keys are exactly as written; once constructed, ``<<`` merges have mixed
    in keys that a mapping may rightly override. Each node is checked once, however many aliases repeat it.
    """
    seen: set[int] = set()

    def walk(node: Any, path: list[str | int]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, [*path, i])
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                walk(key, path)
                walk(value, [*path, key.value if isinstance(key, yaml.ScalarNode) else "?"])
            for key, _ in node.value:
                # a list or mapping as a key is left for validation to report; `<<` merges may be overridden
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                earlier = first.setdefault((key.tag, key.value), key)
                if earlier is not key:
                    raise _DuplicateKey(_field_path([*path, key.value]), earlier.start_mark, key.start_mark)

    walk(root, [])


def load_notice(path: str | Path, *, now: datetime | None = None) -> Notice:
    """Read and validate a notice file; raise NoticeError naming file, line and field on any problem.

    ``now`` (default: the clock) is when ``expires`` is compared for the warnings.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_NOTICE_BYTES + 1)
        source = raw.decode("utf-8-sig")
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
    if len(raw) > MAX_NOTICE_BYTES:
        raise NoticeError(
            f"the notice file is larger than {MAX_NOTICE_BYTES:,} bytes; nothing was sent",
            file=path,
            hint=f"a notice is a page of text: look for something pasted in by mistake. {LIMITS_HINT}",
        )
    # parsed once, as nodes (for line numbers); duplicate keys and alias bombs are refused before data is built
    loader, node = _Loader(source), None
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicate_keys(node)
            _refuse_expansion(node, path)
        data = loader.construct_document(node) if node is not None else None
    except _DuplicateKey as exc:
        first, second = exc.lines
        where = f"it appears at lines {first} and {second}" if first != second else f"both are on line {first}"
        raise NoticeError(
            "this field is written twice, and YAML would silently keep only the second",
            file=path,
            row=second,
            field=exc.field,
            hint=f"remove one of the two {shown(exc.field.rsplit('.', 1)[-1])} entries; {where}",
        ) from None
    except (RecursionError, yaml.YAMLError) as exc:
        if isinstance(exc, yaml.YAMLError) and "maximum nesting depth" not in str(exc):
            raise _yaml_error(exc, path) from None
        # libyaml stops at 1,000 levels of nesting, Python's recursion about there; no notice is more than a few deep
        raise NoticeError(
            "the notice is nested too deeply to read",
            file=path,
            hint="look for a long run of [ or { in the file; examples/boil-water.yaml shows the expected shape",
        ) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these, not YAMLError, for a value that does not fit its tag (`!!int x`)
        raise NoticeError(
            f"a value does not fit its YAML type tag: {shown(str(exc), quote=False)}",
            file=path,
            row=_unfitting_line(node),
            hint="remove the !!tag there (for example !!int or !!float) or write a value of that type",
        ) from None
    finally:
        loader.dispose()
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
    notice._warnings = link_warnings(notice, path, lines)
    notice._warnings += expiry_warnings(notice, path, lines, now or datetime.now(timezone.utc))
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
            found.append((field, shown(match.group(), quote=False)))
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
        node = yaml.compose(Path(path).read_text(encoding="utf-8-sig"), Loader=_Loader)
    except (OSError, yaml.YAMLError, ValueError, RecursionError):
        return None
    return _nearest_line(field, _line_index(node))


def _refuse_expansion(root: Any, path: Path) -> None:
    """Refuse a document that holds more than MAX_YAML_NODES values once its aliases are filled in.

    An alias (*name) repeats a value without copying it, so ten lines can stand for a billion values (an "alias
    bomb"), which validation and rendering would then walk one by one. Counted on the composed nodes, where each
    alias is one shared node: the count takes one visit per node written.
    """
    if root is None:
        return
    # depth first without recursion; a node's size is known once, however many aliases repeat it
    size: dict[int, int] = {}
    open_ids = {id(root)}  # the nodes being counted: an alias to one of them is a loop
    stack: list[list[Any]] = [[root, iter(_children(root)), 1]]
    while stack:
        top = stack[-1]
        for child in top[1]:
            if isinstance(child, yaml.ScalarNode):
                top[2] += 1
            elif id(child) in size:
                top[2] += size[id(child)]
            elif id(child) in open_ids:
                raise NoticeError(
                    "a YAML alias (*name) is used inside the value it names, so the value never ends",
                    file=path,
                    row=child.start_mark.line + 1,
                    hint="write the value out, or point the alias at a value defined before it",
                )
            else:
                open_ids.add(id(child))
                stack.append([child, iter(_children(child)), 1])
                break
        else:
            stack.pop()
            open_ids.discard(id(top[0]))
            size[id(top[0])] = top[2]
            if stack:
                stack[-1][2] += top[2]
    if size[id(root)] <= MAX_YAML_NODES:
        return
    field, line = "", None
    if isinstance(root, yaml.MappingNode) and root.value:
        size.update((id(value), 1) for _, value in root.value if isinstance(value, yaml.ScalarNode))
        # the last of the largest: an anchor (&name) comes before its aliases, and the field to fix is where one is used
        largest = max(size[id(value)] for _, value in root.value)
        key = [key for key, value in root.value if size[id(value)] == largest][-1]
        field, line = str(key.value), key.start_mark.line + 1
    raise NoticeError(
        f"the notice holds {size[id(root)]:,} values once its YAML aliases (*name) are filled in; a notice allows "
        f"at most {MAX_YAML_NODES:,}",
        file=path,
        row=line,
        field=field or None,
        hint=f"write the value out without aliases that repeat aliases. {LIMITS_HINT}",
    )


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _yaml_error(exc: yaml.YAMLError, path: Path) -> NoticeError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return NoticeError(
        f"not valid YAML: {problem}",
        file=path,
        row=mark.line + 1 if mark else None,
        hint="check indentation and quoting near that line; quote texts that contain ': ' or start with a symbol",
    )


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
        # pydantic puts union/validator names into loc; keep only the parts a person wrote (a text for every
        # language is stored under ANY_LANGUAGE, which the person did not write)
        field = _field_path(
            p for p in loc if isinstance(p, int) or not (str(p).startswith(("function-", "dict[")) or p == ANY_LANGUAGE)
        )
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against examples/README.md"
        elif err["type"] == "missing":
            message = "this field is required"
        elif err["type"] == "literal_error":
            message = f"{message}, got {shown(err.get('input'))}"
        elif err["type"] == "string_pattern_mismatch" and field.endswith("id"):
            message = (
                "an id is lowercase letters, digits, '-', '_' or '.', starting with a letter or digit, at most 80 "
                "characters (a slug such as boil-water-2026-03)"
            )
        line = _nearest_line(field, lines)
        problems.append((shown(field, quote=False) or "(top)", line, message, context.get("hint")))
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
