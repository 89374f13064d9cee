"""The staff brief: `broadcast brief`, its checks, and the brief a preview and a send write beside their output."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.notice import load_notice, localize
from tests.conftest import CONTACTS, EXAMPLE, REPO, STORM


def run(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def text_of(markup: str) -> str:
    """The words of an HTML page, whitespace squashed, as a reader sees them."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def sections(markup: str) -> dict[str, str]:
    """Language → the HTML of that language's section of brief.html."""
    found = re.findall(r'<section class="lang[^"]*" id="brief-([a-z-]+)"(.*?)</section>', markup, re.S)
    return dict(found)


def md_sections(markdown: str) -> dict[str, str]:
    """Language → that language's part of brief.md (each part names its language code on its second line)."""
    parts = markdown.split("\n---\n")
    return {re.search(r"`([a-z-]+)`\n", part).group(1): part for part in parts}


def edited(tmp_path: Path, source: Path, change, name: str = "new.yaml") -> Path:  # noqa: ANN001
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("example", [EXAMPLE, STORM], ids=["boil-water", "storm-outage"])
def test_the_brief_holds_everything_agents_need_in_every_notice_language(example: Path, tmp_path: Path) -> None:
    result = run("brief", example, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    notice = load_notice(example)
    page = (tmp_path / "b" / "brief.html").read_text(encoding="utf-8")
    markdown = (tmp_path / "b" / "brief.md").read_text(encoding="utf-8")
    by_lang, md_by_lang = sections(page), md_sections(markdown)
    assert list(by_lang) == list(md_by_lang) == notice.languages
    labels = {lang: yaml.safe_load((REPO / "templates" / "labels" / f"{lang}.yaml").read_text(encoding="utf-8")) for lang in notice.languages}
    for lang in notice.languages:
        local = localize(notice, lang)
        words, md = text_of(by_lang[lang]), " ".join(md_by_lang[lang].split())
        expected = [local.headline, local.summary, local.reassurance, local.story, *local.options, *local.questions]
        for route in local.routing:
            expected += [route.need, route.channel.label, route.channel.contact, route.channel.hours]
        for resource in local.resources:
            expected += [resource.title, resource.description, resource.url]
        # the brief's own words are in the reader's language, from the catalog
        expected += [labels[lang][key] for key in ("brief_title", "brief_triage_heading", "brief_biggest", "brief_help_heading")]
        for text in expected:
            assert " ".join(text.split()) in words, f"{lang}: {text!r} is not in brief.html"
            assert " ".join(text.split()) in md, f"{lang}: {text!r} is not in brief.md"
        # the questions in the notice's order, each with room for the answer
        positions = [words.index(q) for q in local.questions]
        assert positions == sorted(positions)
        assert by_lang[lang].count('class="answer"') == len(local.questions) + 1
        # each channel's message, folded: email, SMS, banner and call script in every language, the X post where it
        # is posted
        channels = re.findall(r'<details data-channel="(\w+)">', by_lang[lang])
        assert channels == ["email", "sms", *(["social"] if lang in notice.social_languages else []), "web", "voice"]
        assert f'dir="{"rtl" if lang == "ar" else "ltr"}"' in by_lang[lang].split(">", 1)[0]
    # no "what changed" without an earlier version to compare with
    assert 'class="changes-heading"' not in page


def test_a_channel_no_routing_names_is_still_listed_for_its_agents(tmp_path: Path) -> None:
    assert run("brief", EXAMPLE, "--out", tmp_path, "--language", "en").exit_code == 0
    words = text_of((tmp_path / "brief.html").read_text(encoding="utf-8"))
    # boil-water routes no need to email: its agents take any other question
    assert re.search(r"Email \( ?help@lakeside\.example ?\) ?: Any other question", words)
    assert re.search(r"Emergency line \( ?\+386 1 555 01 00 ?\) ?: Burst pipe or illness", words)


def test_language_picks_one_language_and_an_unknown_one_writes_nothing(tmp_path: Path) -> None:
    result = run("brief", STORM, "--out", tmp_path / "ar", "--language", "ar")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "ar" / "brief.html").read_text(encoding="utf-8")
    assert list(sections(page)) == ["ar"]
    assert '<html lang="ar" dir="rtl">' in page and "موجز لفريق الدعم" in page

    missing = run("brief", EXAMPLE, "--out", tmp_path / "none", "--language", "ar")
    assert missing.exit_code == 2
    assert "field 'languages'" in missing.output and "choose from en, sw, sl" in missing.output
    assert "Traceback" not in missing.output and not (tmp_path / "none").exists()


def test_what_changed_names_each_changed_field_and_language_and_nothing_else(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["summary"]["sw"] += " Tafadhali wajulishe majirani."
        data["options"][1]["sl"] = "Ustekleničeno vodo prevzemite v gasilskem domu, vsak dan od 8.00 do 20.00."

    new = edited(tmp_path, EXAMPLE, edit)
    result = run("brief", new, "--since", EXAMPLE, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert f"Changed since {EXAMPLE}: summary (sw); options[1] (sl)" in result.output

    page = (tmp_path / "b" / "brief.html").read_text(encoding="utf-8")
    changed = {lang: re.findall(r'<li class="change" data-field="([^"]+)"', part) for lang, part in sections(page).items()}
    assert changed == {"en": [], "sw": ["summary"], "sl": ["options[1]"]}
    assert "Nothing in this language changed." in sections(page)["en"]
    assert "Tafadhali wajulishe majirani." in text_of(sections(page)["sw"])
    # the old text is shown too, so agents know what customers may quote back at them
    assert "Brezplačno ustekleničeno vodo prevzemite" in text_of(sections(page)["sl"])

    md = md_sections((tmp_path / "b" / "brief.md").read_text(encoding="utf-8"))
    listed = {lang: re.findall(r"^- `([^`]+)`:", part, re.M) for lang, part in md.items()}
    assert listed == {"en": [], "sw": ["summary"], "sl": ["options[1]"]}
    assert "Hakuna kilichobadilika katika lugha hii." not in md["sw"]
    assert "V tem jeziku se ni nič spremenilo." not in md["sl"] and "Nothing in this language changed." in md["en"]


def test_a_text_written_once_for_every_language_changes_in_every_language(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["channels"][1]["contact"] = "+386 40 555 011"  # one number for every language
        data["questions"].append({"en": "Do you have a way to boil water?", "sw": "Je, una njia ya kuchemsha maji?",
                                  "sl": "Ali imate možnost prekuhati vodo?"})

    new = edited(tmp_path, EXAMPLE, edit)
    result = run("brief", new, "--since", EXAMPLE, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "channels[1].contact (en, sw, sl); questions[3] (en, sw, sl)" in result.output
    page = (tmp_path / "b" / "brief.html").read_text(encoding="utf-8")
    for lang, part in sections(page).items():
        assert re.findall(r'data-field="([^"]+)"', part) == ["channels[1].contact", "questions[3]"], lang
    # a field the earlier version lacked is shown as new, not as a change from some other text
    assert "(none) → Do you have a way to boil water?" in text_of(sections(page)["en"])


def test_the_same_notice_since_itself_changed_nothing(tmp_path: Path) -> None:
    result = run("brief", STORM, "--since", STORM, "--out", tmp_path)
    assert result.exit_code == 0 and f"Changed since {STORM}: nothing" in result.output
    page = (tmp_path / "brief.html").read_text(encoding="utf-8")
    assert page.count('class="changes-heading"') == 4 and 'class="change"' not in page


def test_since_another_notice_is_refused(tmp_path: Path) -> None:
    result = run("brief", EXAMPLE, "--since", STORM, "--out", tmp_path / "b")
    assert result.exit_code == 2
    assert "storm-outage-2026-04" in result.output and "field 'id'" in result.output and "Hint:" in result.output
    assert not (tmp_path / "b").exists()


def bare_notice(tmp_path: Path) -> Path:
    def edit(data: dict) -> None:
        for key in ("questions", "reassurance", "resources"):
            del data[key]

    return edited(tmp_path, EXAMPLE, edit, "bare.yaml")


def test_check_warns_without_triage_reassurance_or_outside_help_and_strict_refuses(tmp_path: Path) -> None:
    notice = bare_notice(tmp_path)
    loose = run("check", notice)
    assert loose.exit_code == 0, loose.output
    for field in ("questions", "reassurance", "resources"):
        assert f"Warning: notice field {field}: no " in loose.output
    assert "notice field questions" not in run("check", EXAMPLE).output

    strict = run("check", notice, "--strict")
    assert strict.exit_code == 2 and "Traceback" not in strict.output
    assert "3 part(s) of crisis support missing" in strict.output and "field 'questions'" in strict.output
    assert "no outside help" in strict.output and "Hint:" in strict.output
    # check means send: a strict send refuses the same notice before anything goes out
    send = run("send", notice, "--contacts", CONTACTS, "--dry-run", "--strict", "--out", tmp_path / "out")
    assert send.exit_code == 2 and "crisis support missing" in send.output and not (tmp_path / "out").exists()


def test_the_brief_says_what_the_notice_lacks_and_strict_refuses_it(tmp_path: Path) -> None:
    notice = bare_notice(tmp_path)
    result = run("brief", notice, "--out", tmp_path / "b", "--language", "en")
    assert result.exit_code == 0 and "Warning: notice field reassurance" in result.output
    section = sections((tmp_path / "b" / "brief.html").read_text(encoding="utf-8"))["en"]
    assert section.count("Not in this notice: ask the incident lead before the calls start.") == 3
    strict = run("brief", notice, "--out", tmp_path / "s", "--strict")
    assert strict.exit_code == 2 and "--strict" in strict.output and not (tmp_path / "s").exists()


def test_a_brief_label_missing_in_a_catalog_is_borrowed_and_strict_refuses(tmp_path: Path) -> None:
    templates = tmp_path / "t"
    shutil.copytree(REPO / "templates", templates)
    sl = templates / "labels" / "sl.yaml"
    sl.write_text("\n".join(l for l in sl.read_text(encoding="utf-8").splitlines() if not l.startswith("brief_answer:")) + "\n", encoding="utf-8")
    loose = run("brief", EXAMPLE, "--templates", templates, "--out", tmp_path / "b")
    assert loose.exit_code == 0
    assert "labels/sl.yaml: label 'brief_answer' missing, shown in en" in loose.output
    assert "Answer:" in sections((tmp_path / "b" / "brief.html").read_text(encoding="utf-8"))["sl"]
    strict = run("brief", EXAMPLE, "--templates", templates, "--out", tmp_path / "s", "--strict")
    assert strict.exit_code == 2 and "brief_answer" in strict.output and not (tmp_path / "s").exists()


def test_a_templates_folder_from_before_the_brief_still_previews_with_the_shipped_brief(tmp_path: Path) -> None:
    templates = tmp_path / "t"
    shutil.copytree(REPO / "templates", templates)
    shutil.rmtree(templates / "brief")
    result = run("preview", EXAMPLE, "--contacts", CONTACTS, "--templates", templates, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert "Boil your tap water" in (tmp_path / "p" / "brief.html").read_text(encoding="utf-8")


def test_notice_text_is_inert_in_the_brief(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["summary"]["en"] = "<script>alert(1)</script> {{ 7*7 }} boil water.\n```\n<img src=x onerror=alert(2)>"

    result = run("brief", edited(tmp_path, EXAMPLE, edit), "--out", tmp_path / "b", "--language", "en")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "b" / "brief.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in page
    assert "49" not in text_of(page)
    # Markdown keeps the text, with the `<` escaped, so a helpdesk rendering HTML in Markdown shows it as text
    markdown = (tmp_path / "b" / "brief.md").read_text(encoding="utf-8")
    assert "\\<script>alert(1)\\</script> {{ 7*7 }} boil water." in markdown
    # outside the code blocks that hold the messages as customers get them (inert in Markdown), whose fence
    # is longer than the ``` in the text, so the text cannot close it
    assert "````text\n" in markdown and "\n````\n" in markdown
    outside = re.sub(r"````text\n.*?\n````", "", markdown, flags=re.S).replace("\\<", "")
    assert "<script>" not in outside and "<img" not in outside


def test_the_preview_page_links_to_the_brief_written_beside_it(tmp_path: Path) -> None:
    result = run("preview", STORM, "--contacts", CONTACTS, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    index = (tmp_path / "p" / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<a id="brief-link" href="brief.html"[^>]*>Staff brief', index)
    assert list(sections((tmp_path / "p" / "brief.html").read_text(encoding="utf-8"))) == ["en", "sw", "sl", "ar"]
    assert (tmp_path / "p" / "brief.md").is_file()


def test_send_writes_the_brief_to_brief_dir_from_the_messages_it_sends(tmp_path: Path) -> None:
    dry = run("send", EXAMPLE, "--contacts", CONTACTS, "--dry-run", "--out", tmp_path / "o", "--brief-dir", tmp_path / "dry")
    assert dry.exit_code == 0, dry.output
    assert (tmp_path / "dry" / "brief.md").is_file() and (tmp_path / "o" / "brief.html").is_file()

    # a live send on the web channel only (files, no provider): the brief shows what this send tells people
    live = run(
        "send", STORM, "--contacts", CONTACTS, "--channel", "web", "--yes", "--web-dir", tmp_path / "web",
        "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}", "--brief-dir", tmp_path / "staff",
    )
    assert live.exit_code == 0, live.output
    page = (tmp_path / "staff" / "brief.html").read_text(encoding="utf-8")
    for lang, part in sections(page).items():
        assert re.findall(r'<details data-channel="(\w+)">', part) == ["web"], lang
    assert (tmp_path / "web" / "banner.ar.html").is_file()



def test_an_all_clear_brief_says_what_to_say_now_in_every_language(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["phase"] = "all_clear"
        data["summary"]["en"] = "The water is safe to drink again. Run the tap for two minutes first."

    clear = edited(tmp_path, EXAMPLE, edit, "clear.yaml")
    result = run("brief", clear, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    page = sections((tmp_path / "b" / "brief.html").read_text(encoding="utf-8"))
    md = md_sections((tmp_path / "b" / "brief.md").read_text(encoding="utf-8"))
    heading = {"en": "What to say now: the all-clear", "sw": "Cha kusema sasa: hali shwari",
               "sl": "Kaj povedati zdaj: preklic nevarnosti"}
    for lang, words in heading.items():
        assert words in text_of(page[lang]) and f"## 6. {words}" in md[lang]
    assert "Run the tap for two minutes first." in text_of(page["en"]).split(heading["en"])[1]
    assert "The danger has passed and this notice is over." in md["en"]
    # an alert's brief has no such section
    result = run("brief", EXAMPLE, "--out", tmp_path / "alert")
    alert = (tmp_path / "alert" / "brief.md").read_text(encoding="utf-8")
    assert "What to say now" not in alert and "all-clear" not in alert
