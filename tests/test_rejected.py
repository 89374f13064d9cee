"""--max-rejected: a run that lost contact rows lists them and exits 1; past the limit it refuses, sending nothing,
and preview and dry-run return the same exit code and show the same rows as the live send would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.contacts import RejectionLimit, parse_max_rejected
from broadcast.errors import ConfigError
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import Fakes

HEADER = "name,email,phone,language,channels,tags\n"


@pytest.fixture()
def fakes(live_send: Fakes) -> Fakes:
    return live_send


def contacts(path: Path, good: int, bad: int = 0, *, stray_quote: bool = False) -> Path:
    rows = [f"Person {n},p{n}@mail.example,+38641{n:06d},en,," for n in range(good)]
    if stray_quote:
        rows[0] = '"' + rows[0]
    rows += [f"Nobody {n},not-an-address-{n},,en,," for n in range(bad)]
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def run(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [*map(str, args)])


def live(*args: object):  # noqa: ANN201
    return run("send", EXAMPLE, *args, "--yes", "--force")


def requests(fakes: tuple) -> list[int]:  # noqa: ANN001
    return [len(fake.requests) for fake in fakes]


def test_a_stray_quote_in_300_contacts_reaches_299_lists_the_row_and_exits_1(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, _ = fakes
    result = live("--contacts", contacts(tmp_path / "people.csv", 300, stray_quote=True), "--channel", "email,sms")
    assert result.exit_code == 1, result.output
    assert "1 contact row(s) rejected" in result.output and "people.csv, row 2" in result.output
    assert "never closed" in result.output
    assert len(sendgrid.deliveries) == 299 and len(twilio.deliveries) == 299


def test_more_rejected_rows_than_the_default_10_percent_refuse_a_live_send(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    result = live("--contacts", contacts(tmp_path / "people.csv", 8, bad=2))
    assert result.exit_code == 2, result.output
    for words in ("2 of 10 contact rows (20%) were rejected", "--max-rejected 10%", "2 people would not be reached",
                  "nothing was sent", "people.csv, row 10, field 'email'", "people.csv, row 11, field 'email'",
                  "Hint:", "--max-rejected 100%"):
        assert words in result.output, result.output
    assert requests(fakes) == [0, 0, 0] and not (tmp_path / "web").exists()


def test_a_file_that_lost_every_contact_refuses_instead_of_posting_to_x_and_web(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    result = live("--contacts", contacts(tmp_path / "people.csv", 0, bad=3))
    assert result.exit_code == 2, result.output
    assert "3 of 3 contact rows (100%) were rejected" in result.output
    assert requests(fakes) == [0, 0, 0] and not (tmp_path / "web").exists()


def test_max_rejected_100_percent_accepts_any_number_and_still_exits_1(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, _, _ = fakes
    result = live("--contacts", contacts(tmp_path / "people.csv", 2, bad=8), "--channel", "email", "--max-rejected", "100%")
    assert result.exit_code == 1, result.output
    assert "8 contact row(s) rejected" in result.output and len(sendgrid.deliveries) == 2


def test_max_rejected_as_a_count_of_rows(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    people = contacts(tmp_path / "people.csv", 2, bad=3)
    refused = live("--contacts", people, "--channel", "email", "--max-rejected", "2")
    assert refused.exit_code == 2 and "--max-rejected 2 allows" in refused.output
    assert requests(fakes) == [0, 0, 0]
    assert live("--contacts", people, "--channel", "email", "--max-rejected", "3").exit_code == 1


def test_max_rejected_from_the_environment(fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("BROADCAST_MAX_REJECTED", "100%")
    assert live("--contacts", contacts(tmp_path / "people.csv", 1, bad=1), "--channel", "email").exit_code == 1


@pytest.mark.parametrize("command", [("preview",), ("send", "--dry-run")], ids=["preview", "dry-run"])
def test_preview_and_dry_run_return_what_the_live_send_would(tmp_path: Path, command: tuple) -> None:
    below = run(*command, EXAMPLE, "--contacts", contacts(tmp_path / "a.csv", 9, bad=1), "--out", tmp_path / "a")
    assert below.exit_code == 1, below.output
    assert "a.csv, row 11, field 'email'" in below.output
    above = run(*command, EXAMPLE, "--contacts", contacts(tmp_path / "b.csv", 8, bad=2), "--out", tmp_path / "b")
    assert above.exit_code == 2, above.output
    assert "2 people would not be reached" in above.output and not (tmp_path / "b").exists()
    clean = run(*command, EXAMPLE, "--contacts", contacts(tmp_path / "c.csv", 3), "--out", tmp_path / "c", "--json")
    assert clean.exit_code == 0 and json.loads(clean.stdout)["contacts"]["rejected"] == 0


@pytest.mark.parametrize("value", ["ten", "10 %%", "-1", "101%", "2.5", ""])
def test_a_bad_max_rejected_is_a_usage_error_that_shows_the_syntax(tmp_path: Path, value: str) -> None:
    result = run("preview", EXAMPLE, "--contacts", contacts(tmp_path / "a.csv", 3), "--max-rejected", value)
    assert result.exit_code == 2, result.output
    assert "--max-rejected" in result.output and "10%" in result.output and "Traceback" not in result.output


def test_parse_max_rejected_reads_shares_and_counts() -> None:
    assert parse_max_rejected("10%") == RejectionLimit("10%", percent=10.0)
    assert parse_max_rejected(" 2.5% ") == RejectionLimit("2.5%", percent=2.5)
    assert parse_max_rejected("25") == RejectionLimit("25", count=25)
    assert parse_max_rejected("100%").allows(1000, 1000)
    assert not parse_max_rejected("10%").allows(31, 300) and parse_max_rejected("10%").allows(30, 300)
    with pytest.raises(ConfigError):
        parse_max_rejected("lots")


def test_json_and_report_count_contacts_who_lost_a_channel(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(HEADER + "Ana,ana@mail.example,0712 345 001,en,,\nBo,bo@mail.example,,en,,\n", encoding="utf-8")
    data = json.loads(run("preview", EXAMPLE, "--contacts", people, "--json").stdout)
    assert data["contacts"]["lost_channel"] == 1
    assert data["problems"][0]["message"] == "gets email only: '0712 345 001' has no country code"
    text = run("preview", EXAMPLE, "--contacts", people).output
    assert "1 contact(s) lost a channel" in text
