"""A notice's follow_up rules, applied by the next `send`: the other channel for the unreached, one reminder for
those who did not reply; each once, across runs and a crash between."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE
from tests.fakes.fixtures import Fakes
from tests.test_sync import invoke, phone


@pytest.fixture()
def fakes(live_send: Fakes) -> Fakes:
    live_send.twilio.settle_after = 0
    return live_send


def notice(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "boil-water.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8") + "\nfollow_up:\n" + rules, encoding="utf-8")
    return path


def people(tmp_path: Path, n: int, channels: str = "sms") -> Path:
    path = tmp_path / "people.csv"
    rows = ["name,email,phone,language,channels"] + [
        f"Person {i},person{i}@example.org,+2547125{i:05d},en,{channels}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path




def send(path: Path, contacts: Path, channels: str = "email,sms") -> dict:
    result = invoke("send", path, "--contacts", contacts, "--channel", channels, "--yes", "--json", "--force")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def sync(path: Path) -> None:
    assert invoke("sync", path, "--channel", "sms").exit_code == 0


def test_an_undelivered_sms_is_followed_by_an_email_once_the_rule_is_due(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    path = notice(tmp_path, "  - {if: undelivered, after: 15m, then: other_channel}\n")
    contacts = people(tmp_path, 3)
    twilio.outcome(phone(1), "undelivered", error_code=30003)
    first = send(path, contacts)
    assert first["channels"]["sms"]["sent"] == 3 and not sendgrid.deliveries
    twilio.advance(5)
    sync(path)
    # not yet 15 minutes: nothing more
    send(path, contacts)
    assert not sendgrid.deliveries
    # due now (a rule's `after` is no part of what recipients read: changing it sends nobody the notice again)
    path.write_text(path.read_text(encoding="utf-8").replace("after: 15m", "after: 0s"), encoding="utf-8")
    # a dry-run shows what is due, and records nothing
    dry = invoke("send", path, "--contacts", contacts, "--channel", "email,sms", "--dry-run", "--out", tmp_path / "d")
    assert "follow-ups (the notice's follow_up rules): 1 on their other channel" in " ".join(dry.output.split())
    from broadcast.ledger import Ledger

    seen = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", read_only=True)
    assert seen.follow_ups("boil-water-2026-03") == {}
    seen.engine.dispose()
    twilio.reset()
    send(path, contacts)
    assert [d.recipient for d in sendgrid.deliveries] == ["person1@example.org"] and not twilio.deliveries
    dry = invoke("send", path, "--contacts", contacts, "--channel", "email,sms", "--dry-run", "--out", tmp_path / "o")
    assert "follow-ups" not in dry.output  # done: nothing more is due
    # once: the next runs send nothing more
    send(path, contacts)
    send(path, contacts)
    assert len(sendgrid.deliveries) == 1 and not twilio.deliveries
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", read_only=True)
    assert [key[0] for key in ledger.follow_ups("boil-water-2026-03")] == ["other_channel"]
    ledger.engine.dispose()


def test_a_failed_email_is_followed_by_an_sms(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    path = notice(tmp_path, "  - {if: undelivered, after: 0s, then: other_channel}\n")
    contacts = people(tmp_path, 2, channels="email")
    sendgrid.outcome("person0@example.org", "bounced", reason="550 no such user", bounce_type="hard")
    send(path, contacts)
    assert invoke("sync", path, "--channel", "email").exit_code == 0
    send(path, contacts)
    assert [d.recipient for d in twilio.deliveries] == [phone(0)]


def test_no_reply_gets_one_reminder_across_runs(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path, "  - {if: no_reply, after: 0s, then: resend}\n")
    contacts = people(tmp_path, 3)
    send(path, contacts, "sms")
    twilio.inbound(phone(0), "1")
    sync(path)
    twilio.reset()
    second = send(path, contacts, "sms")
    assert sorted(d.recipient for d in twilio.deliveries) == [phone(1), phone(2)]
    assert second["channels"]["sms"]["sent"] == 2 and second["follow_ups"] == {"resend": 2}
    twilio.reset()
    send(path, contacts, "sms")
    send(path, contacts, "sms")
    assert twilio.deliveries == []


def test_a_reminder_planned_by_a_run_that_died_before_sending_goes_out_with_the_next_run(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path, "  - {if: no_reply, after: 0s, then: resend}\n")
    contacts = people(tmp_path, 2)
    send(path, contacts, "sms")
    # a run plans (and records) the reminders, then dies before claiming a message
    from broadcast.ledger import Ledger
    from broadcast.plan import PlanRequest, prepare

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    plan, _ = prepare(PlanRequest(notice=path, contacts=(contacts,), channels=("sms",), force=True), ledger)
    assert plan.to_send["sms"] == 2 and ledger.follow_ups("boil-water-2026-03")
    ledger.close()
    twilio.reset()
    send(path, contacts, "sms")
    assert sorted(d.recipient for d in twilio.deliveries) == [phone(0), phone(1)]
    twilio.reset()
    send(path, contacts, "sms")
    assert twilio.deliveries == []


def test_a_reminder_whose_answer_was_lost_is_not_sent_twice(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path, "  - {if: no_reply, after: 0s, then: resend}\n")
    contacts = people(tmp_path, 1)
    send(path, contacts, "sms")
    twilio.reset()
    # Twilio takes the reminder but the answer is lost: broadcast looks it up instead of sending it again
    twilio.script(["drop_after"])
    send(path, contacts, "sms")
    assert len(twilio.deliveries) == 1
    twilio.reset()
    send(path, contacts, "sms")
    send(path, contacts, "sms")
    assert twilio.deliveries == []


def test_follow_up_rules_are_checked(tmp_path: Path) -> None:
    path = notice(tmp_path, "  - {if: undelivered, after: soon, then: other_channel}\n")
    result = invoke("check", path)
    assert result.exit_code == 2 and "follow_up" in result.output and "Traceback" not in result.output
    path = notice(tmp_path, "  - {if: bounced, after: 15m, then: other_channel}\n")
    result = invoke("check", path)
    assert result.exit_code == 2 and "follow_up" in result.output
