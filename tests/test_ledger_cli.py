"""The ledger through the CLI: where it lives, which one a run used, and every way it can be wrong (exit 2, never 3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import Fakes
from tests.test_ledger import ledger_url  # noqa: F401 - the sqlite/postgresql fixture

CONTACTS = "name,email,phone,language\nAna Novak,ana@mail.example,+38641555010,sl\nOliver,oliver@mail.example,+447911000012,en\n"
ADDRESSES = ("ana@mail.example", "+38641555010", "oliver@mail.example", "+447911000012")
#: the example's Slovenian SMS is 9 segments; these tests are not about length
LONG_SMS = ("--max-sms-segments", "10")
NOTICE_ID = "boil-water-2026-03"


def run(*args: object) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def plain(result: Any, code: int = 2) -> str:
    """The output of a run that must end with ``code``, without a traceback, an address or an internal error."""
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output and "Internal error" not in output and "SELECT" not in output, output
    assert not [a for a in ADDRESSES if a in output], output
    return output


@pytest.fixture()
def place(tmp_path: Path) -> Path:
    """A notice in its own folder, with a contacts file beside it; the tests run from other folders."""
    folder = tmp_path / "notices"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "boil-water.yaml")
    (folder / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    return folder / "boil-water.yaml"


def send(notice: Path, *options: object) -> Any:
    return run("send", notice, "--contacts", notice.parent / "contacts.csv", *LONG_SMS, *options)


def sent_by_another_process(notice: Path, *options: object) -> None:
    """A live send in its own process, as in life: when it ends, SQLite folds the WAL into the ledger file and
    removes -wal and -shm (in this process the CLI's connections would stay open)."""
    subprocess.run(
        [sys.executable, "-m", "broadcast", "send", notice, "--contacts", notice.parent / "contacts.csv", *options,
         "--yes", *LONG_SMS],
        check=True, capture_output=True, timeout=120,
    )


def elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    monkeypatch.chdir(folder)
    return folder


# -- where the ledger lives -------------------------------------------------------------------------------


def test_runs_from_two_folders_use_the_ledger_beside_the_notice(place: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROADCAST_LEDGER")
    web = tmp_path / "web"
    expected = f"sqlite:///{place.parent / '.broadcast' / 'ledger.db'}"
    elsewhere(monkeypatch, tmp_path, "first")
    first = send(place, "--channel", "web", "--web-dir", web, "--yes", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["channels"]["web"]["sent"] == 3  # one banner per notice language
    assert json.loads(first.stdout)["ledger"] == expected

    elsewhere(monkeypatch, tmp_path, "second")
    again = send(place, "--channel", "web", "--web-dir", web, "--yes")
    assert again.exit_code == 0, again.output
    assert "web     planned 3, sent 0, skipped 3" in again.stdout and f"Ledger: {expected}" in again.stdout
    preview = run("preview", place, "--contacts", place.parent / "contacts.csv", "--channel", "web", "--json", *LONG_SMS)
    assert json.loads(preview.stdout)["ledger"] == expected and json.loads(preview.stdout)["ledger_found"] is True
    status = run("status", place)
    assert status.exit_code == 0 and f"Ledger: {expected}" in status.stdout
    assert json.loads(run("status", place, "--json").stdout)["ledger"] == expected
    assert not (tmp_path / "first" / ".broadcast").exists() and not (tmp_path / "second" / ".broadcast").exists()


def test_a_dry_run_says_when_there_is_no_ledger_yet(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROADCAST_LEDGER")
    result = run("preview", place, "--contacts", place.parent / "contacts.csv", "--channel", "web", *LONG_SMS)
    assert result.exit_code == 0, result.output
    assert "(not there yet: everyone is planned as a first send)" in result.stdout
    assert not (place.parent / ".broadcast").exists()  # a dry-run never creates it


def test_the_working_folder_ledger_of_earlier_versions_is_not_silently_left_behind(
    place: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = tmp_path / "web"
    here = elsewhere(monkeypatch, tmp_path, "ops")
    # what an earlier broadcast did: the ledger in the folder it ran from
    monkeypatch.setenv("BROADCAST_LEDGER", "sqlite:///.broadcast/ledger.db")
    assert send(place, "--channel", "web", "--web-dir", web, "--yes").exit_code == 0
    monkeypatch.delenv("BROADCAST_LEDGER")
    banner = web / "banner.sl.html"
    written = banner.stat().st_mtime_ns

    dry = run("preview", place, "--contacts", place.parent / "contacts.csv", "--channel", "web", "--json", *LONG_SMS)
    assert dry.exit_code == 0, dry.output
    [warning] = [w for w in json.loads(dry.stdout)["warnings"] if w.startswith("ledger:")]
    assert str(here / ".broadcast" / "ledger.db") in warning and "would reach everyone again" in warning
    assert f"mkdir -p {place.parent / '.broadcast'} && mv {here / '.broadcast' / 'ledger.db'}*" in warning
    # a ledger named with --ledger is the person's choice: no second-guessing
    chosen = run("preview", place, "--contacts", place.parent / "contacts.csv", "--channel", "web", "--json",
                 "--ledger", f"sqlite:///{tmp_path / 'new.db'}", *LONG_SMS)
    assert not [w for w in json.loads(chosen.stdout)["warnings"] if w.startswith("ledger:")]

    live = send(place, "--channel", "web", "--web-dir", web, "--yes")
    output = plain(live)
    assert "nothing was sent" in output and "Hint: move the ledger beside the notice: mkdir -p" in output
    assert banner.stat().st_mtime_ns == written

    # the hint's command, as a person would paste it
    command = output.split("Hint: move the ledger beside the notice: ", 1)[1].strip()
    subprocess.run(command, shell=True, check=True, cwd=here)  # noqa: S602 - the command the hint offers
    moved = send(place, "--channel", "web", "--web-dir", web, "--yes", "--json")
    assert moved.exit_code == 0 and json.loads(moved.stdout)["channels"]["web"]["sent"] == 0


# -- long values on both databases ---------------------------------------------------------------------


def test_a_banner_in_a_long_web_dir_is_recorded_as_sent(ledger_url: str, place: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("BROADCAST_LEDGER", ledger_url)
    web = tmp_path.joinpath(*["a-long-folder-name-for-the-site"] * 8)
    result = send(place, "--channel", "web", "--web-dir", web, "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert len(str(web / "banner.sl.html")) > 200
    rows = json.loads(run("status", NOTICE_ID, "--json").stdout)["rows"]
    assert {row["channel"] for row in rows} == {"web"} and len(rows) == 3  # a banner per language, each its version
    assert [sum(row[k] for row in rows) for k in ("sent", "unknown", "failed")] == [3, 0, 0]


# -- a ledger that is wrong: exit 2 with a hint, never 3, never an address or a password -------------------


@pytest.fixture()
def providers(fake_providers: Fakes, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
    return fake_providers


def test_an_in_memory_ledger_is_refused(place: Path, providers: Fakes) -> None:
    output = plain(send(place, "--ledger", "sqlite://", "--channel", "email,sms", "--yes"))
    assert "in-memory" in output and "Hint:" in output
    assert [len(f.requests) for f in providers] == [0, 0, 0]
    assert "in-memory" in plain(run("preview", place, "--contacts", place.parent / "contacts.csv", "--ledger", "sqlite://"))


def test_a_damaged_ledger_stops_send_status_and_preview_with_a_hint(place: Path, tmp_path: Path, providers: Fakes) -> None:
    ledger = tmp_path / "ledger.db"
    options = ("--ledger", f"sqlite:///{ledger}", "--channel", "email,sms")
    sent_by_another_process(place, *options)
    with ledger.open("r+b") as damaged:  # the first page (the schema) survives, the rows do not
        damaged.seek(4096)
        damaged.write(os.urandom(ledger.stat().st_size - 4096))
    sent_before = [len(f.requests) for f in providers]
    for result in (
        send(place, *options, "--yes"),
        run("status", NOTICE_ID, "--ledger", f"sqlite:///{ledger}"),
        run("preview", place, "--contacts", place.parent / "contacts.csv", *options, *LONG_SMS),
    ):
        output = plain(result)
        assert "the ledger is damaged" in output and "restore it from a backup" in output
    assert [len(f.requests) for f in providers] == sent_before


def test_a_postgresql_url_that_cannot_be_read_hides_its_password(place: Path) -> None:
    output = plain(send(place, "--ledger", "postgresql+psycopg://ops:s3cret-db-pass@[::1", "--channel", "web", "--yes"))
    assert "not a database URL" in output and "s3cret-db-pass" not in output and "Hint:" in output


@pytest.mark.parametrize("value", ["99999999999d", "99999999999999h"])
def test_a_reminder_interval_beyond_any_date_is_refused(place: Path, value: str) -> None:
    output = plain(send(place, "--resend-after", value, "--channel", "web", "--yes"))
    assert "--resend-after" in output


# -- a read-only ledger -------------------------------------------------------------------------------------


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make ``paths`` unwritable even for root (tests run as root, where chmod stops nothing): chattr +i."""
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"chattr +i is not available here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", *map(str, paths)], check=False)
        for path in paths:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_status_and_preview_read_a_ledger_nobody_may_write(place: Path, tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    ledger = folder / "ledger.db"
    options = ("--ledger", f"sqlite:///{ledger}", "--channel", "web")
    sent_by_another_process(place, *options, "--web-dir", tmp_path / "web")
    assert sorted(p.name for p in folder.iterdir()) == ["ledger.db"]
    with read_only(ledger, folder):
        # the disk really refuses writes now
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")
        status = run("status", NOTICE_ID, "--ledger", f"sqlite:///{ledger}", "--json")
        assert status.exit_code == 0, status.output
        assert sum(row["sent"] for row in json.loads(status.stdout)["rows"]) == 3
        preview = run("preview", place, "--contacts", place.parent / "contacts.csv", *options, "--json", *LONG_SMS)
        assert preview.exit_code == 0, preview.output
        assert json.loads(preview.stdout)["channels"]["web"]["skipped_reasons"] == {"already sent": 3}
        # a live send needs to write, and says so instead of crashing
        assert "cannot open the ledger" in plain(send(place, *options, "--yes"))
