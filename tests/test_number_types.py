"""Phone numbers that cannot take an SMS, or cost extra, get none unless --allow-number-types names their type;
a language tag too long to be one is a row problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.contacts import NUMBER_TYPES, read_contacts
from broadcast.errors import ConfigError
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import use_fakes

HEADER = "name,email,phone,language,channels,tags\n"


def write(tmp_path: Path, text: str, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + text, encoding="utf-8")
    return path


UNFIT = {
    "fixed_line": "+386 1 234 56 78",
    "premium_rate": "+44 901 234 5678",
    "shared_cost": "+33 884 01 23 45",
    "pager": "+44 76 4012 3456",
    "satellite": "+881 6 3123 4567",
}


@pytest.mark.parametrize("kind,phone", UNFIT.items(), ids=UNFIT.keys())
def test_a_number_that_cannot_take_an_sms_or_costs_extra_gets_none(tmp_path: Path, kind: str, phone: str) -> None:
    book = read_contacts([write(tmp_path, f"Ana,ana@mail.example,{phone},en,,\nBo,,{phone.replace(' ', '')[:-1]}9,en,,\n")])
    first, second = book.problems
    assert (first.row, first.field, first.rejected, first.lost) == (2, "phone", False, "sms")
    assert first.message.startswith(f"gets email only: '{phone}' is {NUMBER_TYPES[kind].split(',')[0]}")
    assert f"--allow-number-types {kind}" in first.hint
    assert (second.row, second.rejected) == (3, True)  # no email: nobody to reach
    assert [contact.channels for contact in book.contacts] == [{"email"}]


@pytest.mark.parametrize("kind,phone", UNFIT.items(), ids=UNFIT.keys())
def test_allow_number_types_keeps_them_for_sms(tmp_path: Path, kind: str, phone: str) -> None:
    book = read_contacts([write(tmp_path, f"Ana,ana@mail.example,{phone},en,,\n")], allow_number_types=[kind])
    assert book.problems == [] and book.contacts[0].channels == {"email", "sms"}


def test_only_a_number_that_would_get_an_sms_is_flagged(tmp_path: Path) -> None:
    book = read_contacts([write(tmp_path, (
        "A,,+386 41 555 010,,,\nB,,+254 712 555 010,,,\nC,,+1 202 555 0143,,,\n"  # mobiles, and US fixed-or-mobile
        "D,d@mail.example,+386 1 234 56 78,en,email,\n"  # a landline, but D asks for email only
        "E,e@mail.example,+386 1 234 56 79,en,,\n"
    ))])
    assert [(p.row, p.field, p.lost) for p in book.problems] == [(6, "phone", "sms")]
    assert book.valid == 5 and [c.phone for c in book.contacts][3] == "+38612345678"


def test_unknown_number_types_are_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        read_contacts([], allow_number_types=["fax"])
    assert "'fax'" in info.value.message and "fixed_line" in info.value.hint


def test_a_very_long_language_tag_is_a_row_problem_never_a_crash(tmp_path: Path) -> None:
    tag = "-".join(["en"] + ["abcdefgh"] * 30)  # 272 characters, each subtag well-formed
    assert len(tag) == 272
    path = write(tmp_path, f"Ana,ana@mail.example,,{tag},,\n")
    book = read_contacts([path])
    assert [(p.row, p.field, p.rejected) for p in book.problems] == [(2, "language", False)]
    assert "at most 35 characters" in book.problems[0].message and book.contacts[0].language == ""
    result = CliRunner().invoke(main, ["preview", str(EXAMPLE), "--contacts", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["problems"][0]["field"] == "language"


# -- through the CLI against the Twilio fake -------------------------------------------------------------


@pytest.fixture()
def twilio(monkeypatch: pytest.MonkeyPatch, twilio_fake, tmp_path: Path):  # noqa: ANN001, ANN201
    use_fakes(monkeypatch, twilio=twilio_fake)
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    return twilio_fake


def send(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, ["send", str(EXAMPLE), *map(str, args), "--channel", "sms", "--yes", "--force", "--json"])


def test_no_sms_goes_to_a_landline_unless_allowed(twilio, tmp_path: Path) -> None:  # noqa: ANN001
    people = write(tmp_path, "Ana,,+386 41 555 010,en,,\nJanez,janez@mail.example,+386 1 234 56 78,en,,\n")
    result = send("--contacts", people)
    assert result.exit_code == 0, result.output
    assert list(twilio.delivery_counts()) == ["+38641555010"]
    assert "gets email only" in json.loads(result.stdout)["problems"][0]["message"]
    allowed = send("--contacts", people, "--allow-number-types", "fixed_line")
    assert allowed.exit_code == 0 and twilio.delivery_counts() == {"+38641555010": 1, "+38612345678": 1}


def test_a_suppressed_landline_stays_suppressed_when_landlines_are_allowed(twilio, tmp_path: Path) -> None:  # noqa: ANN001
    people = write(tmp_path, "Janez,,+386 1 234 56 78,en,,\n")
    optout = tmp_path / "optout.csv"
    optout.write_text("phone\n+386 1 234 56 78\n", encoding="utf-8")  # a suppression is never dropped for its type
    result = send("--contacts", people, "--suppressions", optout, "--allow-number-types", "fixed_line")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["channels"]["sms"]["skipped_reasons"] == {"suppressed": 1}
    assert twilio.deliveries == []


def test_a_bad_allow_number_types_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["preview", str(EXAMPLE), "--contacts", str(write(tmp_path, "A,a@x.example,,,,\n")),
                                       "--allow-number-types", "landline"])
    assert result.exit_code == 2 and "'landline'" in result.output and "fixed_line" in result.output
