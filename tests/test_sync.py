"""`broadcast sync`, `status` and `replies` against the provider fakes: delivery results, replies, STOP, resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import Fakes

REPLY = """
reply:
  keywords:
    SAFE: ["1", "safe", "salama", "varen"]
    HELP: ["2", "help", "msaada", "pomoc"]
  prompt:
    en: Reply 1 if you are safe, 2 if you need help
    sw: Jibu 1 ikiwa uko salama, 2 ukihitaji msaada
    sl: Odgovorite 1, ce ste varni, 2, ce potrebujete pomoc
"""


@pytest.fixture()
def fakes(live_send: Fakes) -> Fakes:
    return live_send


def notice(tmp_path: Path, reply: bool = True) -> Path:
    path = tmp_path / "boil-water.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8") + (REPLY if reply else ""), encoding="utf-8")
    return path


def people(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "people.csv"
    rows = ["name,email,phone,language"] + [f"Person {i},person{i}@example.org,+2547125{i:05d},en" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def phone(i: int) -> str:
    return f"+2547125{i:05d}"


def invoke(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


def send(path: Path, contacts: Path) -> dict:
    result = invoke("send", path, "--contacts", contacts, "--channel", "email,sms", "--yes", "--json", "--force")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sync(path: Path, *more: object) -> tuple[int, dict]:
    result = invoke("sync", path, "--json", *more)
    return result.exit_code, json.loads(result.stdout)


def status(path: Path | str, *more: object) -> dict:
    result = invoke("status", path, "--json", *more)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def results(data: dict) -> dict[str, dict]:
    return {row["channel"]: row for row in data["results"]}


# -- the prompt ------------------------------------------------------------------------------------------------------


def test_the_reply_prompt_goes_out_in_each_persons_language_and_check_counts_it(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path)
    send(path, people(tmp_path, 2))
    assert all(d.payload["body"].endswith("Reply 1 if you are safe, 2 if you need help") for d in twilio.deliveries)
    # check sees the same text: with the prompt a shorter form is needed to stay within 3 segments
    (tmp_path / "plain").mkdir()
    with_prompt = json.loads(invoke("check", path, "--json").stdout)
    without = json.loads(invoke("check", notice(tmp_path / "plain", reply=False), "--json").stdout)
    sms = lambda data: {r["language"]: r for r in data["renderings"] if r["channel"] == "sms"}["en"]  # noqa: E731
    assert sms(with_prompt)["form"] > sms(without)["form"] and sms(with_prompt)["segments"] <= 3
    # a prompt no form can carry within the limit stops check, as it would stop send
    long = tmp_path / "long.yaml"
    long.write_text(path.read_text(encoding="utf-8").replace(
        "en: Reply 1 if you are safe, 2 if you need help", "en: " + "Reply 1 if you are safe. " * 20), encoding="utf-8")
    refused = invoke("check", long)
    assert refused.exit_code != 0 and "segment" in refused.output


def test_a_reply_keyword_that_is_a_carrier_keyword_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8") + REPLY.replace('"varen"]', '"varen", "Stop"]'), encoding="utf-8")
    result = invoke("check", path)
    assert result.exit_code == 2
    assert "carrier keyword" in result.output and "reply" in result.output


# -- sync ------------------------------------------------------------------------------------------------------------


def test_sync_records_sms_states_replies_and_stop(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path)
    send(path, people(tmp_path, 4))
    twilio.outcome(phone(0), "undelivered", error_code=30003)
    twilio.advance(10)
    twilio.inbound(phone(1), "Salamá!")
    twilio.inbound(phone(2), "STOP")
    twilio.inbound(phone(3), "Is the water at the school safe?")
    code, data = sync(path, "--channel", "sms")
    assert code == 0
    (sms,) = data["channels"]
    assert sms["asked"] == 4 and sms["applied"]["replies"] == 3 and sms["applied"]["suppressed"] == 1
    row = results(status(path))["sms"]
    assert (row["accepted"], row["delivered"], row["undelivered"], row["suppressed"]) == (4, 3, 1, 1)
    assert row["replied"] == {"SAFE": 1, "HELP": 0, "other": 1}
    assert twilio.invalid == []


def test_a_second_sync_changes_nothing(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path)
    send(path, people(tmp_path, 3))
    twilio.advance(10)
    twilio.inbound(phone(1), "1")
    sync(path)
    before = status(path)["results"]
    code, data = sync(path)
    assert code == 0
    sms = next(c for c in data["channels"] if c["channel"] == "sms")
    # every message is final now: Twilio is asked only for the replies, and those are known
    assert sms["asked"] == 0 and sms["applied"]["recorded"] == 0 and sms["applied"]["duplicates"] == 1
    assert status(path)["results"] == before


def test_sync_goes_on_where_it_stopped(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path)
    send(path, people(tmp_path, 6))
    for i in (1, 4):
        twilio.outcome(phone(i), "undelivered", error_code=30005)
    twilio.advance(10)
    twilio.inbound(phone(0), "1")
    # Twilio fails half-way through the sync: what was read is kept, and the run says so
    twilio.outage_after = 3
    code, data = sync(path, "--channel", "sms")
    assert code == 1
    (sms,) = data["channels"]
    assert sms["failed"] and "503" in sms["note"] and sms["applied"]["advanced"] == 3
    assert results(status(path))["sms"]["delivered"] + results(status(path))["sms"]["undelivered"] == 3
    fetched = twilio.fetches
    twilio.outage_after = None
    code, data = sync(path, "--channel", "sms")
    assert code == 0
    (sms,) = data["channels"]
    # only the three messages not yet final are asked about again
    assert sms["asked"] == 3 and twilio.fetches == fetched + 3
    row = results(status(path))["sms"]
    assert (row["delivered"], row["undelivered"], row["replied"]["SAFE"]) == (4, 2, 1)


def test_sendgrid_without_the_activity_add_on_is_said_plainly_and_sms_still_syncs(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    path = notice(tmp_path)
    send(path, people(tmp_path, 2))
    sendgrid.activity_access = False
    twilio.advance(10)
    code, data = sync(path)
    assert code == 0
    email = next(c for c in data["channels"] if c["channel"] == "email")
    assert "SendGrid's Email Activity API is not available to this key (it is a paid add-on)" in email["note"]
    assert "`broadcast serve` and the Event Webhook" in email["note"]
    assert results(status(path))["sms"]["delivered"] == 2
    text = invoke("sync", path).output
    assert "paid add-on" in text and "sms: asked about 0 message(s)" in text


def test_sync_records_email_deliveries_and_bounces_and_suppresses_hard_bounces(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, _, _ = fakes
    path = notice(tmp_path)
    sendgrid.outcome("person0@example.org", "bounced", reason="550 5.1.1 no such user", bounce_type="hard")
    sendgrid.outcome("person1@example.org", "bounced", reason="452 mailbox full", bounce_type="soft")
    send(path, people(tmp_path, 3))
    code, _ = sync(path, "--channel", "email")
    assert code == 0
    row = results(status(path))["email"]
    assert (row["accepted"], row["delivered"], row["bounced"], row["undelivered"], row["suppressed"]) == (3, 1, 1, 1, 1)
    assert sendgrid.invalid == []


def test_sync_before_any_send_says_there_is_nothing_to_ask(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    result = invoke("sync", notice(tmp_path))
    assert result.exit_code == 2 and "no ledger yet" in result.output and "Traceback" not in result.output


# -- replies and the recipients list ----------------------------------------------------------------------------------


def test_replies_lists_the_ones_no_keyword_matched(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path)
    send(path, people(tmp_path, 3))
    twilio.inbound(phone(0), "varen")
    twilio.inbound(phone(1), "Is the water at the school safe?")
    twilio.inbound(phone(2), "stop")
    sync(path, "--channel", "sms")
    data = json.loads(invoke("replies", path, "--json").stdout)
    assert [(r["sender"], r["text"]) for r in data["replies"]] == [(phone(1), "Is the water at the school safe?")]
    # the contact the number belongs to, as the ledger keys contacts
    assert data["replies"][0]["contact"] == "email:person1@example.org"
    text = invoke("replies", path).output
    assert "1 repl(ies)" in text and "Is the water at the school safe?" in text and phone(1) in text


def test_status_recipients_writes_real_addresses_in_cells_no_spreadsheet_runs(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path)
    send(path, people(tmp_path, 2))
    twilio.outcome(phone(0), "undelivered", error_code=30003)
    twilio.advance(10)
    twilio.inbound(phone(1), "=HYPERLINK(\"http://evil.example\",\"1\")")
    sync(path, "--channel", "sms")
    out = tmp_path / "out" / "unreached.csv"
    data = status(path, "--recipients", out)
    assert data["recipients_file"] == str(out)
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    # the unreached first; the address is real, quoted so a spreadsheet keeps the + and never runs a formula
    first = rows[0]
    assert (first["channel"], first["address"], first["state"]) == ("sms", "'" + phone(0), "undelivered")
    assert "30003" in first["reason"]
    replied = next(r for r in rows if r["address"] == "'" + phone(1))
    assert replied["reply"].startswith("'=HYPERLINK") and replied["state"] == "delivered"
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())


# -- the "done means", at a smaller scale ------------------------------------------------------------------------


def test_done_means_at_a_small_scale(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    path = notice(tmp_path)
    contacts = people(tmp_path, 20)
    for i in (0, 1, 2):
        twilio.outcome(phone(i), "undelivered", error_code=30003)
    for i in (3, 4):
        sendgrid.outcome(f"person{i}@example.org", "bounced", reason="550 5.1.1 no such user", bounce_type="hard")
    sent = send(path, contacts)
    assert sent["channels"]["sms"]["sent"] == sent["channels"]["email"]["sent"] == 20
    twilio.advance(60)
    for i in range(5, 10):
        twilio.inbound(phone(i), "1")
    twilio.inbound(phone(10), "STOP")
    twilio.inbound(phone(11), "Where can I get bottled water?")
    code, _ = sync(path)
    assert code == 0
    rows = results(status(path))
    assert {k: rows["sms"][k] for k in ("accepted", "delivered", "undelivered", "bounced", "held", "suppressed")} == {
        "accepted": 20, "delivered": 17, "undelivered": 3, "bounced": 0, "held": 0, "suppressed": 1}
    assert rows["sms"]["replied"] == {"SAFE": 5, "HELP": 0, "other": 1}
    assert {k: rows["email"][k] for k in ("accepted", "delivered", "undelivered", "bounced", "suppressed")} == {
        "accepted": 20, "delivered": 18, "undelivered": 0, "bounced": 2, "suppressed": 2}
    table = invoke("status", path).output
    assert "Delivery results" in table and "SAFE" in table
    # the next send (an update of the notice) leaves out the STOP and the two bounced addresses
    path.write_text(path.read_text(encoding="utf-8").replace("phase: alert", "") + "\nphase: update\n", encoding="utf-8")
    twilio.reset()
    sendgrid.reset()
    again = send(path, contacts)
    assert phone(10) not in {d.recipient for d in twilio.deliveries} and len(twilio.deliveries) == 19
    assert {d.recipient for d in sendgrid.deliveries}.isdisjoint({"person3@example.org", "person4@example.org"})
    assert again["channels"]["email"]["sent"] == 18


# -- the Twilio fake itself, through the SDK ---------------------------------------------------------------------------


def test_the_twilio_fake_moves_messages_on_over_fake_time_and_pages_its_list(twilio_fake) -> None:  # noqa: ANN001
    from twilio.rest import Client

    from tests.fakes import credentials

    client = Client(twilio_fake.account_sid, twilio_fake.auth_token)
    client.api.base_url = twilio_fake.url
    sent = client.messages.create(to=phone(1), from_=credentials.TWILIO_FROM, body="Boil water")
    twilio_fake.outcome(phone(2), "undelivered", error_code=30003)
    other = client.messages.create(to=phone(2), from_=credentials.TWILIO_FROM, body="Boil water")
    assert client.messages(sent.sid).fetch().status == "sent"
    twilio_fake.advance(10)
    assert client.messages(sent.sid).fetch().status == "delivered"
    failed = client.messages(other.sid).fetch()
    assert (failed.status, failed.error_code) == ("undelivered", 30003)
    for n in range(5):
        twilio_fake.inbound(phone(n), f"reply {n}")
    # five inbound messages to our number, read two a page by following next_page_uri
    inbound = list(client.messages.stream(to=credentials.TWILIO_FROM, page_size=2))
    assert sorted(m.body for m in inbound) == [f"reply {n}" for n in range(5)]
    assert {m.direction for m in inbound} == {"inbound"}
    pages = [r for r in twilio_fake.requests if r.method == "GET" and r.path.endswith("/Messages.json")]
    assert len(pages) == 3 and twilio_fake.invalid == []


def test_stop_then_start_through_sync_and_the_next_updates(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    path = notice(tmp_path)
    contacts = people(tmp_path, 2)

    def update(n: int) -> None:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("en: Boil your tap water", f"en: Boil your tap water ({n})"), encoding="utf-8")
        twilio.reset()
        send(path, contacts)

    send(path, contacts)
    twilio.inbound(phone(0), "Stop")
    sync(path, "--channel", "sms")
    update(2)
    assert [d.recipient for d in twilio.deliveries] == [phone(1)]
    twilio.inbound(phone(0), "START")
    code, data = sync(path, "--channel", "sms")
    assert code == 0 and data["channels"][0]["applied"]["unsuppressed"] == 1
    update(3)
    assert sorted(d.recipient for d in twilio.deliveries) == [phone(0), phone(1)]
