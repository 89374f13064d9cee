"""Public alerts: each release of a notice as an OASIS CAP 1.2 alert, and an Atom feed of the alerts in a folder.

A release is one version of a notice as it went out: the first alert, each update, the all-clear, a cancel. Each
becomes ``DIR/cap/<notice-id>-<n>.xml``; ``DIR/feed.atom`` lists every alert in ``DIR/cap`` by the rules Google
Public Alerts gives for feeds: current alerts always, a superseded one for 48 hours after its successor was sent,
and the whole feed under 900 KB.

The notice's severity is mapped to CAP's three scales (documented in examples/README.md, "Public alerts"):

============  ===========  ===========  ===========
notice        urgency      severity     certainty
============  ===========  ===========  ===========
info          Future       Minor        Possible
advisory      Expected     Moderate     Likely
urgent        Immediate    Severe       Observed
emergency     Immediate    Extreme      Observed
all-clear     Past         Minor        Observed
============  ===========  ===========  ===========

The XML is built with lxml, never by formatting strings, so no notice text can change its structure.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from broadcast.errors import ConfigError, NoticeError, shown
from broadcast.notice import Notice, Phase, cap_sender_problem, pick

if TYPE_CHECKING:
    from collections.abc import Callable

    from lxml.etree import XMLParser, _Element

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
SENDER_ENV = "BROADCAST_CAP_SENDER"
#: Google Public Alerts: a superseded alert stays in the feed this long after the alert that replaced it was sent
SUPERSEDED_KEPT = timedelta(hours=48)
#: Google Public Alerts: a feed must stay under 1 MB; 900 KB leaves room for a proxy's own changes
MAX_FEED_BYTES = 900 * 1024
#: CAP has no category for "a utility or service is disrupted"; a notice does not say its hazard, so every alert is Other
CATEGORY = "Other"

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

MsgType = Literal["Alert", "Update", "Cancel"]

#: notice severity → CAP (urgency, severity, certainty); see the module docstring
SCALES: dict[str, tuple[str, str, str]] = {
    "info": ("Future", "Minor", "Possible"),
    "advisory": ("Expected", "Moderate", "Likely"),
    "urgent": ("Immediate", "Severe", "Observed"),
    "emergency": ("Immediate", "Extreme", "Observed"),
}
#: an all-clear says the danger is over, whatever the notice's severity was
ALL_CLEAR_SCALES = ("Past", "Minor", "Observed")


@dataclass(frozen=True, slots=True)
class Release:
    """One version of a notice as it was published: what a CAP alert and its later references need.

    ``identifier`` is derived from sender, notice id and number unless given; keep the one recorded, so references
    to it stay right even if the derivation ever changes.
    """

    notice_id: str
    #: 1-based: the n-th version of this notice that went out
    number: int
    msg_type: MsgType
    phase: Phase
    #: when it was sent, with its zone
    sent: datetime
    sender: str
    identifier: str = ""
    #: why, for a Cancel (CAP <note>)
    note: str = ""

    def __post_init__(self) -> None:
        # a wrong Release is a bug in the caller (exit 3), not the user's input
        if self.number < 1:
            raise ValueError(f"a release number is 1-based, got {self.number}")
        if self.msg_type not in ("Alert", "Update", "Cancel"):
            raise ValueError(f"msgType must be Alert, Update or Cancel, got {self.msg_type!r}")
        if self.sent.tzinfo is None or self.sent.utcoffset() is None:
            raise ValueError("a release's sent time needs its zone")
        if not self.identifier:
            object.__setattr__(self, "identifier", cap_identifier(self.sender, self.notice_id, self.number))

    @property
    def reference(self) -> str:
        """This release as CAP's <references> names it: ``sender,identifier,sent``."""
        return f"{self.sender},{self.identifier},{cap_time(self.sent)}"

    @property
    def file_name(self) -> str:
        return f"{self.notice_id}-{self.number}.xml"


def cap_identifier(sender: str, notice_id: str, number: int) -> str:
    """An identifier unique per sender and version, legal in CAP (no spaces, commas, & or <).

    A notice id is a slug, so only the sender could bring a forbidden character, and a valid sender has none.
    """
    return f"{sender}:{notice_id}:{number}"


def cap_time(moment: datetime) -> str:
    """``moment`` as CAP 1.2 writes a time: whole seconds and a numeric zone, UTC as -00:00 (never Z)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a CAP time needs its zone")
    offset = moment.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        # CAP's pattern has hours and minutes only
        moment = moment.astimezone(timezone.utc)
    text = moment.replace(microsecond=0).isoformat()
    return text[:-6] + "-00:00" if text.endswith("+00:00") else text


def cap_sender(notice: Notice, environ: Mapping[str, str] | None = None) -> str:
    """The CAP sender: the notice's ``cap_sender``, else BROADCAST_CAP_SENDER; ConfigError if neither is usable."""
    if notice.cap_sender:
        return notice.cap_sender
    value = (os.environ if environ is None else environ).get(SENDER_ENV, "")
    if not value:
        raise ConfigError(
            "no CAP sender: public alerts must say who publishes them, and nothing was written",
            field=SENDER_ENV,
            hint=f"set `cap_sender:` in the notice or {SENDER_ENV} in the environment, e.g. alerts@lakeside.example",
        )
    problem = cap_sender_problem(value)
    if problem:
        message, hint = problem
        raise ConfigError(f"{message}; nothing was written", field=SENDER_ENV, hint=hint)
    return value


def cap_alert(
    notice: Notice, release: Release, *, references: Sequence[Release] = (), source: str | Path | None = None
) -> bytes:
    """One CAP 1.2 alert for ``release`` of ``notice``, with one <info> per notice language.

    ``references`` are the earlier releases this one updates or cancels. ``source`` (the notice file) only makes
    errors name its line. Raises NoticeError when the notice cannot be published (no ``expires``), ConfigError for
    an unusable sender.
    """
    from lxml import etree

    _check_publishable(notice, release, references, source)
    E = _maker(CAP_NS)
    alert = E("alert")
    for tag, text in (
        ("identifier", release.identifier),
        ("sender", release.sender),
        ("sent", cap_time(release.sent)),
        ("status", "Actual"),
        ("msgType", release.msg_type),
        ("scope", "Public"),
    ):
        _sub(alert, CAP_NS, tag, text)
    if release.note:
        _sub(alert, CAP_NS, "note", release.note)
    if references:
        _sub(alert, CAP_NS, "references", " ".join(r.reference for r in references))
    # incidents groups every message about one notice, which is what a reader's "related alerts" shows
    _sub(alert, CAP_NS, "incidents", notice.id)
    for lang in notice.languages:
        _info(alert, notice, release, lang)
    return etree.tostring(alert, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _info(alert: _Element, notice: Notice, release: Release, lang: str) -> None:
    d = notice.default_language
    info = _sub(alert, CAP_NS, "info")
    _sub(info, CAP_NS, "language", lang)
    _sub(info, CAP_NS, "category", CATEGORY)
    # event is required: a headline of characters XML cannot carry would leave it empty
    headline = _XML_ILLEGAL.sub("", pick(notice.headline, lang, d) or "").strip() or notice.id
    _sub(info, CAP_NS, "event", headline)
    all_clear = release.phase == "all_clear" and release.msg_type != "Cancel"
    if all_clear:
        _sub(info, CAP_NS, "responseType", "AllClear")
    urgency, severity, certainty = ALL_CLEAR_SCALES if all_clear else SCALES[notice.severity]
    _sub(info, CAP_NS, "urgency", urgency)
    _sub(info, CAP_NS, "severity", severity)
    _sub(info, CAP_NS, "certainty", certainty)
    assert notice.expires is not None  # _check_publishable refused it
    _sub(info, CAP_NS, "expires", cap_time(notice.expires))
    _sub(info, CAP_NS, "senderName", pick(notice.organization.name, lang, d) or "")
    _sub(info, CAP_NS, "headline", headline)
    if release.msg_type == "Cancel":
        # a cancel retracts the earlier messages: it repeats what they were about, not what they said
        if release.note:
            _sub(info, CAP_NS, "description", release.note)
    else:
        _sub(info, CAP_NS, "description", pick(notice.summary, lang, d) or "")
        _sub(info, CAP_NS, "instruction", _instruction(notice, lang))
    if notice.organization.website:
        _sub(info, CAP_NS, "web", notice.organization.website)
    _sub(info, CAP_NS, "contact", _contact(notice, lang))
    if notice.area is not None:
        area = _sub(info, CAP_NS, "area")
        _sub(area, CAP_NS, "areaDesc", pick(notice.area.description, lang, d) or "")
        for polygon in notice.area.polygons:
            _sub(area, CAP_NS, "polygon", " ".join(polygon))
        for circle in notice.area.circles:
            _sub(area, CAP_NS, "circle", circle)
        for code in notice.area.geocodes:
            geocode = _sub(area, CAP_NS, "geocode")
            _sub(geocode, CAP_NS, "valueName", code.name)
            _sub(geocode, CAP_NS, "value", code.value)


def _instruction(notice: Notice, lang: str) -> str:
    """One line per routing entry: the need, then the channel to use for it and how to reach it."""
    d = notice.default_language
    lines = []
    for route in notice.routing:
        channel = notice.channel(route.channel)
        hours = pick(channel.hours, lang, d)
        lines.append(
            f"{pick(route.need, lang, d)}: {pick(channel.label, lang, d)}, {channel.contact}" + (f" ({hours})" if hours else "")
        )
    return "\n".join(lines)


def _contact(notice: Notice, lang: str) -> str:
    """The first phone line (else the first channel): who to call about the alert."""
    channel = next((c for c in notice.channels if c.kind == "phone"), notice.channels[0])
    return f"{pick(channel.label, lang, notice.default_language)}: {channel.contact}"


def _check_publishable(
    notice: Notice, release: Release, references: Sequence[Release], source: str | Path | None
) -> None:
    if notice.expires is None:
        raise NoticeError(
            "the notice has no `expires`: a public alert must say when it stops being true, so no CAP alert or feed "
            "was written",
            file=source,
            field="expires",
            hint="add e.g. `expires: 2026-11-30T18:00:00+03:00`: when the danger is expected to be over (an update "
            "can extend it)",
        )
    for sender in {release.sender, *(r.sender for r in references)}:
        problem = cap_sender_problem(sender)
        if problem:
            message, hint = problem
            raise ConfigError(f"{message}; nothing was written", field="cap_sender", hint=hint)
    if release.notice_id != notice.id:
        raise ValueError(f"release of {release.notice_id!r} given with notice {notice.id!r}")
    for earlier in references:
        if earlier.sent > release.sent:
            raise ValueError(f"reference {earlier.identifier!r} was sent after {release.identifier!r}")


# -- the folder: CAP files and the Atom feed ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One CAP file in the folder, as the Atom feed lists it."""

    file: Path
    identifier: str
    sender: str
    sent: datetime
    #: what a reader sees it as: Alert, Update, All clear or Cancel
    kind: str
    headline: str
    sender_name: str
    #: how later alerts name this one: ``sender,identifier,sent`` as its own file writes them
    reference: str
    references: frozenset[str]


def write_feed(
    notice: Notice,
    out_dir: str | Path,
    release: Release,
    *,
    earlier: Sequence[Release] = (),
    now: datetime,
    base_url: str | None = None,
    source: str | Path | None = None,
) -> list[Path]:
    """Write ``out_dir/cap/<notice-id>-<n>.xml`` for ``release`` and rewrite ``out_dir/feed.atom``; return both paths.

    ``earlier`` are the notice's releases before this one (they become <references>). ``now`` decides which
    superseded alerts the feed still lists. ``base_url`` is where ``out_dir`` is published, for absolute links.
    Everything is built and checked before anything is written, and each file is replaced atomically: a bad
    notice or sender raises a BroadcastError and leaves the folder as it was.
    """
    out = Path(out_dir)
    alert = cap_alert(notice, release, references=earlier, source=source)
    cap_path = out / "cap" / release.file_name
    try:
        existing = cap_path.read_bytes()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {cap_path}: {exc.strerror}", file=cap_path, hint="check the feed folder's permissions"
        ) from None
    if existing is not None and existing != alert:
        raise ConfigError(
            f"{cap_path.name} already holds a different alert with identifier {shown(release.identifier)}; a published "
            "CAP message never changes, so nothing was written",
            file=cap_path,
            hint="send the change as a new version of the notice, which gets the next number",
        )
    entries = [e for e in _entries(out / "cap") if e.file.name != cap_path.name]
    entries.append(_entry(cap_path, alert))
    # the feed is the publisher's: titled with the organization of the notice being published
    title = pick(notice.organization.name, notice.default_language, notice.default_language) or release.sender
    feed = atom_feed(entries, now=now, title=title, feed_id=_feed_id(release.sender, base_url), base_url=base_url)
    feed_path = out / "feed.atom"
    if existing is None:
        _write_atomic(cap_path, alert)
    _write_atomic(feed_path, feed)
    return [cap_path, feed_path]


def atom_feed(
    entries: Sequence[FeedEntry], *, now: datetime, title: str, feed_id: str, base_url: str | None = None
) -> bytes:
    """An Atom (RFC 4287) feed of the current alerts and those superseded less than SUPERSEDED_KEPT ago.

    An alert is superseded once a later one names it in <references>. When the feed would be MAX_FEED_BYTES or
    more, the oldest superseded alerts go first; current alerts always stay.
    """
    successors: dict[str, datetime] = {}
    for entry in entries:
        for ref in entry.references:
            successors[ref] = min(entry.sent, successors.get(ref, entry.sent))
    kept = [e for e in entries if e.reference not in successors or now - successors[e.reference] < SUPERSEDED_KEPT]
    superseded = sorted((e for e in kept if e.reference in successors), key=lambda e: e.sent)
    while True:
        feed = _atom(kept, title=title, feed_id=feed_id, base_url=base_url, now=now)
        if len(feed) < MAX_FEED_BYTES or not superseded:
            return feed
        # drop as many of the oldest as the excess needs, then measure again (the feed's own `updated` may change)
        excess = len(feed) - MAX_FEED_BYTES + 1
        while superseded and excess > 0:
            dropped = superseded.pop(0)
            kept.remove(dropped)
            excess -= len(_atom([dropped], title=title, feed_id=feed_id, base_url=base_url, now=now)) - len(
                _atom([], title=title, feed_id=feed_id, base_url=base_url, now=now)
            )


def _atom(entries: Sequence[FeedEntry], *, title: str, feed_id: str, base_url: str | None, now: datetime) -> bytes:
    from lxml import etree

    ordered = sorted(entries, key=lambda e: (e.sent, e.identifier), reverse=True)
    feed = _maker(ATOM_NS)("feed")
    _sub(feed, ATOM_NS, "id", feed_id)
    _sub(feed, ATOM_NS, "title", title)
    # the newest alert's time: the feed changes only when an alert is added or dropped
    _sub(feed, ATOM_NS, "updated", _atom_time(ordered[0].sent if ordered else now))
    author = _sub(feed, ATOM_NS, "author")
    _sub(author, ATOM_NS, "name", title)
    if base_url:
        _link(feed, _url(base_url, "feed.atom"), "self", "application/atom+xml")
    for entry in ordered:
        item = _sub(feed, ATOM_NS, "entry")
        _sub(item, ATOM_NS, "id", _entry_id(entry))
        _sub(item, ATOM_NS, "title", entry.headline)
        _sub(item, ATOM_NS, "updated", _atom_time(entry.sent))
        if entry.sender_name:
            _sub(_sub(item, ATOM_NS, "author"), ATOM_NS, "name", entry.sender_name)
        href = f"cap/{entry.file.name}"
        _link(item, _url(base_url, href) if base_url else href, "alternate", CAP_MEDIA_TYPE)
        _sub(item, ATOM_NS, "summary", f"{entry.kind}: {entry.headline}")
    return etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _entries(cap_dir: Path) -> list[FeedEntry]:
    if not cap_dir.is_dir():
        return []
    entries = []
    for path in sorted(cap_dir.glob("*.xml")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {path.name}: {exc.strerror}, so the feed was not written",
                file=path,
                hint="check the feed folder's permissions",
            ) from None
        entries.append(_entry(path, data))
    return entries


def _entry(path: Path, data: bytes) -> FeedEntry:
    from lxml import etree

    def problem(what: str) -> ConfigError:
        return ConfigError(
            f"{path.name} in the feed folder is not a CAP 1.2 alert ({what}), so the feed was not written",
            file=path,
            hint="the cap/ folder holds only the alerts broadcast writes: move that file elsewhere",
        )

    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise problem(shown(str(exc), quote=False)) from None
    if root.tag != f"{{{CAP_NS}}}alert":
        raise problem(f"its root is {shown(root.tag)}")
    ns = {"c": CAP_NS}

    def text(xpath: str) -> str:
        found = root.xpath(f"string({xpath})", namespaces=ns)
        return str(found).strip()

    try:
        sent = datetime.fromisoformat(text("c:sent"))
    except ValueError:
        raise problem("no valid <sent>") from None
    identifier, sender = text("c:identifier"), text("c:sender")
    if not identifier or not sender or sent.tzinfo is None:
        raise problem("no identifier, sender or sent time")
    return FeedEntry(
        file=path,
        identifier=identifier,
        sender=sender,
        sent=sent,
        kind="All clear" if text("c:info[1]/c:responseType[.='AllClear']") else text("c:msgType"),
        headline=text("c:info[1]/c:headline") or identifier,
        sender_name=text("c:info[1]/c:senderName"),
        reference=f"{sender},{identifier},{text('c:sent')}",
        references=frozenset(text("c:references").split()),
    )


def _parser() -> XMLParser:
    from lxml import etree

    # the folder may hold files we did not write: never fetch or expand anything they point to
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _entry_id(entry: FeedEntry) -> str:
    # an Atom id must be an absolute IRI, stable for the alert: a name-based UUID of its CAP sender and identifier
    return uuid.uuid5(uuid.NAMESPACE_URL, f"cap:{entry.sender},{entry.identifier}").urn


def _feed_id(sender: str, base_url: str | None) -> str:
    return _url(base_url, "feed.atom") if base_url else uuid.uuid5(uuid.NAMESPACE_URL, f"cap-feed:{sender}").urn


def _url(base: str | None, path: str) -> str:
    return f"{(base or '').rstrip('/')}/{path}"


def _atom_time(moment: datetime) -> str:
    # RFC 3339, in UTC: feed readers sort on it
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _maker(namespace: str) -> Callable[[str], _Element]:
    """A root element factory whose namespace is the default one, so the XML reads <alert>, not <ns0:alert>."""
    from lxml import etree

    def make(tag: str) -> _Element:
        return etree.Element(f"{{{namespace}}}{tag}", nsmap={None: namespace})

    return make


def _sub(parent: _Element, namespace: str, tag: str, text: str | None = None) -> _Element:
    from lxml import etree

    element = etree.SubElement(parent, f"{{{namespace}}}{tag}")
    if text is not None:
        # XML 1.0 cannot carry most control characters; a stray one in a notice text must not stop a public alert
        element.text = _XML_ILLEGAL.sub("", text)
    return element


def _link(parent: _Element, href: str, rel: str, media_type: str) -> None:
    from lxml import etree

    etree.SubElement(parent, f"{{{ATOM_NS}}}link", href=href, rel=rel, type=media_type)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` so that a reader sees the old file or the new one, never half of it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False)
        try:
            with handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}", file=path, hint="check that the feed folder exists and is writable"
        ) from None
