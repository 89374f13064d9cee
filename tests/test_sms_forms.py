"""The SMS that fits: the template steps down through its forms until the text fits --max-sms-segments."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast.channels.twilio import LONG_NAME
from broadcast.check import check
from broadcast.cli import main
from broadcast.errors import TemplateError
from broadcast.message import personalize
from broadcast.notice import Notice, load_notice
from broadcast.render import Templates, bare_url, missing_contacts, render_notice
from broadcast.segments import count_segments
from tests.conftest import CONTACTS, EXAMPLE, REPO, STORM
from tests.fakes.fixtures import use_fakes

TEMPLATES = Templates()


def run(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def sms(notice: Notice, *, update: bool = False, limit: int | None = 3, templates: Templates = TEMPLATES):  # noqa: ANN201
    updated = [("sms", lang) for lang in notice.languages] if update else []
    return render_notice(notice, templates, channels=["sms"], updated=updated, sms_max_segments=limit)


@pytest.fixture()
def custom_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(REPO / "templates", target)
    return target


FIVE_CHANNELS = REPO / "tests" / "data" / "notices" / "five-channels.yaml"


@pytest.mark.parametrize("path", [EXAMPLE, STORM, FIVE_CHANNELS], ids=["boil-water", "storm-outage", "five-channels"])
@pytest.mark.parametrize("update", [False, True], ids=["first", "update"])
def test_shipped_examples_fit_three_segments_in_every_language(path: Path, update: bool) -> None:
    notice = load_notice(path)
    renders = sms(notice, update=update)
    for lang in notice.languages:
        text = renders.get("sms", lang).text
        assert count_segments(text).segments <= 3, (lang, text)
        assert missing_contacts(renders.get("sms", lang), notice) == []
        assert text.startswith(("UPDATE", "SASISHO", "POSODOBITEV", "تحديث")) == update
    # before: the full form is 3-11 segments; the forms are what makes the difference
    full = sms(notice, update=update, limit=None)
    assert max(count_segments(full.get("sms", lang).text).segments for lang in notice.languages) >= 9
    assert json.loads(run("check", path, "--json").stdout)["warnings"] == []


def test_check_json_says_which_form_each_language_used_and_warns_of_nothing() -> None:
    result = run("check", STORM, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {r["language"]: r for r in data["renderings"] if r["channel"] == "sms"}
    assert {lang: row["form"] for lang, row in rows.items()} == {"en": 3, "sw": 4, "sl": 6, "ar": 6}
    assert all(row["segments"] <= 3 for row in rows.values())
    assert not [w for w in data["warnings"] if w.startswith("sms")]
    # a roomier limit sends the full form
    roomy = json.loads(run("check", STORM, "--json", "--max-sms-segments", "20").stdout)
    assert {r["form"] for r in roomy["renderings"] if r["channel"] == "sms"} == {1}


def test_the_text_report_says_the_sms_was_shortened() -> None:
    result = run("check", STORM)
    assert result.exit_code == 0, result.output
    assert re.search(r"sms\s+sl\s+\d+ chars, UCS-2, 3 segment\(s\), shortened to form 6", result.output)


def test_preview_page_shows_the_form(tmp_path: Path) -> None:
    result = run("preview", STORM, "--contacts", CONTACTS, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "p" / "index.html").read_text(encoding="utf-8")
    assert re.search(r'id="panel-sms-sl"[^>]*data-form="6"', page)
    assert "Form 6: shortened to fit 3 segments" in page
    # the header, then one line per channel: the first with its needs
    assert len((tmp_path / "p" / "sms" / "sl.txt").read_text(encoding="utf-8").splitlines()) == 1 + 5


def test_live_send_of_the_example_needs_no_force(monkeypatch: pytest.MonkeyPatch, twilio_fake) -> None:  # noqa: ANN001
    use_fakes(monkeypatch, twilio=twilio_fake)
    result = run("send", EXAMPLE, "--contacts", CONTACTS, "--channel", "sms", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert len(twilio_fake.deliveries) == 8  # row 13, a London landline, gets no SMS
    for delivery in twilio_fake.deliveries:
        assert count_segments(delivery.payload["body"]).segments <= 3


def test_every_form_names_every_channel_and_the_first_channels_needs() -> None:
    notice = load_notice(STORM)
    renders = sms(notice, update=True)
    first = notice.channels[0]
    for lang, forms in renders.forms["sms"].items():
        assert sorted(forms) == [1, 2, 3, 4, 5, 6, 7]
        for form, variants in forms.items():
            for rendering in variants.values():
                assert rendering.form == form
                assert missing_contacts(rendering, notice) == [], (lang, form)
                for route in notice.routing:
                    if route.channel == first.id:
                        assert route.need[lang] in rendering.text, (lang, form)
        # each form is shorter than the one before
        lengths = [len(forms[f][""].text) for f in sorted(forms)]
        assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) == len(lengths), (lang, lengths)


def test_right_to_left_contacts_stay_isolated_in_every_form() -> None:
    notice = load_notice(STORM)
    forms = sms(notice, update=True).forms["sms"]["ar"]
    for form, variants in forms.items():
        lines = variants[""].text.splitlines()
        for channel in notice.channels:
            shown = channel.contact if form < 3 else bare_url(channel.contact)
            line = next(line for line in lines if shown in line)
            # LRI before the contact; PDI after it unless the line ends there (a line's end closes the isolate)
            assert "\u2066" + shown in line, (form, line)
            assert line.endswith(shown) or "\u2066" + shown + "\u2069" in line, (form, line)


def test_an_update_that_would_not_fit_is_a_warning_at_check(tmp_path: Path) -> None:
    data = yaml.safe_load(FIVE_CHANNELS.read_text(encoding="utf-8"))
    # fits 3 segments as a first send even in the shortest form, but not with the update word in front
    data["headline"]["ar"] = "فيضانات قرب النهر، وإمدادات المياه في خطر شديد ومحطة الضخ متوقفة"
    path = tmp_path / "notice.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    notice = load_notice(path)
    assert count_segments(sms(notice).get("sms", "ar").text).segments <= 3
    assert count_segments(sms(notice, update=True).get("sms", "ar").text).segments > 3
    warnings = json.loads(run("check", path, "--json").stdout)["warnings"]
    assert [w for w in warnings if w.startswith("sms")] == [w for w in warnings if w.startswith("sms (ar, update)")] != []
    assert "a live send of an edited notice would refuse" in warnings[-1]


def test_short_forms_drop_https_but_keep_the_link(tmp_path: Path) -> None:
    notice = load_notice(EXAMPLE)
    renders = sms(notice)
    sw = renders.get("sms", "sw")
    assert sw.form >= 3 and "https://" not in sw.text and "lakeside.example/chat" in sw.text
    assert bare_url("https://a.example/x/") == "a.example/x" and bare_url("http://a.example") == "http://a.example"


def test_the_update_prefix_is_counted_when_choosing_the_form() -> None:
    notice = load_notice(STORM)
    first, update = sms(notice).get("sms", "en"), sms(notice, update=True).get("sms", "en")
    # the first send fills 3 segments exactly; the update's prefix would push that form over, so it steps down
    assert count_segments(first.text).segments == 3 and update.form > first.form
    assert count_segments(update.text).segments <= 3
    assert count_segments(sms(notice, update=True).forms["sms"]["en"][first.form][""].text).segments > 3


def test_a_template_that_greets_by_name_is_chosen_with_room_for_a_long_name(custom_templates: Path) -> None:
    template = custom_templates / "sms.txt.j2"
    source = template.read_text(encoding="utf-8")
    template.write_text(source.replace(
        '{%- set severity = t["severity_" ~ notice.severity] | upper +%}',
        '{%- set severity = t["severity_" ~ notice.severity] | upper +%}\n{% if contact.name %}{{ contact.name }}:{% endif %}',
    ), encoding="utf-8")
    notice = load_notice(EXAMPLE)
    plain = sms(notice)
    named = sms(notice, templates=Templates(custom_templates))
    # English fills 3 segments in the full form: with a long name it would not, so it goes one form down
    assert plain.get("sms", "en").form == 1 and named.get("sms", "en").form > 1
    long_named = personalize(named.get("sms", "en"), {"name": LONG_NAME})
    assert LONG_NAME in long_named.text and count_segments(long_named.text).segments <= 3
    # without a name the same form goes out
    assert named.get("sms", "en", "noname").form == named.get("sms", "en").form


def test_check_fails_when_one_form_leaves_out_a_channel(custom_templates: Path) -> None:
    template = custom_templates / "sms.txt.j2"
    source = template.read_text(encoding="utf-8")
    # form 6 leaves out the last channel: the full form, sent at a roomy limit, still names them all
    template.write_text(
        source.replace("{% for channel in notice.channels +%}", "{% for channel in (notice.channels[:-1] if form == 6 else notice.channels) +%}"),
        encoding="utf-8",
    )
    with pytest.raises(TemplateError) as info:
        check(EXAMPLE, templates_dir=custom_templates, max_sms_segments=20)
    assert "sms (en, form 6) leaves out email: help@lakeside.example" in info.value.message
    result = run("check", EXAMPLE, "--templates", custom_templates, "--max-sms-segments", "20")
    assert result.exit_code == 2 and "form 6" in result.output and "Traceback" not in result.output


def test_a_notice_that_cannot_fit_even_the_shortest_form_is_refused_by_check_and_by_a_live_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, twilio_fake  # noqa: ANN001
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["headline"]["sl"] = "Vodo iz pipe pred uporabo prekuhajte, ker smo v severnem delu omrežja našli bakterije"
    data["routing"][0]["need"]["sl"] = "Počena cev, poplava v kleti, bolezen po pitju vode ali vprašanja o zdravju"
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    # check means send: check shows the warning and exits as the live send will (2), unless --force
    assert run("check", path, "--force").exit_code == 0
    result = run("check", path, "--json")
    assert result.exit_code == 2
    warnings = json.loads(result.stdout)["warnings"]
    assert any(w.startswith("sms (sl)") and "even in the SMS template's shortest form (7)" in w for w in warnings), warnings
    use_fakes(monkeypatch, twilio=twilio_fake)
    refused = run("send", path, "--contacts", CONTACTS, "--channel", "sms", "--yes")
    assert refused.exit_code == 2 and "sl: 4 segments" in refused.output and twilio_fake.deliveries == []


# -- property: any notice of usual size fits ----------------------------------------------------

GSM_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ALPHABETS = {
    "en": GSM_LETTERS + "0123456789 .,-'",
    "sw": GSM_LETTERS + "0123456789 .,-'",
    "sl": GSM_LETTERS + "čšžČŠŽ0123456789 .,-",
    "ar": "".join(chr(c) for c in range(0x0621, 0x064B)) + "٠١٢٣ ،.",
}


def words(lang: str, max_size: int, min_size: int = 1) -> st.SearchStrategy[str]:
    """A text of ``min_size``..``max_size`` characters with no space at either end (the renderer strips lines).

    The length is drawn first, so long texts come up as often as short ones: the envelope's edge is what counts.
    """
    alphabet = ALPHABETS[lang]
    letters = alphabet.replace(" ", "")

    def of_length(n: int) -> st.SearchStrategy[str]:
        if n < 3:
            return st.text(letters, min_size=n, max_size=n)
        ends = st.sampled_from(letters)
        return st.builds(lambda a, middle, b: a + middle + b, ends, st.text(alphabet, min_size=n - 2, max_size=n - 2), ends)

    return st.integers(max(1, min_size), max_size).flatmap(of_length)


@st.composite
def contact(draw: st.DrawFn, kind: str, shown: int) -> str:
    """A contact of the given kind that shows as ``shown`` characters in an SMS (a link without its https://)."""
    if kind == "phone":
        # a number phonenumbers accepts (the notice checks support contacts), spaced out to the length wanted
        digits = st.text("0123456789", min_size=8, max_size=8)
        number = "+2547" + draw(digits) if shown >= 13 else "+3861" + draw(st.sampled_from("2345")) + draw(digits)[:6]
        spaces = draw(st.lists(st.integers(4, len(number) - 1), min_size=shown - len(number), max_size=shown - len(number)))
        for at in sorted(spaces, reverse=True):
            number = number[:at] + " " + number[at:]
        return number
    if kind == "web":
        path = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=shown - 11, max_size=shown - 11))
        return f"https://a.example/{path}x"
    if kind == "email":
        # no dots: a valid address (the notice checks it) never has two in a row or one before the @
        local = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=shown - 11, max_size=shown - 11))
        return f"x{local}@b.example"
    street = draw(st.text(GSM_LETTERS + " ,0123456789", min_size=shown - 2, max_size=shown - 2))
    return f"A{street}1"


KINDS = {"phone": "phone", "web": "web", "email": "email", "in_person": "address"}


@st.composite
def notices(draw: st.DrawFn, *, ucs2: bool) -> Notice:
    """Notices within the envelope: GSM-7 (en, sw) as the brief states it; UCS-2 (sl, ar) within what 201 units hold."""
    langs = ["sl", "ar"] if ucs2 else ["en", "sw"]
    n = draw(st.integers(1, 5))
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=n, max_size=n))
    if ucs2:
        # all contacts together at most 85 characters as shown, each at least 12
        budget, shown = 85, []
        for i in range(n):
            most = min(40, budget - 12 * (n - i - 1))
            shown.append(draw(st.integers(12, most)))
            budget -= shown[-1]
    else:
        shown = draw(st.lists(st.integers(12, 40), min_size=n, max_size=n))
    contacts = [draw(contact(KINDS[k], s)) for k, s in zip(kinds, shown)]
    headline_max, org_max, need_max = (40, 20, 30) if ucs2 else (80, 30, 40)

    def text(max_size: int, min_size: int = 1) -> dict[str, str]:
        return {lang: draw(words(lang, max_size, min_size)) for lang in langs}

    channels = [
        {"id": f"c{i}", "kind": kind, "label": text(30), "contact": contacts[i], "hours": text(30)}
        for i, kind in enumerate(kinds)
    ]
    needs_first = draw(st.integers(1, 1 if ucs2 else 2))
    routing = [{"need": text(need_max), "channel": "c0"} for _ in range(needs_first)]
    routing += [{"need": text(40), "channel": f"c{i}"} for i in range(1, n) if draw(st.booleans())]
    return Notice.model_validate({
        "id": "generated",
        "severity": draw(st.sampled_from(["info", "advisory", "urgent", "emergency"])),
        "languages": langs,
        "organization": {"name": draw(words("en", org_max)), "website": "https://org.example"},
        "headline": text(headline_max),
        "summary": text(160, 100),
        "channels": channels,
        "routing": routing,
    })


def assert_fits(notice: Notice) -> None:
    renders = sms(notice, update=True)
    for lang in notice.languages:
        rendering = renders.get("sms", lang)
        assert count_segments(rendering.text).segments <= 3, (lang, rendering.form, rendering.text)
        assert missing_contacts(rendering, notice) == [], (lang, rendering.text)
        for route in notice.routing:
            if route.channel == notice.channels[0].id:
                assert route.need[lang] in rendering.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notices(ucs2=False))
def test_any_usual_notice_fits_three_segments_in_gsm7_languages(notice: Notice) -> None:
    assert_fits(notice)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notices(ucs2=True))
def test_any_usual_notice_fits_three_segments_in_ucs2_languages(notice: Notice) -> None:
    assert_fits(notice)
