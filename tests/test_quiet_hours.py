"""Quiet hours: an info or advisory notice holds SMS during each recipient's local night and sends them after it."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.errors import ContactsError, NoticeError
from broadcast.plan import PlanRequest
from broadcast.send import SendRequest, run
from tests.conftest import EXAMPLE
from tests.test_ledger import ledger, ledger_url, message, sent  # noqa: F401 - the ledger on SQLite and PostgreSQL

#: 19:30 UTC: 22:30 in Nairobi (UTC+3, night), 20:30 in Ljubljana (UTC+1 in November, evening), 11:30 in Los Angeles
NAIROBI_NIGHT = datetime(2026, 11, 28, 19, 30, tzinfo=UTC)
#: 05:30 UTC: 08:30 in Nairobi, 06:30 in Ljubljana (night), 21:30 the evening before in Los Angeles (night)
NAIROBI_MORNING = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)
#: 16:00 UTC: 19:00 in Nairobi, 17:00 in Ljubljana, 08:00 in Los Angeles: everyone is awake
AFTERNOON = datetime(2026, 11, 29, 16, 0, tzinfo=UTC)

WANJIRU = "+254712345678"
ANA = "+38641555010"
JOE = "+12135550100"


@pytest.fixture()
def fakes(live_send):  # noqa: ANN001, ANN201
    return live_send


def notice(tmp_path: Path, severity: str = "advisory", quiet: str | None = None) -> Path:
    """The example notice, in English only so every SMS is short, with this severity and quiet_hours."""
    text = EXAMPLE.read_text(encoding="utf-8").replace("severity: urgent", f"severity: {severity}")
    assert f"severity: {severity}" in text
    if quiet is not None:
        text = text.replace("\nseverity:", f"\nquiet_hours: {quiet}\nseverity:", 1)
    path = tmp_path / "notice.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def contacts(tmp_path: Path, la_zone: str = "America/Los_Angeles") -> Path:
    path = tmp_path / "people.csv"
    path.write_text(
        "name,email,phone,language,timezone\n"
        f"Wanjiru,wanjiru@mail.example,{WANJIRU},en,\n"
        f"Ana,ana@mail.example,{ANA},en,\n"
        f"Joe,,{JOE},en,{la_zone}\n",
        encoding="utf-8",
    )
    return path


def send(notice_path: Path, people: Path, now: datetime, *, dry_run: bool = False, out: Path | None = None):  # noqa: ANN201
    request = PlanRequest(notice_path, (people,), channels=("email", "sms"), force=True, now=now)
    return run(SendRequest(request, dry_run=dry_run, yes=True, out_dir=out or Path("outbox")))


def sms_to(twilio) -> list[str]:  # noqa: ANN001
    return sorted(d.recipient for d in twilio.deliveries)


def status(notice_path: Path) -> dict:
    result = CliRunner().invoke(main, ["status", str(notice_path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def held_in_ledger(notice_path: Path) -> int:
    return sum(row["held"] for row in status(notice_path)["rows"] if row["channel"] == "sms")


def test_only_the_sms_of_a_contact_in_their_night_is_held(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    path = notice(tmp_path)
    result = send(path, contacts(tmp_path), NAIROBI_NIGHT)
    assert sms_to(twilio) == sorted([ANA, JOE])
    # their email is not a phone ringing at night: it goes
    assert sorted(d.recipient for d in sendgrid.deliveries) == ["ana@mail.example", "wanjiru@mail.example"]
    assert result.outcome.held == {"sms": 1}
    assert result.plan.held == {"sms": 1} and result.plan.to_send["sms"] == 2
    (only,) = result.plan.held_shown
    assert only.message.recipient == WANJIRU and only.zone == "Africa/Nairobi"
    # 08:00 in Nairobi the next morning
    assert only.until == datetime(2026, 11, 29, 5, 0, tzinfo=UTC)
    assert held_in_ledger(path) == 1


def test_an_urgent_notice_holds_nobody(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    result = send(notice(tmp_path, severity="urgent"), contacts(tmp_path), NAIROBI_NIGHT)
    assert sms_to(twilio) == sorted([WANJIRU, ANA, JOE])
    assert result.plan.held == {} and result.outcome.held == {}


def test_the_first_run_after_quiet_hours_sends_the_held_once(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path, people = notice(tmp_path), contacts(tmp_path)
    send(path, people, NAIROBI_NIGHT)
    assert sms_to(twilio) == sorted([ANA, JOE])
    # a run while Wanjiru still sleeps holds her again, and sends nothing twice
    again = send(path, people, datetime(2026, 11, 29, 1, 0, tzinfo=UTC))
    assert again.outcome.held == {"sms": 1} and sms_to(twilio) == sorted([ANA, JOE])
    # 08:30 in Nairobi: hers goes; Ana and Joe are asleep now, but they already have it
    morning = send(path, people, NAIROBI_MORNING)
    assert morning.outcome.counts["sms"]["sent"] == 1 and morning.outcome.held == {}
    assert sms_to(twilio) == sorted([WANJIRU, ANA, JOE]) and twilio.duplicates() == {}
    assert held_in_ledger(path) == 0
    last = send(path, people, AFTERNOON)
    assert last.outcome.counts.get("sms", {}).get("sent", 0) == 0 and len(twilio.deliveries) == 3


def test_a_custom_window_that_does_not_cross_midnight(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    # 13:00–15:00 local: at 11:30 UTC it is 14:30 in Nairobi, 12:30 in Ljubljana, 03:30 in Los Angeles
    path = notice(tmp_path, quiet='{start: "13:00", end: "15:00"}')
    result = send(path, contacts(tmp_path), datetime(2026, 11, 28, 11, 30, tzinfo=UTC))
    assert sms_to(twilio) == sorted([ANA, JOE])
    (only,) = result.plan.held_shown
    assert only.message.recipient == WANJIRU and only.until == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_a_custom_window_across_midnight(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    # 20:00–06:00: at 19:30 UTC it is 20:30 in Ljubljana too, so both Europe and Africa wait; LA (11:30) does not
    path = notice(tmp_path, quiet='{start: "20:00", end: "06:00"}')
    result = send(path, contacts(tmp_path), NAIROBI_NIGHT)
    assert sms_to(twilio) == [JOE]
    until = {d.message.recipient: d.until for d in result.plan.held_shown}
    assert until == {
        WANJIRU: datetime(2026, 11, 29, 3, 0, tzinfo=UTC),  # 06:00 in Nairobi
        ANA: datetime(2026, 11, 29, 5, 0, tzinfo=UTC),  # 06:00 in Ljubljana
    }


def test_the_timezone_column_wins_over_the_number(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    # Joe's +1 number is in Los Angeles, but he lives in Nairobi now: at 19:30 UTC he is asleep
    send(notice(tmp_path), contacts(tmp_path, la_zone="Africa/Nairobi"), NAIROBI_NIGHT)
    assert sms_to(twilio) == [ANA]


def test_a_bad_timezone_cell_stops_the_send(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    people = contacts(tmp_path, la_zone="Pacific/Los_Angeles")
    with pytest.raises(ContactsError) as caught:
        send(notice(tmp_path), people, AFTERNOON)
    error = str(caught.value)
    assert "people.csv" in error and "row 4" in error and "'timezone'" in error and "Pacific/Los_Angeles" in error
    assert "nothing was sent" in error and "Hint:" in error and "America/Los_Angeles" in error
    assert twilio.deliveries == [] and sendgrid.deliveries == []
    # the same through the CLI: a clear error, exit 2, no traceback
    result = CliRunner().invoke(main, ["send", str(notice(tmp_path)), "--contacts", str(people), "--yes", "--force"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "row 4" in result.output
    assert twilio.deliveries == []


def test_a_bad_timezone_cell_does_not_stop_an_urgent_notice(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    result = send(notice(tmp_path, severity="urgent"), contacts(tmp_path, la_zone="Nowhere/Town"), NAIROBI_NIGHT)
    assert len(twilio.deliveries) == 3
    assert any(p.field == "timezone" and p.row == 4 for p in result.plan.book.problems)


@pytest.mark.parametrize(
    ("quiet", "field", "said"),
    [
        ('{start: 21:00}', "quiet_hours.start", 'write it in quotes, e.g. "21:00"'),
        ('{start: "25:00"}', "quiet_hours.start", "is not a time of day"),
        ('{start: "08:00", end: "08:00"}', "quiet_hours.end", "no time at all"),
        ('{timezone: Africa/Nairob}', "quiet_hours.timezone", "is not a time zone"),
        ('{from: "21:00"}', "quiet_hours.from", "unknown field"),
    ],
)
def test_a_bad_quiet_hours_field_is_a_clear_error(fakes, tmp_path: Path, quiet: str, field: str, said: str) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path, quiet=quiet)
    with pytest.raises(NoticeError) as caught:
        send(path, contacts(tmp_path), NAIROBI_NIGHT)
    error = str(caught.value)
    line = next(i for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "quiet_hours" in text)
    assert f"line {line}" in error and f"field '{field}'" in error and said in error, error
    assert twilio.deliveries == []


def test_preview_and_plan_csv_show_who_is_held_until_when(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    out = tmp_path / "preview"
    result = send(notice(tmp_path), contacts(tmp_path), NAIROBI_NIGHT, dry_run=True, out=out)
    assert twilio.deliveries == []
    rows = list(csv.DictReader((out / "plan.csv").open(encoding="utf-8")))
    # plan.csv writes a cell starting with + as '+… (safe from spreadsheet formulas)
    sms = {r["recipient"].lstrip("'"): r["held_until"] for r in rows if r["channel"] == "sms"}
    assert sms == {WANJIRU: "2026-11-29T08:00+03:00 Africa/Nairobi", ANA: "", JOE: ""}
    assert all(r["held_until"] == "" for r in rows if r["channel"] == "email")
    # held messages are shown, not "sent" to the outbox
    assert result.outcome.counts["sms"]["previewed"] == 2 and result.outcome.held == {"sms": 1}
    page = (out / "index.html").read_text(encoding="utf-8")
    held = page[page.index('id="held"'):]
    assert WANJIRU in held and "2026-11-29 08:00" in held and "Africa/Nairobi" in held
    assert ANA not in held.split("</section>")[0]


def test_the_preview_report_counts_held_per_channel(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    # the CLI runs on the real clock: a window of every minute but one holds everyone, whenever the test runs
    if datetime.now(UTC).strftime("%H:%M") >= "23:58":
        pytest.skip("the minute of the day this window leaves open")
    path = notice(tmp_path, quiet='{start: "00:00", end: "23:59"}')
    people = tmp_path / "people.csv"
    people.write_text(f"name,email,phone,language,timezone\nWanjiru,w@mail.example,{WANJIRU},en,UTC\n"
                      f"Ana,,{ANA},en,UTC\nJoe,,{JOE},en,UTC\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["preview", str(path), "--contacts", str(people), "--force", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["channels"]["sms"]["held"] == 3 and data["channels"]["email"]["held"] == 0
    assert data["channels"]["sms"]["previewed"] == 0
    text = CliRunner().invoke(main, ["preview", str(path), "--contacts", str(people), "--force"])
    assert "sms: 3 held for quiet hours" in text.output


def test_a_number_with_several_zones_uses_the_notice_zone_with_a_caution(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    # an Australian mobile could be in any of eight zones; the notice says Perth (UTC+8): 19:30 UTC is 03:30 there
    people = tmp_path / "people.csv"
    people.write_text("name,phone,language\nBruce,+61412345678,en\n", encoding="utf-8")
    path = notice(tmp_path, quiet="{timezone: Australia/Perth}")
    result = send(path, people, NAIROBI_NIGHT)
    assert twilio.deliveries == [] and result.outcome.held == {"sms": 1}
    assert any("quiet hours" in str(c) and "Australia/Perth" in str(c) for c in result.warnings)


def test_no_zone_anywhere_counts_in_utc_with_a_caution(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    people = tmp_path / "people.csv"
    people.write_text("name,phone,language\nBruce,+61412345678,en\n", encoding="utf-8")
    result = send(notice(tmp_path), people, NAIROBI_NIGHT)  # 19:30 UTC: awake in UTC
    assert len(twilio.deliveries) == 1
    assert any("counted in UTC" in str(c) for c in result.warnings)


def test_a_crash_after_holding_loses_no_one(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path, people = notice(tmp_path), contacts(tmp_path)
    send(path, people, NAIROBI_NIGHT)
    # a run that crashed after claiming Wanjiru's held SMS: its row is in flight for a run that is gone
    engine = sa.create_engine(_ledger_url())
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE deliveries SET status = 'inflight', run_id = 'crashed-run' WHERE status = 'held'"
        )
    engine.dispose()
    send(path, people, NAIROBI_MORNING)
    # the crashed attempt may have reached her, so Twilio is asked first: it never arrived, so she gets it now, once
    assert sms_to(twilio) == sorted([WANJIRU, ANA, JOE]) and twilio.duplicates() == {}
    sms = [row for row in status(path)["rows"] if row["channel"] == "sms"]
    assert sum(r["sent"] for r in sms) == 3 and sum(r["held"] + r["unknown"] for r in sms) == 0


def test_an_interrupted_night_run_holds_again_and_sends_in_the_morning(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    path, people = notice(tmp_path), contacts(tmp_path)
    # the night run stops after recording the hold: Twilio refuses every request (a bad credential)
    twilio.script([401] * 10)
    night = send(path, people, NAIROBI_NIGHT)
    assert night.outcome.held == {"sms": 1} and twilio.deliveries == []
    assert held_in_ledger(path) == 1
    twilio.reset()  # the credential is fixed
    morning = send(path, people, NAIROBI_MORNING)
    # 05:30 UTC: Ana and Joe are asleep now; Wanjiru is awake and gets hers
    assert sms_to(twilio) == [WANJIRU] and morning.outcome.held == {"sms": 2}
    evening = send(path, people, AFTERNOON)
    assert sms_to(twilio) == sorted([WANJIRU, ANA, JOE]) and twilio.duplicates() == {}
    assert evening.outcome.held == {} and held_in_ledger(path) == 0


def _ledger_url() -> str:
    import os

    return os.environ["BROADCAST_LEDGER"]


def test_held_release_times_are_iso_utc_in_the_ledger(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    path = notice(tmp_path)
    send(path, contacts(tmp_path), NAIROBI_NIGHT)
    engine = sa.create_engine(_ledger_url())
    with engine.begin() as conn:
        rows = conn.exec_driver_sql("SELECT recipient, reason FROM deliveries WHERE status = 'held'").all()
    engine.dispose()
    assert rows == [(WANJIRU, "2026-11-29T05:00:00+00:00")]
    shown = CliRunner().invoke(main, ["status", str(path)]).output
    assert re.search(r"sms \S+: 1 held for quiet hours; the first run after 2026-11-29T05:00:00\+00:00", shown), shown


def test_the_release_is_eight_local_on_the_night_the_clocks_go_forward(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    # 21:00 UTC on 28 March 2026 is 22:00 in Ljubljana; at 02:00 that night clocks jump to 03:00 (UTC+2), so 08:00
    # local is 06:00 UTC, not the 07:00 the evening's offset would give
    people = tmp_path / "people.csv"
    people.write_text(f"name,phone,language\nAna,{ANA},en\n", encoding="utf-8")
    result = send(notice(tmp_path), people, datetime(2026, 3, 28, 21, 0, tzinfo=UTC))
    (only,) = result.plan.held_shown
    assert only.until == datetime(2026, 3, 29, 6, 0, tzinfo=UTC) and f"{only.local_until():%H:%M %z}" == "08:00 +0200"
    assert twilio.deliveries == []


def test_check_shows_the_window_a_send_applies(tmp_path: Path) -> None:
    path = notice(tmp_path, quiet='{start: "22:00", end: "07:00", timezone: Africa/Nairobi}')
    result = CliRunner().invoke(main, ["check", str(path), "--json", "--force"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": "Africa/Nairobi"}
    text = CliRunner().invoke(main, ["check", str(path), "--force"]).output
    assert "Quiet hours: SMS and calls wait from 22:00 to 07:00" in text
    urgent = CliRunner().invoke(main, ["check", str(notice(tmp_path, severity="urgent")), "--json", "--force"])
    assert json.loads(urgent.stdout)["quiet_hours"] is None


def test_the_ledger_holds_only_what_was_not_sent_and_claims_held_rows_like_retries(ledger) -> None:  # noqa: ANN001, F811
    from broadcast.message import Decision

    until = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)
    new, retried, done, failed, claimed = (message(i) for i in range(5))
    ledger.start_run("water")
    ledger.claim([Decision(m, True) for m in (retried, done, failed, claimed)])
    ledger.settle([sent(retried, "retry", reason="503"), sent(done), sent(failed, "failed", reason="21211")])
    # claimed stays in flight for this live run
    ledger.hold([(m, until) for m in (new, retried, done, failed, claimed)])
    rows = {row.message_id: row for row in _rows(ledger)}
    assert rows[new.id].status == rows[retried.id].status == "held"
    assert rows[new.id].reason == "2026-11-29T05:00:00+00:00" and rows[new.id].attempts == 0
    # no run holds a held row, not even the one that held it while it is still going
    assert rows[new.id].run_id is None and rows[retried.id].run_id is None
    assert (rows[done.id].status, rows[failed.id].status, rows[claimed.id].status) == ("sent", "failed", "inflight")
    ledger.finish_run()
    # a held row is not sent: triage sends it, and a new run claims it as it would a retry
    decided = {d.message.id: d for d in ledger.triage([new, retried, done])}
    assert decided[new.id].send and decided[retried.id].send and not decided[done.id].send
    counts = ledger.status("water")["rows"][0]
    assert counts["held"] == 2 and counts["held_until"] == "2026-11-29T05:00:00+00:00"
    ledger.start_run("water")
    assert {m.id for m in ledger.claim([decided[new.id], decided[retried.id]])} == {new.id, retried.id}
    ledger.settle([sent(new), sent(retried)])
    ledger.finish_run()
    assert ledger.status("water")["rows"][0]["held"] == 0


def _rows(ledger) -> list:  # noqa: ANN001
    from broadcast.ledger import deliveries

    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(deliveries)).all()


def test_a_call_waits_for_the_morning_too(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path)
    people = tmp_path / "callers.csv"
    people.write_text(f"name,phone,language,channels\nWanjiru,{WANJIRU},en,voice\nAna,{ANA},en,voice\n", encoding="utf-8")
    request = PlanRequest(path, (people,), channels=("voice",), force=True, now=NAIROBI_NIGHT)
    night = run(SendRequest(request, yes=True, out_dir=Path("outbox")))
    assert night.outcome.held == {"voice": 1} and [c["to"] for c in twilio.calls] == [ANA]
    morning = run(SendRequest(replace(request, now=NAIROBI_MORNING), yes=True, out_dir=Path("outbox")))
    assert morning.outcome.held == {} and sorted(c["to"] for c in twilio.calls) == sorted([ANA, WANJIRU])


def test_quiet_hours_false_sends_an_advisory_at_any_hour_and_check_says_no_window(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path, quiet="false")
    result = send(path, contacts(tmp_path), NAIROBI_NIGHT)
    assert sms_to(twilio) == sorted([WANJIRU, ANA, JOE]) and result.outcome.held == {}
    checked = CliRunner().invoke(main, ["check", str(path), "--json"], catch_exceptions=False)
    assert json.loads(checked.stdout)["quiet_hours"] is None
    # true is not a window: say what to write
    refused = CliRunner().invoke(main, ["check", str(notice(tmp_path, quiet="true"))])
    assert refused.exit_code == 2 and "field 'quiet_hours': true is neither a window nor false" in refused.output
    assert "quiet_hours: false to send at any hour" in refused.output and "Traceback" not in refused.output
