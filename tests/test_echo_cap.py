"""A runaway value in a contacts file (a header cell of megabytes) is echoed capped: terminal, preview page and --json stay small."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.display import VALUE_LIMIT, clip
from tests.conftest import EXAMPLE

HUGE = 3_000_000
#: a message quoting the cell is cut, and says its full length (the cell plus the message's own words)
CUT = re.compile(r"… \(3,000,\d{3} characters\)")


def run(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def huge_header(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_text(f"name,email,{'Z' * HUGE},language\nAna,ana@x.example,q,en\n", encoding="utf-8")
    return path


def test_a_huge_header_cell_is_capped_in_the_terminal_report_and_the_page(tmp_path: Path, huge_header: Path) -> None:
    out = tmp_path / "out"
    result = run("preview", EXAMPLE, "--contacts", huge_header, "--out", out)
    assert result.exit_code == 0, result.output
    assert len(result.output) < 20_000
    assert CUT.search(result.output)
    assert "Hint: rename the column" in result.output  # the cap never swallows the hint
    page = (out / "index.html").read_text(encoding="utf-8")
    assert len(page) < 300_000 and CUT.search(page)


def test_a_huge_header_cell_is_capped_in_json(tmp_path: Path, huge_header: Path) -> None:
    result = run("send", EXAMPLE, "--contacts", huge_header, "--dry-run", "--json", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(result.stdout) < 50_000
    data = json.loads(result.stdout)
    [problem] = [p for p in data["problems"] if "ignoring column" in p["message"]]
    assert CUT.search(problem["message"]) and len(problem["message"]) < 1100


def test_clip_keeps_short_values_and_says_how_long_a_cut_one_was() -> None:
    assert clip("Boil your tap water") == "Boil your tap water"
    assert clip("x" * VALUE_LIMIT) == "x" * VALUE_LIMIT
    assert clip("x" * 5000) == "x" * VALUE_LIMIT + "… (5,000 characters)"


def test_an_error_quoting_a_huge_value_is_capped_line_by_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from broadcast.cli import main

    huge = "x" * 3_000_000
    # a suppressions file that cannot be read stops the run; its error quotes the file's bad cell
    (tmp_path / "people.csv").write_text("name,email\nAna,ana@mail.example\n", encoding="utf-8")
    (tmp_path / "stop.csv").write_text(f"name,email\nBad,{huge}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["preview", str(EXAMPLE), "--contacts", str(tmp_path / "people.csv"),
                                       "--suppressions", str(tmp_path / "stop.csv"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output[:2000]
    assert "stop.csv" in result.output and len(result.output) < 20_000
