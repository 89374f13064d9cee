"""Suppression files fail closed: read like contacts (case-folded email, E.164 with --region), every problem shown,
and a file that cannot be read completely stops send, dry-run and preview alike, with nothing sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.contacts import read_suppressions
from broadcast.errors import ContactsError
from broadcast.ledger import Ledger
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import Fakes

HEADER = "name,email,phone,language,channels,tags\n"


@pytest.fixture()
def fakes(live_send: Fakes) -> Fakes:
    return live_send


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def people(tmp_path: Path) -> Path:
    return write(tmp_path / "people.csv", HEADER + (
        "One,one@x.example,,en,,\n"
        "Two,two@x.example,,en,,\n"
        "Wanjiru,,+254 712 555 011,en,,\n"
        "Brian,,+254 712 555 012,en,,\n"
    ))


def invoke(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


def live(*args: object):  # noqa: ANN201
    return invoke("send", *args, "--yes", "--json", "--force")


def nothing_sent(fakes: tuple, tmp_path: Path) -> None:  # noqa: ANN001
    assert [len(fake.requests) for fake in fakes] == [0, 0, 0]
    assert not (tmp_path / "web").exists()


# -- matching ------------------------------------------------------------------------------------------


def test_suppressed_people_get_nothing_whatever_the_letter_case_or_phone_format(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    listed = write(tmp_path / "optout.csv", "email,phone\nOne@X.Example,\n,0712 555 011\n")
    result = live(EXAMPLE, "--contacts", people(tmp_path), "--suppressions", listed, "--channel", "email,sms",
                  "--region", "KE")
    assert result.exit_code == 0, result.output
    channels = json.loads(result.stdout)["channels"]
    assert channels["email"]["skipped_reasons"] == channels["sms"]["skipped_reasons"] == {"suppressed": 1}
    assert sendgrid.delivery_counts()["one@x.example"] == 0 and sendgrid.delivery_counts()["two@x.example"] == 1
    assert twilio.delivery_counts()["+254712555011"] == 0 and twilio.delivery_counts()["+254712555012"] == 1


def test_a_stop_recorded_in_the_ledger_in_other_letter_case_still_holds(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, _, _ = fakes
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.suppress([("email", "ONE@x.example", "unsubscribed", "provider")])
    ledger.close()
    result = live(EXAMPLE, "--contacts", people(tmp_path), "--channel", "email")
    assert result.exit_code == 0, result.output
    assert sendgrid.delivery_counts()["one@x.example"] == 0 and len(sendgrid.deliveries) == 1


def test_a_contact_sent_under_one_letter_case_is_not_sent_again_under_another(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    # a compatibility guard: ledger keys stay as they were, so matching case-insensitively re-sends nobody
    sendgrid, _, _ = fakes
    first = write(tmp_path / "first.csv", HEADER + "One,One@x.example,,en,,\n")
    assert live(EXAMPLE, "--contacts", first, "--channel", "email").exit_code == 0
    again = write(tmp_path / "again.csv", HEADER + "One,one@X.EXAMPLE,,en,,\n")
    result = live(EXAMPLE, "--contacts", again, "--channel", "email")
    assert json.loads(result.stdout)["channels"]["email"]["sent"] == 0
    assert len(sendgrid.deliveries) == 1


def test_every_address_of_a_suppression_file_counts_even_when_rows_share_one(tmp_path: Path) -> None:
    # as contacts these rows would merge and drop b@x.example; as suppressions each address stands on its own
    listed = write(tmp_path / "optout.csv", "email,phone\na@x.example,+386 41 555 010\nB@x.example,+386 41 555 010\n")
    entries = {(channel, address) for channel, address, _ in read_suppressions([listed]).entries}
    assert entries == {("email", "a@x.example"), ("email", "b@x.example"), ("sms", "+38641555010"), ("voice", "+38641555010")}


# -- failing closed ------------------------------------------------------------------------------------


BROKEN = {
    "stray quote": ('email\none@x.example\n"two@x.example\nthree@x.example\n', ("row 3", "never closed")),
    "phone without country code": ("phone\n0712 555 011\n", ("row 2", "field 'phone'", "country code")),
    "bad email": ("email\none@@x.example\n", ("row 2", "field 'email'", "not a valid email")),
    "letters in a phone": ("email,phone\none@x.example,+254 712 555 OII\n", ("row 2", "field 'phone'", "letter")),
}


@pytest.mark.parametrize("text,says", BROKEN.values(), ids=BROKEN.keys())
def test_a_suppressions_file_that_cannot_be_read_completely_stops_a_live_send(fakes, tmp_path: Path, text: str, says: tuple) -> None:  # noqa: ANN001
    listed = write(tmp_path / "optout.csv", text)
    result = CliRunner().invoke(main, ["send", str(EXAMPLE), "--contacts", str(people(tmp_path)),
                                       "--suppressions", str(listed), "--yes", "--force"])
    assert result.exit_code == 2, result.output
    for words in ("optout.csv", "could be contacted although they opted out", "nothing was sent", "Hint:", *says):
        assert words in result.output, result.output
    assert "Traceback" not in result.output
    nothing_sent(fakes, tmp_path)


@pytest.mark.parametrize("command", [("preview",), ("send", "--dry-run")], ids=["preview", "dry-run"])
def test_preview_and_dry_run_refuse_a_broken_suppressions_file_like_a_send(tmp_path: Path, command: tuple) -> None:
    listed = write(tmp_path / "optout.csv", 'email\n"one@x.example\ntwo@x.example\n')
    result = invoke(*command, EXAMPLE, "--contacts", people(tmp_path), "--suppressions", listed, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "optout.csv, row 2" in result.output and "opted out" in result.output
    assert not (tmp_path / "out").exists()


def test_a_suppressions_file_beside_the_contacts_is_held_to_the_same_rule(tmp_path: Path) -> None:
    folder = tmp_path / "contacts"
    folder.mkdir()
    write(folder / "suppressions.csv", "phone\n0712 555 011\n")
    result = invoke("preview", EXAMPLE, "--contacts", people(folder))
    assert result.exit_code == 2, result.output
    assert "suppressions.csv, row 2, field 'phone'" in result.output


def test_a_missing_suppressions_file_is_exit_2_and_says_what_it_means(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    result = CliRunner().invoke(main, ["send", str(EXAMPLE), "--contacts", str(people(tmp_path)),
                                       "--suppressions", str(tmp_path / "nowhere.csv"), "--yes", "--force"])
    assert result.exit_code == 2, result.output
    assert "nowhere.csv" in result.output and "not found" in result.output and "opted out" in result.output
    nothing_sent(fakes, tmp_path)


def test_problems_that_lose_no_address_are_shown_as_warnings(tmp_path: Path) -> None:
    listed = write(tmp_path / "optout.csv", "email,reason\none@x.example,asked by phone\n")
    result = invoke("preview", EXAMPLE, "--contacts", people(tmp_path), "--suppressions", listed, "--json")
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    assert any("optout.csv" in w and "'reason'" in w for w in warnings), warnings


def test_read_suppressions_raises_for_a_row_it_cannot_read(tmp_path: Path) -> None:
    listed = write(tmp_path / "optout.csv", "phone\n0712 555 011\n")
    with pytest.raises(ContactsError) as info:
        read_suppressions([listed])
    assert "row 2, field 'phone'" in str(info.value)
    assert read_suppressions([listed], default_region="KE").entries == [
        ("sms", "+254712555011", f"{listed}:2"), ("voice", "+254712555011", f"{listed}:2")
    ]
