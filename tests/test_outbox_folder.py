"""The --out folder: broadcast writes only to a folder it made, clears its earlier preview, and never writes through links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.channels.outbox import MARKER_FILE, write_rendering
from broadcast.cli import main
from broadcast.errors import InputError
from tests.conftest import CONTACTS, EXAMPLE, STORM

OUTSIDE = "someone else's file, which no preview may change\n"


def run(*args: object):  # noqa: ANN201
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def dry_run(*args: object):  # noqa: ANN201
    """The README's main command, run in the test's own folder (so it writes ./outbox)."""
    return run("send", EXAMPLE, "--contacts", CONTACTS, "--dry-run", *args)


def outside_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "elsewhere" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(OUTSIDE, encoding="utf-8")
    return path


def test_the_readme_dry_run_works_twice_in_a_row_and_marks_its_folder() -> None:
    first = dry_run()
    assert first.exit_code == 0, first.output
    second = dry_run()
    assert second.exit_code == 0, second.output
    assert Path("outbox", MARKER_FILE).is_file()
    assert Path("outbox/email/en.html").is_file() and Path("outbox/index.html").is_file()


def test_preview_twice_into_the_same_folder_works(tmp_path: Path) -> None:
    out = tmp_path / "p"
    for _ in range(2):
        result = run("preview", EXAMPLE, "--contacts", CONTACTS, "--out", out)
        assert result.exit_code == 0, result.output
    assert (out / MARKER_FILE).is_file() and (out / "plan.csv").is_file()


def test_a_new_preview_clears_renderings_of_an_earlier_notice(tmp_path: Path) -> None:
    out = tmp_path / "p"
    assert run("preview", STORM, "--contacts", CONTACTS, "--out", out).exit_code == 0
    assert (out / "email" / "ar.html").is_file()  # the storm notice has Arabic; the boil-water notice does not
    assert run("preview", EXAMPLE, "--contacts", CONTACTS, "--out", out).exit_code == 0
    assert not (out / "email" / "ar.html").exists()
    assert (out / "email" / "sw.html").is_file()


def test_out_refuses_a_folder_with_files_broadcast_did_not_write(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>our real home page</p>\n", encoding="utf-8")
    result = dry_run("--out", site)
    assert result.exit_code == 2, result.output
    assert str(site) in result.output and "index.html" in result.output
    assert "nothing was written and nothing was sent" in result.output and "Hint:" in result.output
    assert "Traceback" not in result.output and "Internal error" not in result.output
    assert (site / "index.html").read_text(encoding="utf-8") == "<p>our real home page</p>\n"
    assert sorted(os.listdir(site)) == ["index.html"]


def test_out_dot_in_a_working_folder_is_refused_and_clobbers_nothing(tmp_path: Path) -> None:
    Path("index.html").write_text("mine\n", encoding="utf-8")
    result = run("preview", EXAMPLE, "--contacts", CONTACTS, "--out", ".")
    assert result.exit_code == 2, result.output
    assert Path("index.html").read_text(encoding="utf-8") == "mine\n"
    assert not Path("plan.csv").exists() and not Path("email").exists()


@pytest.mark.parametrize("planted", ["plan.csv", "index.html", "email/en.html"])
def test_a_symlink_planted_in_broadcasts_own_folder_is_not_written_through(tmp_path: Path, planted: str) -> None:
    assert dry_run().exit_code == 0
    target = outside_file(tmp_path, "target.txt")
    link = Path("outbox") / planted
    link.unlink()
    link.symlink_to(target)
    result = dry_run()
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == OUTSIDE
    assert not link.is_symlink() and link.is_file()


@pytest.mark.parametrize("planted", ["plan.csv", "index.html", "email/en.html"])
def test_a_symlink_planted_in_a_folder_broadcast_did_not_make_is_refused(tmp_path: Path, planted: str) -> None:
    target = outside_file(tmp_path, "target.txt")
    link = Path("outbox") / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    result = dry_run()
    assert result.exit_code == 2, result.output
    assert target.read_text(encoding="utf-8") == OUTSIDE


def test_a_channel_folder_linked_elsewhere_is_removed_not_followed(tmp_path: Path) -> None:
    assert dry_run().exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "en.html").write_text(OUTSIDE, encoding="utf-8")
    os.rename("outbox/email", tmp_path / "old-email")
    Path("outbox/email").symlink_to(elsewhere, target_is_directory=True)
    result = dry_run()
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(elsewhere)) == ["en.html"]
    assert (elsewhere / "en.html").read_text(encoding="utf-8") == OUTSIDE
    assert not Path("outbox/email").is_symlink() and Path("outbox/email/en.html").is_file()


def test_a_hard_link_planted_at_plan_csv_is_replaced_not_written_through(tmp_path: Path) -> None:
    assert dry_run().exit_code == 0
    target = outside_file(tmp_path, "plan-target.csv")
    Path("outbox/plan.csv").unlink()
    os.link(target, "outbox/plan.csv")
    assert dry_run().exit_code == 0
    assert target.read_text(encoding="utf-8") == OUTSIDE
    assert Path("outbox/plan.csv").read_text(encoding="utf-8").startswith("channel,language,recipient")


def test_a_rendering_is_never_written_into_a_channel_folder_that_is_a_link(tmp_path: Path) -> None:
    # the folder is cleared before writing; this guards the moment between the clear and the write
    from broadcast.plan import PlanRequest, prepare

    plan, _ = prepare(PlanRequest(EXAMPLE, (CONTACTS,), channels=("email",)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "email").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InputError, match="is a link or a file"):
        write_rendering(out, plan.renders.get("email", "en"))
    assert os.listdir(elsewhere) == []
