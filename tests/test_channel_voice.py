"""Voice calls through Twilio: only contacts who ask for one, TwiML from the SDK's VoiceResponse, press 1 if safe."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.channels.voice import VoiceChannel, VoiceSettings
from broadcast.cli import main
from broadcast.config import Secret
from broadcast.message import Message, Rendering
from broadcast.notice import load_notice
from broadcast.render import bare_url
from broadcast.send import RetryPolicy, deliver
from tests.conftest import CONTACTS as NOBODY_ASKS
from tests.conftest import STORM
from tests.fakes import Faults, TwilioFake, credentials
from tests.fakes.fixtures import use_fakes

CONTACTS = Path(__file__).parent / "data" / "contacts" / "voice.csv"
GRACE, AMINA, TOM, ANA, JUMA = "+254712555101", "+254733555103", "+254722555102", "+38641555010", "+254712555104"
BARAKA, NEEMA = "+254712555105", "+254712555106"
#: who asked for a call (voice, call or "phone call" in the channels column), and in which voice they hear it:
#: Slovenian and Swahili have no Twilio voice, so those contacts hear the notice in English (the default language)
CALLED = {GRACE: "en", AMINA: "ar", ANA: "en", BARAKA: "en", NEEMA: "en"}
SPOKEN = {"en": ("en-GB", "Polly.Amy"), "ar": ("arb", "Polly.Zeina")}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, twilio_fake: TwilioFake, tmp_path: Path) -> TwilioFake:
    use_fakes(monkeypatch, twilio=twilio_fake)
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("BROADCAST_NO_WAIT", "1")
    return twilio_fake


def send(*extra: str, contacts: Path = CONTACTS) -> Any:
    return CliRunner().invoke(
        main, ["send", str(STORM), "--contacts", str(contacts), "--channel", "voice", "--yes", "--force", *extra],
        catch_exceptions=False,
    )


def says(twiml: str) -> tuple[ET.Element, list[tuple[str, str, str]]]:
    """The call's one <Gather>, and (language, voice, text) of every <Say> inside it."""
    root = ET.fromstring(twiml)  # valid XML, or this raises
    assert root.tag == "Response"
    (gather,) = root.findall("Gather")
    assert gather.get("numDigits") == "1"
    return gather, [(s.get("language", ""), s.get("voice", ""), s.text or "") for s in gather.findall("Say")]


def test_only_contacts_who_ask_are_called_once_each_in_their_language_or_the_fallback(calls: TwilioFake) -> None:
    sent = send("--json")
    assert sent.exit_code == 0, sent.output
    counts = json.loads(sent.stdout)["channels"]["voice"]
    # Tom named no channel and Juma asked for SMS only: a phone number alone is no request to be called
    assert counts["planned"] == counts["sent"] == len(CALLED) and counts["failed"] == 0
    assert sorted(c["to"] for c in calls.calls) == sorted(CALLED)
    assert calls.invalid == []  # every Calls request as Twilio's OpenAPI document says
    notice = load_notice(STORM)
    for call in calls.calls:
        gather, spoken = says(call["twiml"])
        lang = CALLED[call["to"]]
        assert {(language, voice) for language, voice, _ in spoken} == {SPOKEN[lang]}, call["to"]
        text = " ".join(t for _, _, t in spoken)
        assert notice.headline[lang] in text and notice.summary[lang] in text
        for channel in notice.channels:
            # a link is read without its https:// (render.bare_url), as check accepts it
            assert bare_url(channel.contact) in text, (call["to"], channel.id)
        assert spoken[-1][2] == {"en": "If you are safe, press 1.", "ar": "إذا كنت بأمان، اضغط 1."}[lang]
        assert call["from"] == credentials.TWILIO_FROM
        assert gather.get("action") is None  # no BROADCAST_PUBLIC_URL: the key is posted nowhere
    # a re-run calls nobody again
    again = send("--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["channels"]["voice"]["sent"] == 0
    assert len(calls.calls) == len(CALLED)


def test_the_report_names_each_language_called_in_another_and_check_says_the_same(calls: TwilioFake, tmp_path: Path) -> None:
    said = [
        "voice: sw has no Twilio voice; the sw contacts are called in English",
        "voice: sl has no Twilio voice; the sl contacts are called in English",
    ]
    sent = send()
    for line in said:
        assert line in sent.output, sent.output
    assert "ar has no Twilio voice" not in sent.output and "en has no" not in sent.output
    # check has no contacts: it says so on each language's line, from the same adapter
    checked = CliRunner().invoke(main, ["check", str(STORM)], catch_exceptions=False)
    for lang in ("sw", "sl"):
        line = next(line for line in checked.output.splitlines() if line.startswith(f"  voice   {lang} "))
        assert line.endswith(f"read by Polly.Amy (en-GB) in English: no Twilio voice for {lang}"), line
    # nobody in a language is called: nothing to say about it
    only_english = tmp_path / "english.csv"
    only_english.write_text("name,phone,language,channels\nGrace Wambui,+254712555101,en,voice\n", encoding="utf-8")
    quiet = send(contacts=only_english)
    assert "has no Twilio voice" not in quiet.output, quiet.output


def test_a_run_without_channel_calls_those_who_asked(calls: TwilioFake, tmp_path: Path) -> None:
    # voice is a default channel: a contact who asked for a call gets one on a normal send, nobody else does
    preview = CliRunner().invoke(
        main, ["send", str(STORM), "--contacts", str(CONTACTS), "--dry-run", "--json", "--out", str(tmp_path / "o")],
        catch_exceptions=False,
    )
    assert preview.exit_code == 0, preview.output
    assert json.loads(preview.stdout)["channels"]["voice"]["planned"] == len(CALLED)
    nobody = CliRunner().invoke(
        main, ["send", str(STORM), "--contacts", str(NOBODY_ASKS), "--dry-run", "--json", "--out", str(tmp_path / "p")],
        catch_exceptions=False,
    )
    assert json.loads(nobody.stdout)["channels"]["voice"]["planned"] == 0


def test_the_key_goes_to_the_public_url_and_twilio_voice_from_is_the_caller(calls: TwilioFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_VOICE_FROM", "+15005550007")
    monkeypatch.setenv("BROADCAST_PUBLIC_URL", "https://alerts.example/broadcast/")
    sent = send()
    assert sent.exit_code == 0, sent.output
    assert {c["from"] for c in calls.calls} == {"+15005550007"}
    for call in calls.calls:
        gather, _ = says(call["twiml"])
        assert gather.get("action") == "https://alerts.example/broadcast/voice/gather"
        assert gather.get("method") == "POST"
    assert calls.invalid == []


@pytest.mark.parametrize("caller", ["Pwani Power", "0712555101", "+1 500 555 0006"])
def test_a_caller_id_that_is_not_e164_stops_the_send_naming_the_variable(calls: TwilioFake, monkeypatch: pytest.MonkeyPatch, caller: str) -> None:
    monkeypatch.setenv("TWILIO_VOICE_FROM", caller)
    refused = send()
    assert refused.exit_code == 2
    assert "voice: TWILIO_VOICE_FROM must be a phone number in E.164" in refused.output
    assert "Traceback" not in refused.output
    assert calls.requests == []


def test_without_a_number_to_call_from_the_send_names_twilio_voice_from(calls: TwilioFake, monkeypatch: pytest.MonkeyPatch) -> None:
    # an alphanumeric SMS sender cannot place a call
    monkeypatch.setenv("TWILIO_FROM", "PwaniPower")
    refused = send()
    assert refused.exit_code == 2
    assert "TWILIO_VOICE_FROM" in refused.output and "TWILIO_FROM is not a phone number" in refused.output
    assert calls.requests == []


def test_the_preview_shows_the_call_script_and_its_duration(tmp_path: Path) -> None:
    checked = CliRunner().invoke(main, ["check", str(STORM), "--json", "--force"], catch_exceptions=False)
    rows = {r["language"]: r for r in json.loads(checked.stdout)["renderings"] if r["channel"] == "voice"}
    assert rows["en"]["voice"] == "Polly.Amy (en-GB)" and rows["ar"]["voice"] == "Polly.Zeina (arb)"
    assert rows["sw"]["voice"] == "Polly.Amy (en-GB)" and rows["sw"]["spoken"] == "en"
    # 150 words a minute, a second after each <Say>, 8 s waiting for the key
    paragraphs = load_text("en").split("\n\n")
    words = sum(len(p.split()) for p in paragraphs)
    assert rows["en"]["seconds"] == math.ceil(words * 60 / 150 + len(paragraphs) + 8) >= 60
    out = tmp_path / "preview"
    previewed = CliRunner().invoke(
        main, ["preview", str(STORM), "--contacts", str(CONTACTS), "--out", str(out), "--force"], catch_exceptions=False
    )
    assert previewed.exit_code == 0, previewed.output
    assert "voice   en     subject: call ≈ 1 min" in previewed.stdout
    page = (out / "index.html").read_text(encoding="utf-8")
    panel = page.split('id="panel-voice-sw"', 1)[1].split("</article>", 1)[0]
    assert "call ≈ 1 min" in panel and "read by Polly.Amy (en-GB) in English: no Twilio voice for sw" in panel
    assert "If you are safe, press 1." in panel and "<b>2</b> recipients" in panel


def load_text(lang: str) -> str:
    from broadcast.render import Templates, render_notice

    return render_notice(load_notice(STORM), Templates(), channels=["voice"]).get("voice", lang).text


# ----- lost answers: a call must never ring twice -----

CLIENT_TIMEOUT = 0.5


def adapter(fake: TwilioFake) -> VoiceChannel:
    settings = VoiceSettings(Secret(credentials.TWILIO_ACCOUNT_SID), Secret(credentials.TWILIO_AUTH_TOKEN),
                             credentials.TWILIO_FROM, None, fake.url)
    return VoiceChannel(settings, timeout=CLIENT_TIMEOUT)


def call_message(to: str = GRACE) -> Message:
    rendering = Rendering("voice", "en", subject="en", text="Boil your water, %%name%%.\n\nIf you are safe, press 1.")
    return Message("notice-1", "voice", "v1", to, "en", rendering, fields={"name": "Grace"})


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Any:
    with TwilioFake(faults=Faults(timeout_delay=1.5)) as fake:
        use_fakes(monkeypatch, twilio=fake)
        yield fake


@pytest.mark.parametrize("fault", ["timeout_after", "drop_after"])
def test_a_lost_answer_is_looked_up_and_the_call_is_not_placed_again(held: TwilioFake, fault: str) -> None:
    held.script([fault])
    outcome = deliver([call_message()], {"voice": adapter(held)}, policy=RetryPolicy(attempts=4, wait=False))
    assert outcome.counts["voice"] == {"sent": 1}
    assert [c["to"] for c in held.calls] == [GRACE]
    assert [r.method for r in held.requests] == ["POST", "GET"]
    assert held.invalid == []


@pytest.mark.parametrize("fault", ["drop_before", "timeout_before"])
def test_a_request_lost_before_twilio_took_it_is_called_once(held: TwilioFake, fault: str) -> None:
    held.script([fault])
    outcome = deliver([call_message()], {"voice": adapter(held)}, policy=RetryPolicy(attempts=4, wait=False))
    assert outcome.counts["voice"] == {"sent": 1}
    assert [c["to"] for c in held.calls] == [GRACE]


def test_after_a_crash_reconcile_finds_the_call_and_says_retry_for_one_never_placed(held: TwilioFake) -> None:
    placed, never = call_message(GRACE), call_message(AMINA)
    with adapter(held) as channel:
        [first] = channel.send([placed])
        tried = datetime.now(timezone.utc) - timedelta(minutes=1)
        found = channel.reconcile([(placed, tried), (never, tried)])
    assert [(r.status, r.provider_id) for r in found] == [("sent", first.provider_id), ("retry", None)]
    assert "calling is safe" in (found[1].reason or "")
    assert len(held.calls) == 1
    lookups = [r.query for r in held.requests if r.method == "GET"]
    assert lookups and all(q["From"] == credentials.TWILIO_FROM for q in lookups)
    assert held.invalid == []


# ----- the contacts file: who asked for a call -----


@pytest.mark.parametrize("rows", [("", "voice"), ("voice", "")], ids=["empty-then-voice", "voice-then-empty"])
def test_a_contact_who_asks_for_a_call_on_one_of_two_rows_is_called_and_keeps_every_other_channel(tmp_path: Path, rows: tuple[str, str]) -> None:
    contacts = tmp_path / "twice.csv"
    contacts.write_text(
        "name,email,phone,language,channels\n"
        f"Grace Wambui,grace.wambui@pwani-mail.example,+254712555101,en,{rows[0]}\n"
        f"Grace Wambui,,+254712555101,en,{rows[1]}\n",
        encoding="utf-8",
    )
    planned = CliRunner().invoke(
        main, ["send", str(STORM), "--contacts", str(contacts), "--dry-run", "--json", "--out", str(tmp_path / "o")],
        catch_exceptions=False,
    )
    assert planned.exit_code == 0, planned.output
    counts = json.loads(planned.stdout)["channels"]
    assert {c: counts[c]["planned"] for c in ("email", "sms", "voice")} == {"email": 1, "sms": 1, "voice": 1}


def test_check_refuses_a_call_script_that_leaves_out_a_support_channel(tmp_path: Path) -> None:
    import shutil

    from broadcast.render import default_templates_dir

    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    script = templates / "voice" / "script.txt.j2"
    script.write_text(script.read_text(encoding="utf-8").split("{%- for channel")[0], encoding="utf-8")
    checked = CliRunner().invoke(main, ["check", str(STORM), "--templates", str(templates)])
    assert checked.exit_code == 2
    for lang in ("en", "sw", "sl", "ar"):
        assert f"voice ({lang}) leaves out hotline: +254 800 720 555" in checked.output
    assert "Traceback" not in checked.output


def test_when_the_default_language_has_no_voice_either_nobody_in_it_is_called_and_the_report_says_so(calls: TwilioFake, tmp_path: Path) -> None:
    notice = tmp_path / "swahili-first.yaml"
    notice.write_text(STORM.read_text(encoding="utf-8").replace("languages: [en, sw, sl, ar]", "languages: [sw, en, sl, ar]", 1),
                      encoding="utf-8")
    sent = CliRunner().invoke(
        main, ["send", str(notice), "--contacts", str(CONTACTS), "--channel", "voice", "--yes", "--force", "--json"],
        catch_exceptions=False,
    )
    assert sent.exit_code == 1, sent.output  # 1: messages failed, named below
    report = json.loads(sent.stdout)
    # Swahili and Slovenian have no voice, and neither has the default language (sw) they would fall back to
    assert report["channels"]["voice"]["failed"] == 3 and report["channels"]["voice"]["sent"] == 2
    for lang in ("sw", "sl"):
        said = f"voice: {lang} has no Twilio voice, nor has the default language sw; the {lang} contacts are not called"
        assert said in sent.stderr + sent.stdout
    assert sorted(c["to"] for c in calls.calls) == sorted([GRACE, AMINA])
