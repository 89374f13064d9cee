"""Every CSV broadcast writes opens in a spreadsheet as text: no cell starts a formula, and phone numbers stay readable."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.display import FORMULA_STARTS, csv_cell
from tests.conftest import EXAMPLE

CALC = "=cmd|'/Ccalc'!A0@x.example"


def run(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def plan_rows(out: Path) -> list[list[str]]:
    with (out / "plan.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("command", ["preview", "send"])
def test_plan_csv_never_starts_a_cell_with_a_formula(tmp_path: Path, command: str) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "name,email,phone,language\n"
        f"Eve,\"{CALC}\",,en\n"
        "Minus,-2+3@x.example,+38641555010,en\n"
        "Plus,+sum@x.example,,en\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = run(command, EXAMPLE, "--contacts", contacts, "--out", out, *(["--dry-run"] if command == "send" else []))
    assert result.exit_code == 0, result.output
    rows = plan_rows(out)
    assert rows[0] == ["channel", "language", "recipient", "contact", "variant", "message_id", "held_until"]
    recipients = {row[2] for row in rows[1:]}
    # each neutralized the same way: one leading quote, the rest exactly as written
    assert {"'" + CALC, "'-2+3@x.example", "'+sum@x.example", "'+38641555010"} <= recipients
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_STARTS), (row, cell)


@pytest.mark.parametrize("value", ["=1+1", "+38641555010", "-5", "@SUM(A1)", "\t=1", "\r=1"])
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(value: str) -> None:
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["ana@x.example", "x:en", "", "'already quoted", "boil-water-2026-03/sms/1/+386"])
def test_an_ordinary_cell_is_written_as_it_is(value: str) -> None:
    assert csv_cell(value) == value
