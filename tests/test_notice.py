"""The notice loader: valid notices load, and every invalid one names file, line, field and a fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from broadcast.errors import NoticeError
from broadcast.message import CONTACT_FIELDS, placeholder
from broadcast.notice import (
    ANY_LANGUAGE,
    RESERVED_TOKEN,
    load_notice,
    localize,
    missing_translations,
    resolve_language,
)
from broadcast.render import Templates, render_notice

DATA = Path(__file__).parent / "data" / "notices"
MINIMAL = (DATA / "minimal.yaml").read_text(encoding="utf-8")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notice.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_notice_loads_and_plain_strings_mean_every_language() -> None:
    notice = load_notice(DATA / "minimal.yaml")
    assert notice.id == "water-test"
    assert notice.default_language == "en"
    assert notice.channels[1].hours == {ANY_LANGUAGE: "Any time"}
    local = localize(notice, "sl")
    assert local.headline == "Pred pitjem vodo prekuhajte"
    assert local.channels[1].hours == "Any time"
    assert local.routing[1].channel.contact == "+386 1 555 0100"
    assert local.channels[0].href == "tel:+38615550100"


def test_routing_to_unknown_channel_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("channel: portal", "channel: portl"))
    with pytest.raises(NoticeError) as info:
        load_notice(path)
    err = info.value
    assert "portl" in err.message and "known: hotline, portal" in err.message
    assert err.file == str(path)
    assert (err.row, err.field) == (20, "routing[0].channel")
    assert "channels:" in err.hint


@pytest.mark.parametrize(
    ("edit", "row", "field", "words"),
    [
        (lambda s: s.replace("id: portal", "id: hotline"), 13, "channels[1].id", "already used by channels[0]"),
        (lambda s: s + "social:\n  languages: [sl, de]\n", 25, "social.languages", "'de'"),
    ],
)
def test_cross_field_errors_name_the_field_and_line(
    tmp_path: Path, edit: Callable[[str], str], row: int, field: str, words: str
) -> None:
    # these are found by a model validator after every field is valid, yet must point at the line to change
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, edit(MINIMAL)))
    err = info.value
    assert (err.row, err.field) == (row, field)
    assert words in err.message and err.hint


def test_missing_translation_lists_field_and_language_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('label: {en: Emergency line, sl: Nujna linija}', "label: {en: Emergency line}"))
    with pytest.raises(NoticeError) as info:
        load_notice(path)
    err = info.value
    assert "channels[0].label × sl" in err.message
    assert err.row == 10
    assert "fallback: default" in err.hint


def test_fallback_default_allows_missing_translation(tmp_path: Path) -> None:
    text = MINIMAL.replace("label: {en: Emergency line, sl: Nujna linija}", "label: {en: Emergency line}")
    notice = load_notice(write(tmp_path, text + "fallback: default\n"))
    assert missing_translations(notice) == [("channels[0].label", "sl")]
    assert localize(notice, "sl").channels[0].label == "Emergency line"


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda s: s.replace("severity: urgent", "severity: panic"), "severity", "panic"),
        (lambda s: s.replace("id: water-test", "id: Water Test!"), "id", "slug"),
        (lambda s: s.replace("kind: phone", "kind: pigeon"), "channels[0].kind", "pigeon"),
        (lambda s: s.replace("headline:", "headlin:"), None, "required"),
        (lambda s: s.replace("languages: [en, sl]", "languages: [en, en]"), "languages", "twice"),
        (lambda s: s.replace("languages: [en, sl]", "languages: English"), "languages", "list"),
        (lambda s: s.replace("    channel: hotline\n", ""), "routing[1].channel", "required"),
    ],
)
def test_invalid_fields_name_the_field(tmp_path: Path, edit, field, words) -> None:  # noqa: ANN001
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, edit(MINIMAL)))
    text = str(info.value)
    assert words in text
    if field:
        assert f"'{field}'" in text
    assert info.value.hint


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, MINIMAL.replace('hours: Any time', 'hours: [Any time')))
    assert "not valid YAML" in info.value.message
    assert info.value.row is not None and info.value.row >= 17


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "empty"), ("- a\n- b\n", "mapping"), ("# only a comment\n", "empty")],
)
def test_empty_or_wrong_shape(tmp_path: Path, content: str, words: str) -> None:
    with pytest.raises(NoticeError, match=words):
        load_notice(write(tmp_path, content))


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(NoticeError, match="not found"):
        load_notice(tmp_path / "nope.yaml")
    with pytest.raises(NoticeError, match="folder"):
        load_notice(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("izkušnje", "izku\u0161nje").encode("utf-8").replace("š".encode(), b"\xe8"))
    with pytest.raises(NoticeError, match="UTF-8"):
        load_notice(path)


# -- per-recipient tokens in notice text --------------------------------------------------------------


def test_every_placeholder_render_fills_in_is_a_reserved_token() -> None:
    for name in CONTACT_FIELDS:
        for html_part in (False, True):
            assert RESERVED_TOKEN.fullmatch(placeholder(name, html_part=html_part))


@pytest.mark.parametrize(
    ("edit", "row", "field"),
    [
        (lambda s: s.replace('{en: "Tap water', '{en: "Dear %%name%%, tap water'), 6, "summary.en"),
        (lambda s: s.replace('sl: "Pred pitjem', 'sl: "%%name:html%% pred pitjem'), 5, "headline.sl"),
        (lambda s: s.replace("hours: Any time", "hours: Any time, %%name%%"), 17, "channels[1].hours"),
        # not only translated texts: a contact or a website is printed into the email HTML too
        (lambda s: s.replace("contact: https://lakeside-water.example/portal",
                             "contact: https://lakeside-water.example/%%name:html%%"), 16, "channels[1].contact"),
        (lambda s: s.replace("website: https://lakeside-water.example}",
                             "website: https://lakeside-water.example/%%NAME%%}"), 4, "organization.website"),
    ],
)
def test_a_per_recipient_token_in_notice_text_is_refused(
    tmp_path: Path, edit: Callable[[str], str], row: int, field: str
) -> None:
    text = edit(MINIMAL)
    assert text != MINIMAL
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, text))
    err = info.value
    assert (err.row, err.field) == (row, field)
    assert "%%" in err.message and "reserved" in err.message
    assert "{{ contact.name }}" in err.hint


def test_every_text_with_a_token_is_listed(tmp_path: Path) -> None:
    text = MINIMAL.replace('{en: "Tap water', '{en: "Dear %%name%%, tap water')
    text = text.replace("hours: Any time", "hours: '%%x%%'")
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, text))
    assert "line 6, field 'summary.en': %%name%%" in info.value.message
    assert "line 17, field 'channels[1].hours': %%x%%" in info.value.message


@pytest.mark.parametrize("words", ["Up to 100% of homes", "50 % less, 20 %% more", "100%%", "%% name %%"])
def test_percent_signs_that_are_no_token_are_fine(tmp_path: Path, words: str) -> None:
    notice = load_notice(write(tmp_path, MINIMAL.replace("Tap water may be unsafe", words)))
    assert words in notice.summary["en"]


# -- duplicate keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "row", "field", "lines"),
    [
        (lambda s: s + "headline: Pasted again\n", 24, "headline", "lines 5 and 24"),
        # quoting a key does not make it another key
        (lambda s: s.replace("summary:", '"summary":', 1) + "summary: Again\n", 24, "summary", "lines 6 and 24"),
        (lambda s: s.replace("    kind: web\n", "    kind: web\n    kind: phone\n"), 15, "channels[1].kind",
         "lines 14 and 15"),
        (lambda s: s.replace("sl: Nujna linija}", "sl: Nujna linija, en: Hotline}"), 10, "channels[0].label.en",
         "both are on line 10"),
    ],
)
def test_a_key_written_twice_is_an_error_naming_both_lines(
    tmp_path: Path, edit: Callable[[str], str], row: int, field: str, lines: str
) -> None:
    text = edit(MINIMAL)
    assert text != MINIMAL
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, text))
    err = info.value
    assert (err.row, err.field) == (row, field)
    assert "twice" in err.message
    assert err.hint.startswith("remove one of the two") and lines in err.hint


def test_a_yaml_merge_may_override_the_keys_it_brings(tmp_path: Path) -> None:
    # `<<: *hotline` brings id, kind, contact ... which the second channel then overrides: not a duplicate
    text = MINIMAL.replace("  - id: hotline\n", "  - &hotline\n    id: hotline\n").replace(
        "  - id: portal\n", "  - <<: *hotline\n    id: portal\n"
    )
    notice = load_notice(write(tmp_path, text))
    assert [c.id for c in notice.channels] == ["hotline", "portal"]
    assert notice.channels[1].kind == "web" and notice.channels[1].contact.endswith("/portal")


@pytest.mark.parametrize(
    "text", ["? [a, b]\n: x\n", "? [a]\n: 1\n? [a]\n: 2\n", "? {a: 1}\n: x\nid: y\n", "1: a\n1: b\n", "1: a\n2: b\n"]
)
def test_keys_that_are_not_text_are_refused_without_a_crash(tmp_path: Path, text: str) -> None:
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, text))
    assert info.value.hint


def test_deeply_nested_yaml_is_a_notice_error(tmp_path: Path) -> None:
    with pytest.raises(NoticeError, match="nested too deeply"):
        load_notice(write(tmp_path, "id: x\nheadline: " + "[" * 5000 + "\n"))


# -- emergency override of suppressions ---------------------------------------------------------------


def test_override_suppressions_defaults_to_off(tmp_path: Path) -> None:
    assert load_notice(write(tmp_path, MINIMAL)).override_suppressions is False
    emergency = MINIMAL.replace("severity: urgent", "severity: emergency")
    assert load_notice(write(tmp_path, emergency)).override_suppressions is False


def test_an_emergency_notice_may_override_suppressions(tmp_path: Path) -> None:
    text = MINIMAL.replace("severity: urgent", "severity: emergency\noverride_suppressions: true")
    notice = load_notice(write(tmp_path, text))
    assert notice.severity == "emergency" and notice.override_suppressions is True


@pytest.mark.parametrize("severity", ["info", "advisory", "urgent"])
def test_override_suppressions_needs_an_emergency(tmp_path: Path, severity: str) -> None:
    text = MINIMAL.replace("severity: urgent", f"severity: {severity}\noverride_suppressions: true")
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, text))
    err = info.value
    assert (err.row, err.field) == (3, "override_suppressions")
    assert severity in err.message and "severity: emergency" in err.hint


def test_override_suppressions_off_is_fine_at_any_severity(tmp_path: Path) -> None:
    notice = load_notice(write(tmp_path, MINIMAL + "override_suppressions: false\n"))
    assert notice.severity == "urgent" and notice.override_suppressions is False


def test_override_suppressions_must_be_yes_or_no(tmp_path: Path) -> None:
    text = MINIMAL.replace("severity: urgent", "severity: emergency\noverride_suppressions: sometimes")
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, text))
    assert (info.value.row, info.value.field) == (3, "override_suppressions")


def test_turning_the_override_on_keeps_the_notice_version(tmp_path: Path) -> None:
    # the version keys the ledger: a new one would send the notice again, as an update, to everyone already reached
    emergency = MINIMAL.replace("severity: urgent", "severity: emergency")
    templates = Templates()
    before = render_notice(load_notice(write(tmp_path, emergency)), templates).versions
    after = render_notice(load_notice(write(tmp_path, emergency + "override_suppressions: true\n")), templates).versions
    assert before == after


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("sl", ("sl", "exact")),
        ("sl-SI", ("sl", "base")),
        ("SL", ("sl", "exact")),
        ("de", ("en", "default")),
        ("", ("en", "unset")),
        ("pt-BR", ("pt-BR", "exact")),
        ("pt-PT", ("en", "default")),
    ],
)
def test_language_fallback_chain(tag: str, expected: tuple[str, str]) -> None:
    assert resolve_language(tag, ["en", "sl", "pt-BR"]) == expected
