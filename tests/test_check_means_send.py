"""`check` means `send`: check and preview word, count and refuse exactly as a live send of the same input would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.segments import count_segments
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import Fakes

CONTACTS = "name,phone,language\nAna,+38641555010,sl\nBen,+447911123456,en\nCiku,+254712345678,sw\n"


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output and "Internal error" not in result.output, result.output
    return result.exit_code, result.stdout


@pytest.fixture()
def live(live_send: Fakes, tmp_path: Path) -> Fakes:
    (tmp_path / "people.csv").write_text(CONTACTS, encoding="utf-8")
    return live_send


def predicted(notice: Path, *extra: object) -> dict[str, int]:
    """Language → SMS segments, as `check --json` predicts them."""
    code, out = run("check", notice, "--json", "--max-sms-segments", "20", *extra)
    assert code == 0, out
    return {r["language"]: r["segments"] for r in json.loads(out)["renderings"] if r["channel"] == "sms"}


def sent_segments(fakes: Fakes, since: int = 0) -> dict[str, int]:
    """Phone → segments of the SMS the Twilio fake received (counted from the body, not from our report)."""
    return {d.recipient: count_segments(d.payload["body"]).segments for d in fakes.twilio.deliveries[since:]}


PHONES = {"sl": "+38641555010", "en": "+447911123456", "sw": "+254712345678"}


def test_check_predicts_the_segments_of_the_first_send_and_of_the_update(live: Fakes, tmp_path: Path) -> None:
    notice = tmp_path / "notice.yaml"
    notice.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    first = predicted(notice)
    code, out = run("send", notice, "--contacts", tmp_path / "people.csv", "--channel", "sms", "--yes", "--json",
                    "--max-sms-segments", "20")
    assert code == 0, out
    assert sent_segments(live) == {PHONES[lang]: n for lang, n in first.items()}

    # one edited English sentence: the next send is an update in English only (the other languages' texts did not
    # change), and check (reading the same ledger) says so and counts it
    text = notice.read_text(encoding="utf-8")
    assert "Boil" in text
    notice.write_text(text.replace("Boil", "Please boil", 1), encoding="utf-8")
    code, out = run("check", notice, "--json", "--max-sms-segments", "20")
    assert json.loads(out)["updated"] == {"sms": ["en"]}
    update = predicted(notice)
    assert any(update[lang] >= first[lang] for lang in first)
    before = len(live.twilio.deliveries)
    code, out = run("send", notice, "--contacts", tmp_path / "people.csv", "--channel", "sms", "--yes", "--json",
                    "--max-sms-segments", "20")
    assert code == 0, out
    bodies = [d.payload["body"] for d in live.twilio.deliveries[before:]]
    assert len(bodies) == 1 and bodies[0].startswith("UPDATE: ")
    assert sent_segments(live, before) == {PHONES["en"]: update["en"]}


def test_check_preview_and_send_refuse_the_same_over_long_sms_with_the_same_exit_code(live: Fakes, tmp_path: Path) -> None:
    # one segment: even the SMS template's shortest form is longer, so a live send refuses
    common = ("--max-sms-segments", 1)
    contacts = ("--contacts", tmp_path / "people.csv", "--channel", "sms")
    check_code, check_out = run("check", EXAMPLE, *common, "--json")
    preview_code, _ = run("preview", EXAMPLE, *contacts, *common, "--out", tmp_path / "preview")
    send_code, _ = run("send", EXAMPLE, *contacts, *common, "--yes")
    assert check_code == preview_code == send_code == 2
    assert len(live.twilio.requests) == 0
    assert (tmp_path / "preview" / "index.html").is_file()  # the preview is still there to look at
    # every language over the limit is named, not only the first
    checked = json.loads(check_out)
    over = sorted(r["language"] for r in checked["renderings"] if r["channel"] == "sms" and r["segments"] > 1)
    assert len(over) >= 2 and sorted(checked["sms_over_limit"]) == over and checked["ok"] is False
    # --force is accepted by all three, and then all three agree again
    assert run("check", EXAMPLE, *common, "--force")[0] == 0
    assert run("preview", EXAMPLE, *contacts, *common, "--force", "--out", tmp_path / "p2")[0] == 0
    assert run("send", EXAMPLE, *contacts, *common, "--force", "--yes")[0] == 0
    assert len(live.twilio.deliveries) == 3


def test_a_send_with_nothing_to_send_does_not_ask_to_send_zero_messages(live: Fakes, tmp_path: Path) -> None:
    contacts = ("--contacts", tmp_path / "people.csv", "--channel", "sms", "--max-sms-segments", "20")
    assert run("send", EXAMPLE, *contacts, "--yes")[0] == 0
    # no --yes, not a terminal: with nothing left to send there is nothing to confirm, and no refusal either
    result = CliRunner().invoke(main, ["send", str(EXAMPLE), *map(str, contacts)])
    assert result.exit_code == 0, result.output
    assert "Send 0 messages" not in result.output


def test_an_http_link_is_shown_by_check_preview_and_send_alike(live: Fakes, tmp_path: Path) -> None:
    notice = tmp_path / "http.yaml"
    notice.write_text(EXAMPLE.read_text(encoding="utf-8").replace("https://lakeside.example/chat", "http://lakeside.example/chat"),
                      encoding="utf-8")
    contacts = ("--contacts", tmp_path / "people.csv", "--channel", "sms")
    outputs = [
        CliRunner().invoke(main, [str(a) for a in args]).output
        for args in (("check", notice), ("preview", notice, *contacts, "--out", tmp_path / "p"), ("send", notice, *contacts, "--yes"))
    ]
    for output in outputs:
        assert "field 'channels[2].contact'" in output and "http:// link" in output, output
