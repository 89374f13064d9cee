"""Template labels: neutral words only, and the notice's own words where it gives them (``labels:``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import CONTACTS, EXAMPLE, REPO, STORM

#: sentences the templates used to print whatever the notice said: each assumed a kind of crisis or claimed
#: something the notice had not (who answers, who the reader is, that this happened before)
REMOVED_CLAIMS = {
    "en": [
        "Our own team answers every channel below",
        "customer of {org} in the affected area",
        "We have handled this before",
        "How it went last time",
        "What you can do right now",
    ],
    "sw": ["inajibiwa na timu yetu wenyewe", "wewe ni mteja wa {org} katika eneo lililoathirika", "Tumewahi kushughulikia",
           "Ilivyokwenda mara iliyopita", "Unachoweza kufanya sasa hivi"],
    "sl": ["vam odgovarja naša ekipa", "uporabnik storitev {org} na prizadetem območju", "S tem imamo izkušnje",
           "Kako je bilo zadnjič", "Kaj lahko storite takoj"],
    "ar": ["يردّ فريقنا على جميع القنوات", "من عملاء {org} في المنطقة المتأثرة", "تعاملنا مع مثل هذا من قبل",
           "ما حدث في المرة السابقة", "ما يمكنك فعله الآن"],
}


def run(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def with_labels(tmp_path: Path, labels: object, source: Path = EXAMPLE) -> Path:
    """The example notice with a ``labels:`` block appended as text, so its line numbers are the file's own."""
    path = tmp_path / "notice.yaml"
    block = yaml.safe_dump({"labels": labels}, allow_unicode=True, sort_keys=False)
    path.write_text(source.read_text(encoding="utf-8") + "\n" + block, encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def test_no_catalog_or_template_makes_the_removed_claims() -> None:
    files = [p for p in (REPO / "templates").rglob("*") if p.is_file()]
    assert len(files) >= 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        for lang, claims in REMOVED_CLAIMS.items():
            for claim in claims:
                assert claim not in text, (path.name, lang, claim)


def test_rendered_notices_carry_no_fixed_claim(tmp_path: Path) -> None:
    result = run("preview", STORM, "--contacts", CONTACTS, "--out", tmp_path / "p", "--max-sms-segments", "20")
    assert result.exit_code == 0, result.output
    channels = {"email", "sms", "social", "web"}
    rendered = [p for p in (tmp_path / "p").rglob("*") if p.is_file() and p.parent.name in channels]
    assert {p.parent.name for p in rendered} == channels
    for path in rendered:
        text = path.read_text(encoding="utf-8")
        for claims in REMOVED_CLAIMS.values():
            for claim in claims:
                assert claim.replace("{org}", "Pwani Power") not in text, (path, claim)


def test_a_label_the_notice_overrides_shows_in_every_channel_of_that_language(tmp_path: Path) -> None:
    notice = with_labels(tmp_path, {
        "en": {
            "severity_emergency": "Danger to life",
            "how_to_reach_intro": "Trained volunteers answer the phone lines.",
            "why": "You get this because you asked Pwani Power for alerts.",
        },
    }, source=STORM)
    result = run("preview", notice, "--contacts", CONTACTS, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    out = tmp_path / "p"
    english = {
        "email subject": out / "email" / "en.subject.txt",
        "email html": out / "email" / "en.html",
        "email text": out / "email" / "en.txt",
        "sms": out / "sms" / "en.txt",
        "social": out / "social" / "en.txt",
        "web": out / "web" / "en.html",
    }
    for where, path in english.items():
        assert "danger to life" in path.read_text(encoding="utf-8").lower(), where
    for part in ("en.html", "en.txt"):
        email = (out / "email" / part).read_text(encoding="utf-8")
        assert "Trained volunteers answer the phone lines." in email
        assert "You get this because you asked Pwani Power for alerts." in email
    # other languages keep their catalog's words
    for lang in ("sw", "sl", "ar"):
        for path in (out / "email" / f"{lang}.txt", out / "sms" / f"{lang}.txt", out / "web" / f"{lang}.html"):
            text = path.read_text(encoding="utf-8")
            assert "Danger to life" not in text and "Trained volunteers" not in text
    # the notice's words change what recipients read: a new version
    plain = json.loads(run("check", STORM, "--json").stdout)
    assert plain["ok"]


def test_without_an_override_the_empty_labels_print_nothing(tmp_path: Path) -> None:
    result = run("preview", EXAMPLE, "--contacts", CONTACTS, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "p" / "email" / "en.txt").read_text(encoding="utf-8")
    assert "HOW TO REACH US\n\n* Emergency line" in text
    assert "This notice comes from Lakeside Water.\nhttps://lakeside.example\nTo stop these notices" in text


def test_an_unknown_label_is_an_error_naming_key_line_and_the_known_keys(tmp_path: Path) -> None:
    notice = with_labels(tmp_path, {"en": {"how_to_reach": "Who can help", "hwo_to_reach": "typo"}})
    result = run("check", notice)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"line {line_of(notice, 'hwo_to_reach')}" in result.output
    assert "field 'labels.en.hwo_to_reach'" in result.output and "unknown label 'hwo_to_reach'" in result.output
    assert "known labels:" in result.output and "how_to_reach_intro" in result.output and "severity_urgent" in result.output
    # a send stops the same way, before anything is planned
    send = run("send", notice, "--contacts", CONTACTS, "--dry-run", "--out", tmp_path / "o")
    assert send.exit_code == 2 and "hwo_to_reach" in send.output and not (tmp_path / "o").exists()


def test_a_label_slot_the_template_does_not_fill_is_an_error(tmp_path: Path) -> None:
    notice = with_labels(tmp_path, {"sl": {"footer": "Pošilja {organization}."}})
    result = run("check", notice)
    assert result.exit_code == 2, result.output
    assert f"line {line_of(notice, 'footer')}" in result.output and "field 'labels.sl.footer'" in result.output
    assert "{organization}" in result.output and "{org}" in result.output


def test_a_slot_in_a_label_printed_as_written_is_an_error(tmp_path: Path) -> None:
    notice = with_labels(tmp_path, {"en": {"why": "You asked {org} for alerts."}})
    result = run("check", notice)
    assert result.exit_code == 2 and "field 'labels.en.why'" in result.output and "printed as written" in result.output


def test_labels_for_a_language_the_notice_does_not_ship_in_are_an_error(tmp_path: Path) -> None:
    notice = with_labels(tmp_path, {"fr": {"footer": "Envoyé par {org}."}})
    result = run("check", notice)
    assert result.exit_code == 2, result.output
    assert f"line {line_of(notice, 'fr:')}" in result.output and "field 'labels.fr'" in result.output
    assert "'fr', which is not in languages (en, sw, sl)" in result.output


@pytest.mark.parametrize("value", [["a list"], 12, {"nested": "map"}])
def test_a_label_that_is_not_text_is_an_error(tmp_path: Path, value: object) -> None:
    notice = with_labels(tmp_path, {"en": {"footer": value}})
    result = run("check", notice)
    assert result.exit_code == 2 and "labels.en.footer" in result.output and "Traceback" not in result.output


def test_an_overridden_label_is_no_translation_fallback(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    import shutil

    shutil.copytree(REPO / "templates", templates)
    catalog = templates / "labels" / "sw.yaml"
    catalog.write_text(
        "\n".join(line for line in catalog.read_text(encoding="utf-8").splitlines() if not line.startswith("best_for:")),
        encoding="utf-8",
    )
    borrowed = run("check", EXAMPLE, "--templates", templates, "--strict")
    assert borrowed.exit_code == 2 and "best_for" in borrowed.output
    notice = with_labels(tmp_path, {"sw": {"best_for": "Inafaa kwa:"}})
    result = run("check", notice, "--templates", templates, "--strict")
    assert result.exit_code == 0, result.output
