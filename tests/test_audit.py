"""The audit log tells the whole story of a notice, holds no address or secret, and nothing changes its rows;
approvals hold across ledgers' users and refuse what cannot be trusted (revoked, tampered, another ledger, a race)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from broadcast import approve as approvals
from broadcast.cli import main
from broadcast.errors import InputError
from broadcast.ledger import metadata
from broadcast.plan import PlanRequest
from tests.fakes import credentials
from tests.fakes.fixtures import Fakes
from tests.test_approve import ANA, BANK, EDITED, ORIGINAL, SAM, approve, notice_and_people, run, send, sender  # noqa: F401
from tests.test_lifecycle import PEOPLE, marks

REPO = Path(__file__).resolve().parent.parent


def audit_rows(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM audit ORDER BY id"))]
    finally:
        engine.dispose()


def addresses() -> list[str]:
    """Every recipient address of the test audience, as written and as the ledger stores it."""
    out = []
    for people in PEOPLE.values():
        for _, email, phone in people:
            out += [email, phone, phone.lstrip("+"), phone[-9:]]
    return out


def test_the_log_shows_the_whole_story_and_holds_no_address_or_secret(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    url = os.environ["BROADCAST_LEDGER"]
    assert approve(notice, people)[0] == 0
    assert send(notice, people)[0] == 0
    notice.write_text(EDITED, encoding="utf-8")
    assert send(notice, people)[0] == 2
    assert approve(notice, people)[0] == 0
    assert send(notice, people)[0] == 0
    assert approve(notice, people, "--revoke")[0] == 0
    assert send(notice, people)[0] == 2
    assert run("check", notice)[0] == 0
    assert run("preview", notice, "--contacts", people, "--out", tmp_path / "preview")[0] == 0
    assert run("cancel", notice, "--yes", "--reason", "sent in error")[0] == 0

    code, out, err = run("log", notice, "--json")
    assert code == 0, err
    events = json.loads(out)["events"]
    story = [(e["event"], e["exit_code"]) for e in events]
    print("\naudit story:", story)
    assert story == [
        ("approve", 0), ("send", 0), ("send", 2), ("approve", 0), ("send", 0), ("revoke", 0), ("send", 2),
        ("check", 0), ("preview", 0), ("cancel", 0),
    ]
    first_send, refused, resend = events[1], events[2], events[4]
    assert first_send["who"] == SAM and first_send["source"] == "BROADCAST_USER"
    assert first_send["counts"]["sms"] == {"sent": 6} and first_send["counts"]["email"] == {"sent": 6}
    assert first_send["detail"] == "approved" and first_send["fingerprint"]
    assert "sms × sl changed since Ana Novak approved" in refused["detail"]
    assert resend["counts"]["sms"] == {"sent": 2}
    assert events[0]["who"] == ANA and events[0]["source"] == "--as" and events[0]["counts"]["sms"] == 6
    assert all(e["host"] and e["version"] for e in events)
    assert events[-1]["counts"] == {"email × en": 2, "email × sl": 2, "email × sw": 2, "sms × en": 2, "sms × sl": 2,
                                    "sms × sw": 2, "social × en": 1}, events[-1]["counts"]

    code, text, err = run("log", "bank-breach-2026-11")
    assert code == 0 and text.count("\n") == len(events) + 1
    assert "approve  exit 0  Ana Novak <ana@lakeside-water.example> (--as)" in text

    # nothing in the audit table is an address or a secret: they are counted, never written
    dump = json.dumps(audit_rows(url), default=str, ensure_ascii=False)
    found = [s for s in (*addresses(), *credentials.SECRETS) if s in dump]
    print(f"audit rows: {len(events)}, searched for {len(addresses())} address forms and {len(credentials.SECRETS)} secrets: {len(found)} found")
    assert found == []


def test_nothing_in_broadcast_updates_or_deletes_an_audit_row(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        notice, people = notice_and_people(tmp_path)
        approve(notice, people)
        send(notice, people)
        notice.write_text(EDITED, encoding="utf-8")
        send(notice, people)
        approve(notice, people, "--revoke")
        run("status", notice)
        run("log", notice)
        run("cancel", notice, "--yes", "--reason", "test")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    writes = [s for s in statements if re.search(r"\b(UPDATE|DELETE\s+FROM|INSERT\s+OR\s+REPLACE\s+INTO)\s+\"?(audit|approvals)\b", s, re.I)]
    inserts = [s for s in statements if re.search(r"INSERT INTO \"?audit\b", s, re.I)]
    print(f"\n{len(statements)} statements, {len(inserts)} audit inserts, {len(writes)} updates/deletes of audit or approvals")
    assert inserts and writes == []


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_ledger(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        metadata.drop_all(engine)
        engine.dispose()
    monkeypatch.setenv("BROADCAST_LEDGER", url)
    return url


def test_the_database_itself_refuses_to_change_an_audit_row(live_send: Fakes, sender: str, tmp_path: Path, shared_ledger: str) -> None:
    notice, people = notice_and_people(tmp_path)
    assert approve(notice, people)[0] == 0
    engine = sa.create_engine(shared_ledger)
    try:
        for statement in ("UPDATE audit SET exit_code = 0", "DELETE FROM audit", "UPDATE approvals SET approver = 'x'",
                          "DELETE FROM approvals"):
            with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
    assert len(audit_rows(shared_ledger)) == 1


def test_an_approval_made_in_one_process_is_honoured_by_a_send_in_another(live_send: Fakes, sender: str, tmp_path: Path, shared_ledger: str) -> None:
    """The laptop approves, the CI runner sends: two processes, one shared ledger (SQLite file or PostgreSQL), the
    approval signed with a key both have (so its time stamp must read back the same from either database)."""
    notice, people = notice_and_people(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROADCAST_APPROVAL_KEY": "shared-k3y"}
    laptop = subprocess.run(
        [sys.executable, "-m", "broadcast", "approve", str(notice), "--contacts", str(people), "--as", ANA, "--yes"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert laptop.returncode == 0, laptop.stderr
    before = marks(live_send)
    runner = subprocess.run(
        [sys.executable, "-m", "broadcast", "send", str(notice), "--contacts", str(people), "--yes", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert runner.returncode == 0, runner.stderr
    assert marks(live_send)["sms"] - before["sms"] == 6
    assert json.loads(runner.stdout)["channels"]["sms"]["sent"] == 6
    print(f"\n{shared_ledger.split(':')[0]}: approved in pid A, sent in pid B: {marks(live_send)['sms'] - before['sms']} SMS")


def test_two_approvers_racing_one_is_told_to_look_again(live_send: Fakes, sender: str, tmp_path: Path, shared_ledger: str) -> None:
    notice, people = notice_and_people(tmp_path)
    request = approvals.ApproveRequest(PlanRequest(notice, (people,)), who=ANA)

    def meanwhile(result: approvals.ApproveResult) -> bool:
        # while Ana reads her summary, Bo approves and is recorded first
        code, out, err = approve(notice, people, who="Bo Kim <bo@lakeside-water.example>")
        assert code == 0, err
        return True

    with pytest.raises(InputError, match=r"another approval of bank-breach-2026-11 was recorded while you were looking \(#1, approve by Bo Kim"):
        approvals.run(request, confirm=meanwhile)
    rows = audit_rows(shared_ledger)
    assert [(r["event"], r["who"], r["exit_code"]) for r in rows] == [
        ("approve", "Bo Kim <bo@lakeside-water.example>", 0), ("approve", ANA, 2),
    ]
    # Bo's approval stands, and the send goes out on it
    assert send(notice, people)[0] == 0


def test_a_revoked_approval_refuses_the_send(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    assert approve(notice, people)[0] == 0
    code, out, err = approve(notice, people, "--revoke")
    assert code == 0 and "Revoked: #2" in out
    before = marks(live_send)
    code, out, err = send(notice, people)
    assert code == 2 and marks(live_send) == before
    assert "sms × en: the approval was revoked by Ana Novak" in err


def test_a_tampered_approval_row_is_refused_with_the_key(live_send: Fakes, sender: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_APPROVAL_KEY", "k3y-for-tests")
    notice, people = notice_and_people(tmp_path)
    url = os.environ["BROADCAST_LEDGER"]
    assert approve(notice, people)[0] == 0
    # someone with write access to the database makes the approval cover another approver
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER approvals_no_update"))
        conn.execute(sa.text("UPDATE approvals SET approver = 'Boss <boss@lakeside-water.example>'"))
    engine.dispose()
    before = marks(live_send)
    code, out, err = send(notice, people)
    assert code == 2 and marks(live_send) == before
    assert "does not match its signature (BROADCAST_APPROVAL_KEY)" in err
    # and a signed row is not taken on trust by a run that cannot check it
    monkeypatch.delenv("BROADCAST_APPROVAL_KEY")
    code, out, err = send(notice, people)
    assert code == 2 and "is signed, and BROADCAST_APPROVAL_KEY is not set" in err


def test_an_approval_made_for_another_ledger_is_refused(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert run("approve", notice, "--contacts", people, "--as", ANA, "--yes", "--ledger", other)[0] == 0
    url = os.environ["BROADCAST_LEDGER"]
    assert send(notice, people)[0] == 2  # this ledger has no approval yet (and its own id)
    source, target = sa.create_engine(other), sa.create_engine(url)
    with source.connect() as conn:
        row = dict(conn.execute(sa.select(metadata.tables["approvals"])).one()._mapping)
    with target.begin() as conn:
        conn.execute(metadata.tables["approvals"].insert().values(**row))
    source.dispose(), target.dispose()
    before = marks(live_send)
    code, out, err = send(notice, people)
    assert code == 2 and marks(live_send) == before
    assert "approval #1 of bank-breach-2026-11 (by Ana Novak <ana@lakeside-water.example>" in err
    assert "was made for another ledger" in err


def test_approving_a_notice_that_fails_check_records_no_approval_only_the_refusal(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    code, out, err = approve(notice, people, "--max-sms-segments", "1")
    assert code == 2 and "nothing was approved" in err and "Traceback" not in err
    rows = audit_rows(os.environ["BROADCAST_LEDGER"])
    assert [(r["event"], r["exit_code"]) for r in rows] == [("approve", 2)]
    assert send(notice, people)[0] == 2


def test_approving_with_no_contacts_is_refused(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, _ = notice_and_people(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("name,email,phone,language\n", encoding="utf-8")
    code, out, err = approve(notice, empty)
    assert code == 2 and "no contacts" in err and "nothing was approved" in err


def test_an_emergency_may_go_out_unapproved_and_is_logged(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path, ORIGINAL.replace("severity: urgent", "severity: emergency"))
    before = marks(live_send)
    code, out, err = send(notice, people, "--no-approval", "gas leak; approver unreachable")
    assert code == 0, err + out
    assert marks(live_send)["sms"] - before["sms"] == 6
    assert any("sent WITHOUT approval (override: gas leak; approver unreachable)" in w for w in json.loads(out)["warnings"])
    assert "SENT WITHOUT APPROVAL (override: gas leak; approver unreachable)" in err
    events = json.loads(run("log", notice, "--json")[1])["events"]
    assert [(e["event"], e["detail"]) for e in events] == [("send", "override: gas leak; approver unreachable")]
    coloured = CliRunner().invoke(main, ["log", str(notice)], color=True).stdout
    assert "\x1b[31m" in coloured and "override: gas leak" in coloured
    print("\nemergency override logged:", events[0]["event"], events[0]["who"], events[0]["detail"], events[0]["counts"]["sms"])


def test_no_approval_is_refused_for_a_notice_that_is_not_an_emergency(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    before = marks(live_send)
    code, out, err = send(notice, people, "--no-approval", "in a hurry")
    assert code == 2 and marks(live_send) == before
    assert "--no-approval is only for a notice with severity: emergency (this one is urgent)" in err


def test_a_new_contact_keeps_the_approval_unless_the_audience_is_fixed(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    assert approve(notice, people)[0] == 0
    with people.open("a", encoding="utf-8") as f:
        f.write("Nia,nia@mail.example,+254712300009,sw\n")
    fixed = ORIGINAL.replace("approval: required\n", "approval:\n  policy: required\n  audience: fixed\n")
    notice.write_text(fixed, encoding="utf-8")
    code, out, err = send(notice, people)
    assert code == 2, out
    assert "the contacts or channels changed since Ana Novak approved" in err
    notice.write_text(ORIGINAL, encoding="utf-8")
    code, out, err = send(notice, people)
    assert code == 0, err + out
    assert json.loads(out)["channels"]["sms"]["sent"] == 7


def test_ctrl_c_during_a_send_is_logged_as_a_stop_with_its_counts(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    import signal
    import time

    twilio = live_send.twilio
    twilio.latency = 0.05
    notice, _ = notice_and_people(tmp_path, BANK.read_text(encoding="utf-8"))
    contacts = tmp_path / "many.csv"
    contacts.write_text("phone,language\n" + "\n".join(f"+38641{n:06d},sl" for n in range(100, 400)) + "\n", encoding="utf-8")
    args = [sys.executable, "-m", "broadcast", "send", str(notice), "--contacts", str(contacts), "--channel", "sms", "--yes", "--json", "--force"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while len(twilio.deliveries) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    sent = json.loads(out)["channels"]["sms"]["sent"]
    events = json.loads(run("log", notice, "--json")[1])["events"]
    assert [(e["event"], e["exit_code"]) for e in events] == [("stop", 130)]
    assert events[0]["counts"]["sms"]["sent"] == sent and events[0]["counts"]["sms"]["not_started"] > 0
    print(f"\nstop logged: sent {sent}, not started {events[0]['counts']['sms']['not_started']}")
