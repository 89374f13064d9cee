"""A real notice goes out right the first time: default options, every SMS within 3 segments as check predicted,
every support channel's contact in every message, first send and update alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.message import Rendering
from broadcast.notice import load_notice
from broadcast.render import missing_contacts
from broadcast.segments import count_segments
from tests.conftest import EXAMPLE, STORM
from tests.fakes.fixtures import Fakes

BANK = Path(__file__).parent / "data" / "notices" / "bank-breach.yaml"
#: one mobile number and address per language the shipped notices use
PEOPLE = {
    "en": ("+447911123456", "ben@mail.example"),
    "sw": ("+254712345678", "ciku@mail.example"),
    "sl": ("+38641555010", "ana@mail.example"),
    "ar": ("+201012345678", "omar@mail.example"),
}


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout


@pytest.fixture()
def live(fake_providers: Fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Fakes:
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "Alerts <alerts@lakeside-water.example>")
    monkeypatch.delenv("BROADCAST_LEDGER", raising=False)  # the default: beside the notice file
    monkeypatch.setenv("BROADCAST_WEB_DIR", str(tmp_path / "web"))
    return fake_providers


def sms_predicted(notice: Path) -> dict[str, int]:
    code, out = run("check", notice, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"], out
    return {r["language"]: r["segments"] for r in data["renderings"] if r["channel"] == "sms"}


def assert_right(live: Fakes, notice: Path, since_sms: int, since_email: int, languages: list[str] | None = None) -> None:
    """Every SMS and email the fakes got since the given counts: within 3 segments, as check said, naming everyone;
    one SMS per language in ``languages`` (default: every notice language) and none in any other."""
    parsed = load_notice(notice)
    language_of = {phone: lang for lang, (phone, _) in PEOPLE.items()}
    predicted = sms_predicted(notice)
    sms = live.twilio.deliveries[since_sms:]
    assert sorted(language_of[d.recipient] for d in sms) == sorted(languages or parsed.languages)
    for delivery in sms:
        lang = language_of[delivery.recipient]
        body = delivery.payload["body"]
        assert count_segments(body).segments == predicted[lang] <= 3, (lang, body)
        assert missing_contacts(Rendering("sms", lang, text=body), parsed) == [], (lang, body)
    emails = [r for r in live.sendgrid.requests[since_email:] if r.method == "POST"]
    assert emails
    for request in emails:
        parts = {c["type"]: c["value"] for c in request.body["content"]}
        rendering = Rendering("email", "", html=parts["text/html"], text=parts["text/plain"])
        assert missing_contacts(rendering, parsed) == []
        assert request.body["from"] == {"email": "alerts@lakeside-water.example", "name": "Alerts"}


@pytest.mark.parametrize("source", [EXAMPLE, STORM, BANK], ids=["boil-water", "storm-outage", "bank-breach"])
def test_a_notice_sends_with_default_options_and_again_as_an_update(live: Fakes, tmp_path: Path, source: Path) -> None:
    folder = tmp_path / "notices"
    folder.mkdir()
    notice = folder / source.name
    shutil.copyfile(source, notice)
    languages = load_notice(notice).languages
    contacts = tmp_path / "people.csv"
    contacts.write_text(
        "name,email,phone,language\n" + "".join(f"P{lang},{PEOPLE[lang][1]},{PEOPLE[lang][0]},{lang}\n" for lang in languages),
        encoding="utf-8",
    )
    code, out = run("send", notice, "--contacts", contacts, "--channel", "email,sms", "--yes", "--json")
    assert code == 0, out
    assert_right(live, notice, 0, 0)

    # one edited sentence in the default language: that language's recipients get the update, with its prefix, and
    # everything above still holds; the other languages' texts did not change, so they get nothing
    sms_before, email_before = len(live.twilio.deliveries), len(live.sendgrid.requests)
    parsed = load_notice(notice)
    default = parsed.languages[0]
    summary = parsed.summary[default] if isinstance(parsed.summary, dict) else parsed.summary
    text = notice.read_text(encoding="utf-8")
    assert summary in text
    notice.write_text(text.replace(summary, summary + " More soon.", 1), encoding="utf-8")
    code, out = run("check", notice, "--json")
    assert json.loads(out)["updated"] == {"email": [default], "sms": [default]}, out
    result = CliRunner().invoke(main, ["send", str(notice), "--contacts", str(contacts), "--channel", "email,sms", "--yes"])
    assert result.exit_code == 0, result.output
    assert_right(live, notice, sms_before, email_before, [default])
    bodies = [d.payload["body"] for d in live.twilio.deliveries[sms_before:]]
    # each language's update word, from its label catalog
    assert all(b.startswith(("UPDATE: ", "SASISHO: ", "POSODOBITEV: ", "تحديث: ")) for b in bodies), bodies
