"""Rendering: every channel in every language, sandboxed, escaped, and never leaving out a support channel."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pytest

from broadcast.channels.x import XChannel
from broadcast.errors import TemplateError
from broadcast.message import Rendering, personalize, placeholder
from broadcast.notice import load_notice
from broadcast.render import (
    NO_NAME,
    Templates,
    missing_contacts,
    render_notice,
)
from broadcast.text import split_thread, weighted_length

X_LIMIT = XChannel.max_post_weight
from tests.conftest import EXAMPLE, REPO, STORM


@pytest.fixture()
def custom_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(REPO / "templates", target)
    return target


@pytest.mark.parametrize("path", [EXAMPLE, STORM], ids=["boil-water", "storm-outage"])
def test_every_channel_and_language_names_every_support_channel(path: Path) -> None:
    notice = load_notice(path)
    renders = render_notice(notice, Templates())
    expected = {("social", lang) for lang in notice.social_languages}
    expected |= {(c, lang) for c in ("email", "sms", "web") for lang in notice.languages}
    expected |= {("team", notice.default_language)}  # staff read the notice's first language
    assert {(c, lang) for (c, lang, _) in renders.renderings} == expected
    for rendering in renders.renderings.values():
        assert missing_contacts(rendering, notice) == [], (rendering.channel, rendering.language)
    for post in renders.get("social", notice.default_language).posts:
        assert weighted_length(post) <= 280


def test_email_html_has_language_and_direction() -> None:
    renders = render_notice(load_notice(STORM), Templates())
    assert 'lang="ar"' in renders.get("email", "ar").html and 'dir="rtl"' in renders.get("email", "ar").html
    assert 'dir="ltr"' in renders.get("email", "sl").html
    # the plain-text part is in the same language as the HTML part
    assert renders.get("email", "sw").text != renders.get("email", "en").text


def test_contact_name_is_a_placeholder_filled_per_recipient_and_escaped_in_html() -> None:
    renders = render_notice(load_notice(EXAMPLE), Templates())
    named = renders.get("email", "en")
    assert placeholder("name") in named.text and placeholder("name", html_part=True) in named.html
    unnamed = renders.get("email", "en", NO_NAME)
    assert "%%" not in unnamed.text + unnamed.html
    filled = personalize(named, {"name": "Tom <b>&</b> Jerry"})
    assert "Tom <b>&</b> Jerry" in filled.text
    assert html.escape("Tom <b>&</b> Jerry") in filled.html and "<b>&</b>" not in filled.html


def test_check_catches_a_rendering_that_leaves_out_a_channel(custom_templates: Path) -> None:
    sms = custom_templates / "sms.txt.j2"
    # drop the last support channel from the SMS only
    sms.write_text(sms.read_text(encoding="utf-8").replace("{% for channel in notice.channels", "{% for channel in notice.channels[:-1]"), encoding="utf-8")
    notice = load_notice(EXAMPLE)
    renders = render_notice(notice, Templates(custom_templates))
    last = notice.channels[-1].id
    for lang in notice.languages:
        assert missing_contacts(renders.get("sms", lang), notice) == [last]
        assert missing_contacts(renders.get("email", lang), notice) == []


def test_syntax_error_names_template_file_and_line(custom_templates: Path) -> None:
    (custom_templates / "sms.txt.j2").write_text("line one\n{{ notice.headline \n", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        render_notice(load_notice(EXAMPLE), Templates(custom_templates))
    assert info.value.file.endswith("sms.txt.j2") and info.value.row == 2
    assert "syntax" in info.value.message


def test_undefined_variable_is_an_error_before_anything_is_sent(custom_templates: Path) -> None:
    (custom_templates / "sms.txt.j2").write_text("{{ notice.headline }}\n{{ notice.nonexistent }}\n", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        render_notice(load_notice(EXAMPLE), Templates(custom_templates))
    assert "nonexistent" in info.value.message and info.value.row == 2


def test_sandbox_blocks_python_internals(custom_templates: Path) -> None:
    (custom_templates / "sms.txt.j2").write_text("{{ notice.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8")
    with pytest.raises(TemplateError, match="sandbox|unknown template variable"):
        render_notice(load_notice(EXAMPLE), Templates(custom_templates))


def test_notice_text_is_inert_in_every_channel(tmp_path: Path) -> None:
    source = EXAMPLE.read_text(encoding="utf-8")
    evil = "<script>alert(1)</script> {{ 7*7 }} {% raw %}"
    notice_path = tmp_path / "evil.yaml"
    notice_path.write_text(source.replace("id: boil-water-2026-03", "id: boil-water-2026-03\n# evil\n", 1).replace(
        "headline:", f"headline: {{en: {evil!r}, sw: {evil!r}, sl: {evil!r}}}\nold_headline:", 1
    ).replace("old_headline:", "# old:", 1), encoding="utf-8")
    text = notice_path.read_text(encoding="utf-8")
    # keep the file valid YAML: comment out the original headline mapping lines
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# old:"))
    j = start + 1
    while j < len(lines) and lines[j].startswith("  "):
        lines[j] = "#" + lines[j]
        j += 1
    notice_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    renders = render_notice(load_notice(notice_path), Templates())
    for rendering in renders.renderings.values():
        if rendering.html:
            assert "<script>" not in rendering.html and "&lt;script&gt;" in rendering.html
        for text in (rendering.text, rendering.subject, *rendering.posts):
            assert "49" not in text
        assert "{{ 7*7 }}" in rendering.html + rendering.text + rendering.subject + "".join(rendering.posts)


def test_labels_never_resolve_to_dict_methods(custom_templates: Path) -> None:
    (custom_templates / "sms.txt.j2").write_text("{{ t.update }}", encoding="utf-8")
    with pytest.raises(TemplateError, match="update"):
        render_notice(load_notice(EXAMPLE), Templates(custom_templates))


def test_missing_catalog_key_is_borrowed_from_english_and_reported(custom_templates: Path) -> None:
    sl = custom_templates / "labels" / "sl.yaml"
    sl.write_text("\n".join(line for line in sl.read_text(encoding="utf-8").splitlines() if not line.startswith("hours:")) + "\n", encoding="utf-8")
    renders = render_notice(load_notice(EXAMPLE), Templates(custom_templates))
    assert renders.catalogs["sl"].borrowed == ["hours"]


def test_thread_split_keeps_every_post_within_280_and_numbers_them() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 40 for i in range(6)]
    posts = split_thread("\n\n".join(paragraphs), X_LIMIT)
    assert len(posts) > 1
    assert all(weighted_length(p) <= 280 for p in posts)
    assert [p.rsplit(" ", 1)[1] for p in posts] == [f"({i}/{len(posts)})" for i in range(1, len(posts) + 1)]
    assert split_thread("short", X_LIMIT) == ("short",)
    # one unbroken paragraph longer than a post still splits, by sentences then words
    long = ". ".join(["This is a sentence with some words in it"] * 20)
    assert all(weighted_length(p) <= 280 for p in split_thread(long, X_LIMIT))


def test_weighted_length_counts_urls_as_23_and_emoji_as_2() -> None:
    assert weighted_length("https://lakeside-water.com/a/very/long/path/indeed/for/testing") == 23
    # X links only real top-level domains, so a reserved .example address counts character by character
    assert weighted_length("https://lakeside-water.example/x") == 32
    assert weighted_length("😀") == 2


def test_versions_differ_per_channel_and_change_with_the_notice(tmp_path: Path) -> None:
    first = render_notice(load_notice(EXAMPLE), Templates())
    edited = tmp_path / "edited.yaml"
    edited.write_text(EXAMPLE.read_text(encoding="utf-8").replace("severity: urgent", "severity: emergency"), encoding="utf-8")
    second = render_notice(load_notice(edited), Templates())
    assert len(set(first.versions.values())) == 5
    assert all(first.versions[c] != second.versions[c] for c in first.versions)
    again = render_notice(load_notice(EXAMPLE), Templates())
    assert again.versions == first.versions


def test_rendering_is_a_value() -> None:
    r = Rendering("sms", "en", text="hi %%name%%")
    assert personalize(r, {"name": "Ana"}).text == "hi Ana" and r.text == "hi %%name%%"
