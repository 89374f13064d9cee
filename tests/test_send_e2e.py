"""End to end against the provider fakes: every channel delivered exactly once, and re-runs driven by the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import CONTACTS, EXAMPLE
from tests.fakes.fixtures import Fakes


@pytest.fixture()
def fakes(live_send: Fakes) -> Fakes:
    return live_send


def send(*args: object) -> dict:
    # --force: the example's Slovenian SMS is 9 UCS-2 segments; these tests are about delivery, not length
    result = CliRunner().invoke(main, ["send", *map(str, args), "--yes", "--json", "--force"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def sms_contacts(path: Path, numbers: range, language: str = "sl") -> Path:
    lines = ["name,phone,language"] + [f"Person {n},+38641{n:06d},{language}" for n in numbers]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_channel_delivers_each_planned_message_exactly_once(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, x = fakes
    data = send(EXAMPLE, "--contacts", CONTACTS)
    channels = data["channels"]
    assert channels["email"]["sent"] == channels["email"]["planned"] == len(sendgrid.deliveries) == 11
    # 8, not 9: the example's row 13 has a London landline, which gets no SMS (a fixed-line number)
    assert channels["sms"]["sent"] == channels["sms"]["planned"] == len(twilio.deliveries) == 8
    assert channels["social"]["sent"] == 1 and len(x.deliveries) == 7  # one English thread of 7 posts
    assert channels["web"]["sent"] == 3 and sorted(p.name for p in (tmp_path / "web").iterdir()) == [
        "banner.en.html", "banner.json", "banner.sl.html", "banner.sw.html"
    ]
    for fake in fakes:
        assert fake.invalid == [] and fake.duplicates() == {}
    # each recipient's own language reached the provider: the example's Slovenian SMS says "prekuhajte"
    from broadcast.contacts import read_contacts

    languages = {c.phone: c.language for c in read_contacts([CONTACTS]).contacts if c.phone}
    bodies = {d.recipient: d.payload["body"].lower() for d in twilio.deliveries}
    assert set(bodies) <= set(languages)
    slovenian = {phone for phone in bodies if languages[phone].startswith("sl")}
    assert slovenian and all("prekuhajte" in bodies[phone] for phone in slovenian)
    assert all("prekuhajte" not in body for phone, body in bodies.items() if phone not in slovenian)


def test_rerun_sends_nothing_and_new_contacts_only(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    first = sms_contacts(tmp_path / "a.csv", range(100, 130))
    send(EXAMPLE, "--contacts", first, "--channel", "sms")
    assert len(twilio.deliveries) == 30
    again = send(EXAMPLE, "--contacts", first, "--channel", "sms")
    assert again["channels"]["sms"]["sent"] == 0 and again["channels"]["sms"]["skipped"] == 30
    assert again["channels"]["sms"]["skipped_reasons"] == {"already sent": 30}
    more = sms_contacts(tmp_path / "b.csv", range(100, 135))
    third = send(EXAMPLE, "--contacts", more, "--channel", "sms")
    assert third["channels"]["sms"]["sent"] == 5
    assert len(twilio.deliveries) == 35 and twilio.duplicates() == {}


def test_transient_failures_are_sent_on_the_next_run(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    contacts = sms_contacts(tmp_path / "a.csv", range(100, 110))
    twilio.script([503] * 50)  # more 503s than the retry policy's attempts for 10 messages
    first = send(EXAMPLE, "--contacts", contacts, "--channel", "sms")
    assert first["channels"]["sms"]["failed"] == 10 and len(twilio.deliveries) == 0
    second = send(EXAMPLE, "--contacts", contacts, "--channel", "sms")
    assert second["channels"]["sms"]["sent"] == 10 and twilio.duplicates() == {}


def test_edited_notice_goes_to_everyone_again_as_an_update(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    contacts = sms_contacts(tmp_path / "a.csv", range(100, 105), language="en")
    send(EXAMPLE, "--contacts", contacts, "--channel", "sms")
    edited = tmp_path / "edited.yaml"
    edited.write_text(EXAMPLE.read_text(encoding="utf-8").replace("Boil your tap water", "Still boil your tap water"), encoding="utf-8")
    data = send(edited, "--contacts", contacts, "--channel", "sms")
    assert data["channels"]["sms"]["sent"] == 5
    bodies = [r.body for r in twilio.requests if r.method == "POST"]
    assert len(bodies) == 10
    assert all(not b["Body"].startswith("UPDATE") for b in bodies[:5])
    assert all(b["Body"].startswith("UPDATE") for b in bodies[5:])


def test_resend_after_sends_a_reminder_to_old_sends_only(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    contacts = sms_contacts(tmp_path / "a.csv", range(100, 104))
    send(EXAMPLE, "--contacts", contacts, "--channel", "sms")
    assert send(EXAMPLE, "--contacts", contacts, "--channel", "sms", "--resend-after", "1h")["channels"]["sms"]["sent"] == 0
    engine = sa.create_engine(os.environ["BROADCAST_LEDGER"])
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE deliveries SET sent_at = datetime('now', '-2 hours') WHERE recipient IN ('+38641000100', '+38641000101')")
    engine.dispose()
    data = send(EXAMPLE, "--contacts", contacts, "--channel", "sms", "--resend-after", "1h")
    assert data["channels"]["sms"]["sent"] == 2
    assert twilio.delivery_counts()["+38641000100"] == 2 and twilio.delivery_counts()["+38641000103"] == 1


def test_stop_replies_and_suppression_files_are_honoured_on_every_run(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    folder = tmp_path / "contacts"
    folder.mkdir()
    contacts = sms_contacts(folder / "people.csv", range(100, 106))
    twilio.unsubscribed.add("+38641000100")
    first = send(EXAMPLE, "--contacts", contacts, "--channel", "sms")
    assert first["channels"]["sms"]["sent"] == 5 and first["channels"]["sms"]["failed"] == 1
    (folder / "suppressions.csv").write_text("phone\n+386 41 000 101\n", encoding="utf-8")
    edited = tmp_path / "edited.yaml"
    edited.write_text(EXAMPLE.read_text(encoding="utf-8").replace("severity: urgent", "severity: emergency"), encoding="utf-8")
    twilio.unsubscribed.clear()
    data = send(edited, "--contacts", contacts, "--channel", "sms")
    assert data["channels"]["sms"]["sent"] == 4
    assert data["channels"]["sms"]["skipped_reasons"] == {"suppressed": 2}
    assert twilio.delivery_counts()["+38641000100"] == 0 and twilio.delivery_counts()["+38641000101"] == 1


def test_status_shows_what_the_ledger_knows(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    send(EXAMPLE, "--contacts", CONTACTS, "--channel", "sms,email")
    result = CliRunner().invoke(main, ["status", str(EXAMPLE), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    sent = {c: sum(r["sent"] for r in data["rows"] if r["channel"] == c) for c in ("sms", "email")}
    assert sent == {"sms": 8, "email": 11}
    # a row per channel, language and version: each language's message is versioned on its own
    assert {r["language"] for r in data["rows"] if r["channel"] == "sms"} == {"en", "sl", "sw"}
    assert data["last_run"]
    # the timeline: the first release is the alert
    assert [(t["number"], t["type"], t["phase"]) for t in data["timeline"]] == [(1, "Alert", "alert")]
    table = CliRunner().invoke(main, ["status", "boil-water-2026-03"])
    assert "sms" in table.output and "email" in table.output


def _broadcast(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "broadcast", "send", *map(str, args), "--yes", "--json", "--force"],
        cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )


def test_two_runs_at_once_never_send_twice(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    twilio.latency = 0.01
    contacts = sms_contacts(tmp_path / "a.csv", range(100, 400))
    runs = [_broadcast(EXAMPLE, "--contacts", contacts, "--channel", "sms") for _ in range(2)]
    outputs = [_output(p) for p in runs]
    assert twilio.duplicates() == {}
    assert len(twilio.deliveries) == 300
    assert sum(o["channels"]["sms"]["sent"] for o in outputs) == 300


def test_sigkill_mid_send_loses_nobody_and_duplicates_nothing(fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    twilio.latency = 0.05
    # the dead run's SMS are looked up two provider timeouts after their attempt; the fakes answer in milliseconds
    monkeypatch.setenv("BROADCAST_PROVIDER_TIMEOUT", "1")
    contacts = sms_contacts(tmp_path / "a.csv", range(100, 400))
    process = _broadcast(EXAMPLE, "--contacts", contacts, "--channel", "sms")
    deadline = time.monotonic() + 60
    while len(twilio.deliveries) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    delivered_before = len(twilio.deliveries)
    assert 60 <= delivered_before < 300
    twilio.latency = 0.0
    time.sleep(0.2)  # requests the dead run had in flight finish at the fake
    data = send(EXAMPLE, "--contacts", contacts, "--channel", "sms")
    sms = data["channels"]["sms"]
    assert twilio.duplicates() == {}
    assert len(twilio.deliveries) == 300
    # every recipient is accounted for: sent before the crash, found by reconciliation, or sent now
    assert sms["skipped_reasons"].get("already sent", 0) + sms["reconciled"] + sms["sent"] == 300
    assert sms["unknown"] == 0


def test_postgres_ledger_two_runs_at_once_then_a_rerun(fakes, postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    from broadcast.ledger import metadata

    engine = sa.create_engine(postgres_url)
    metadata.drop_all(engine)
    engine.dispose()
    monkeypatch.setenv("BROADCAST_LEDGER", postgres_url)
    _, twilio, _ = fakes
    twilio.latency = 0.01
    contacts = sms_contacts(tmp_path / "a.csv", range(100, 300))
    runs = [_broadcast(EXAMPLE, "--contacts", contacts, "--channel", "sms") for _ in range(2)]
    outputs = [_output(p) for p in runs]
    assert twilio.duplicates() == {} and len(twilio.deliveries) == 200
    assert sum(o["channels"]["sms"]["sent"] for o in outputs) == 200
    again = send(EXAMPLE, "--contacts", contacts, "--channel", "sms")
    assert again["channels"]["sms"]["sent"] == 0 and again["channels"]["sms"]["skipped_reasons"] == {"already sent": 200}


def _output(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode in (0, 1), err.decode(errors="replace")
    return json.loads(out)
