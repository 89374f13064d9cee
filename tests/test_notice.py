"""The notice loader: valid notices load, and every invalid one names file, line, field and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcast.errors import NoticeError
from broadcast.notice import ANY_LANGUAGE, load_notice, localize, missing_translations, resolve_language

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
