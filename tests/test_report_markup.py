"""Square brackets in notice text, contact values and file names print as written: Rich never reads them as markup."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import use_fakes

CLOSING = "Outage [/north]"
STYLE_LIKE = "Boil water [north zone]"
BAD_EMAIL = "foo[/]bar@x.example"


def run(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def notice_with_headline(tmp_path: Path, headline: str) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["headline"]["en"] = headline
    path = tmp_path / "notice.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def contacts_with_brackets(tmp_path: Path) -> Path:
    # the file name, a rejected email and a language tag all come back in the report
    path = tmp_path / "list [north].csv"
    path.write_text(
        "name,email,phone,language\n"
        f"Ana,{BAD_EMAIL},,en\n"
        "Bo,bo@x.example,+38641555010,en\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("headline", [CLOSING, STYLE_LIKE])
def test_check_prints_a_headline_with_square_brackets_as_written(tmp_path: Path, headline: str) -> None:
    result = run("check", notice_with_headline(tmp_path, headline))
    assert result.exit_code == 0, result.output
    assert f"subject: Urgent: {headline}" in result.output


@pytest.mark.parametrize("command", ["preview", "send"])
@pytest.mark.parametrize("headline", [CLOSING, STYLE_LIKE])
def test_preview_and_dry_run_print_brackets_in_headline_email_and_file_names_as_written(
    tmp_path: Path, command: str, headline: str
) -> None:
    out = tmp_path / "out[/]x"
    args = [command, notice_with_headline(tmp_path, headline), "--contacts", contacts_with_brackets(tmp_path), "--out", out,
            "--max-rejected", "100%"]
    result = run(*args, *(["--dry-run"] if command == "send" else []))
    assert result.exit_code == 1, result.output  # the bracketed email's row is rejected: a live send would exit 1
    assert "Internal error" not in result.output
    assert f"subject: Urgent: {headline}" in result.output
    assert BAD_EMAIL in result.output
    assert "list [north].csv, row 2" in result.output
    assert f"plan.csv are in {out}/" in result.output


def test_a_notice_or_contact_value_like_an_emoji_code_is_printed_as_written(tmp_path: Path) -> None:
    result = run("check", notice_with_headline(tmp_path, "Fire :fire: north"))
    assert result.exit_code == 0, result.output
    assert "subject: Urgent: Fire :fire: north" in result.output


def test_live_send_prints_brackets_in_failure_reasons_and_status_as_written(
    monkeypatch: pytest.MonkeyPatch, sendgrid_fake, twilio_fake, x_fake, tmp_path: Path  # noqa: ANN001
) -> None:
    use_fakes(monkeypatch, sendgrid=sendgrid_fake, twilio=twilio_fake, x=x_fake)
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    # a web folder below a file cannot be made: its failure reason quotes the path, brackets and all
    (tmp_path / "blocker").write_text("a file, not a folder\n", encoding="utf-8")
    web_dir = tmp_path / "blocker" / "site [/north]"
    result = run(
        "send", notice_with_headline(tmp_path, CLOSING), "--contacts", contacts_with_brackets(tmp_path),
        "--yes", "--force", "--web-dir", web_dir, "--max-rejected", "100%",
    )
    assert result.exit_code == 1, result.output
    assert "Internal error" not in result.output
    assert "email   planned 1, sent 1" in result.output
    assert f"could not write {web_dir}" in result.output
    # the headline reached the provider exactly as written
    assert CLOSING in str(sendgrid_fake.deliveries[0].payload)
    status = run("status", "boil-water-2026-03")
    assert status.exit_code == 0, status.output
    assert f"could not write {web_dir}" in status.output
    unknown = run("status", "no-such[/]notice")
    assert unknown.exit_code == 0, unknown.output
    assert "The ledger has nothing for no-such[/]notice yet." in unknown.output
