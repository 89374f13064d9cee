"""The command line, driven as a user would through click's CliRunner: exit codes, messages, files, JSON."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import CONTACTS, EXAMPLE, REPO, STORM


def run(*args: str, input: str | None = None):  # noqa: ANN201, A002
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def test_check_passes_on_the_examples() -> None:
    for notice in (EXAMPLE, STORM):
        result = run("check", notice)
        assert result.exit_code == 0, result.output
        assert "OK" in result.output


def test_check_json_lists_renderings() -> None:
    result = run("check", EXAMPLE, "--json")
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["languages"] == ["en", "sw", "sl"]
    sms = {r["language"]: r for r in data["renderings"] if r["channel"] == "sms"}
    assert sms["sl"]["encoding"] == "UCS-2" and sms["en"]["encoding"] == "GSM-7"


def test_check_fails_when_a_template_leaves_out_a_channel(tmp_path: Path) -> None:
    import shutil

    templates = tmp_path / "t"
    shutil.copytree(REPO / "templates", templates)
    web = templates / "web" / "banner.html.j2"
    web.write_text(web.read_text(encoding="utf-8").replace("for channel in notice.channels", "for channel in notice.channels[1:]"), encoding="utf-8")
    result = run("check", EXAMPLE, "--templates", templates)
    assert result.exit_code == 2
    assert "web (sw) leaves out hotline" in result.output
    assert "Traceback" not in result.output


def test_preview_writes_every_rendering_and_a_plan(tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = run("preview", EXAMPLE, "--contacts", CONTACTS, "--out", out)
    assert result.exit_code == 0, result.output
    assert "Dry-run: nothing was sent" in result.output
    for lang in ("en", "sw", "sl"):
        for name in (f"email/{lang}.html", f"email/{lang}.txt", f"email/{lang}.subject.txt", f"sms/{lang}.txt", f"web/{lang}.html"):
            assert (out / name).is_file(), name
    assert (out / "social" / "en.txt").is_file()
    with (out / "plan.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # every valid contact appears, each on the channels they can get, in their language
    emails = {r["recipient"]: r["language"] for r in rows if r["channel"] == "email"}
    assert emails["janez.kos@zascita.example"] == "sl"  # sl-SI falls back to sl
    assert emails["lena.fischer@mail.example"] == "en"  # de is not in the notice: default language
    assert "mwangi.kariuki@relief" not in emails  # bad email reported, not sent
    # ...but its phone is kept, with the leading quote that keeps a spreadsheet from reading "+…" as a formula
    assert any(r["recipient"] == "'+254712555014" for r in rows if r["channel"] == "sms")


def test_send_dry_run_json_matches_the_documented_shape(tmp_path: Path) -> None:
    result = run("send", EXAMPLE, "--contacts", CONTACTS, "--dry-run", "--json", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["notice"] == "boil-water-2026-03" and data["dry_run"] is True
    assert data["contacts"] == {"read": 16, "valid": 15, "rejected": 0, "merged": 1, "lost_channel": 2}
    assert set(data["channels"]) == {"email", "sms", "social", "web", "voice"}
    for name, counts in data["channels"].items():
        assert counts["sent"] == 0 and counts["failed"] == 0
        # voice is opt-in: nobody in the example contacts asked for a call, so nobody is called
        assert counts["previewed"] == counts["planned"] and (counts["planned"] == 0) == (name == "voice"), name
    assert data["channels"]["web"]["planned"] == 3 and data["channels"]["social"]["planned"] == 1
    with (tmp_path / "o" / "plan.csv").open(encoding="utf-8") as f:
        assert sum(1 for _ in f) - 1 == sum(c["planned"] for c in data["channels"].values())


def test_channel_option_limits_what_is_planned(tmp_path: Path) -> None:
    result = run("send", EXAMPLE, "--contacts", CONTACTS, "--dry-run", "--json", "--channel", "sms", "--out", tmp_path / "o")
    data = json.loads(result.stdout)
    assert list(data["channels"]) == ["sms"]
    result = run("send", EXAMPLE, "--contacts", CONTACTS, "--dry-run", "--channel", "fax")
    assert result.exit_code == 2 and "unknown channel fax" in result.output


def test_live_send_without_yes_in_a_non_interactive_shell_refuses() -> None:
    result = run("send", EXAMPLE, "--contacts", CONTACTS, "--channel", "web")
    assert result.exit_code == 2
    assert "without --yes" in result.output and "nothing was sent" in result.output
    assert not Path("web").exists()


def test_live_send_without_credentials_names_every_missing_variable() -> None:
    result = run("send", EXAMPLE, "--contacts", CONTACTS, "--yes")
    assert result.exit_code == 2
    for name in ("SENDGRID_API_KEY", "BROADCAST_EMAIL_FROM", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM", "X_BEARER_TOKEN"):
        assert name in result.output
    assert "Nothing was sent" in result.output
    assert "Traceback" not in result.output


def test_both_twilio_senders_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token-token-token")
    monkeypatch.setenv("TWILIO_FROM", "+15005550006")
    monkeypatch.setenv("TWILIO_MESSAGING_SERVICE_SID", "MG" + "2" * 32)
    result = run("send", EXAMPLE, "--contacts", CONTACTS, "--yes", "--channel", "sms")
    assert result.exit_code == 2 and "not both" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["check", "missing.yaml"], "notice file not found"),
        (["preview", str(EXAMPLE), "--contacts", "nope.csv"], "nope.csv"),
        (["preview", str(EXAMPLE)], "Missing option '--contacts'"),
    ],
)
def test_user_errors_exit_2_without_traceback(args: list[str], words: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert words in result.output
    assert "Traceback" not in result.output


def test_bad_notice_stops_before_contacts_are_used(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("channel: portal", "channel: nowhere"), encoding="utf-8")
    out = tmp_path / "o"
    result = run("send", bad, "--contacts", CONTACTS, "--dry-run", "--out", out)
    assert result.exit_code == 2 and "nowhere" in result.output
    assert not out.exists()


def test_env_file_is_read_and_secrets_are_masked(tmp_path: Path) -> None:
    env = tmp_path / "custom.env"
    env.write_text("TWILIO_ACCOUNT_SID=ACsecretsecretsecret\nTWILIO_AUTH_TOKEN=tok-very-secret-123\nTWILIO_FROM=+15005550006\nTWILIO_MESSAGING_SERVICE_SID=MGx\n", encoding="utf-8")
    result = run("--env-file", env, "send", EXAMPLE, "--contacts", CONTACTS, "--yes", "--channel", "sms")
    assert result.exit_code == 2 and "not both" in result.output
    assert "tok-very-secret-123" not in result.output and "ACsecretsecretsecret" not in result.output


def test_help_does_not_import_the_provider_sdks() -> None:
    code = "import sys, broadcast.cli; print(sorted(m for m in ('sendgrid','twilio','tweepy','apprise','jinja2','pydantic','rich','sqlalchemy','boto3','botocore','dulwich','mastodon','atproto','atproto_client','httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_command_without_loading_them() -> None:
    """`broadcast --help` is typed under stress and must be instant: it builds no command and imports no logging."""
    code = (
        "import contextlib, io, sys\nfrom broadcast.cli import main\nshown = io.StringIO()\n"
        "with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):\n    main(['--help'])\n"
        "assert 'Send NOTICE to the contacts' in shown.getvalue(), shown.getvalue()\n"
        "print(sorted(m for m in ('broadcast.commands', 'logging', 'shutil') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("columns", ["40", "80", "100", "200"])
def test_help_lists_each_command_as_its_own_help_says(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The group's listing comes from cli.COMMANDS, not the loaded commands: it must say what each command says."""
    import click

    from broadcast import commands
    from broadcast.cli import COMMANDS

    monkeypatch.setenv("COLUMNS", columns)
    listed = CliRunner().invoke(main, ["--help"]).output
    loaded = click.Group("broadcast", commands=[getattr(commands, attr) for attr, _ in COMMANDS.values()],
                         context_settings={"max_content_width": 100})
    # the width click gives help at that $COLUMNS (at most max_content_width, less 2, at least 50)
    with click.Context(loaded, terminal_width=max(min(int(columns), 100) - 2, 50)) as ctx:
        formatter = ctx.make_formatter()
        loaded.format_commands(ctx, formatter)
    assert formatter.getvalue().strip() and formatter.getvalue().strip() in listed
    # every command the group lists is a command of broadcast.commands, under the same name
    assert {getattr(commands, attr).name for attr, _ in COMMANDS.values()} == set(COMMANDS)


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "broadcast", "--help"], capture_output=True, text=True, cwd=REPO, env={**os.environ})
    assert out.returncode == 0 and "Usage: broadcast" in out.stdout


MESSY = sorted((REPO / "tests" / "data" / "contacts").glob("*.csv"))


@pytest.mark.parametrize("path", MESSY, ids=[p.stem for p in MESSY])
def test_messy_contact_files_never_stop_the_run_or_hide_a_row(path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["preview", str(EXAMPLE), "--contacts", str(path), "--json", "--out", str(tmp_path / "o"), "--region", "SI"])
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        # only a file that cannot be read at all stops the run, with file and hint
        assert path.name in result.output and "Hint" in result.output
        return
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    contacts = data["contacts"]
    # every row read is accounted for: valid, merged into another, or rejected with a reason
    assert contacts["read"] == contacts["valid"] + contacts["merged"] + contacts["rejected"]
    rejected = [p for p in data["problems"] if p["rejected"]]
    assert len(rejected) == contacts["rejected"]
    for problem in data["problems"]:
        assert problem["file"].endswith(path.name) and problem["message"]


def test_live_send_refuses_an_sms_over_the_segment_limit_unless_forced(monkeypatch: pytest.MonkeyPatch, twilio_fake) -> None:  # noqa: ANN001
    from tests.fakes.fixtures import use_fakes

    use_fakes(monkeypatch, twilio=twilio_fake)
    # the example fits 3 segments in a shorter form; no form fits 1
    result = run("send", EXAMPLE, "--contacts", CONTACTS, "--channel", "sms", "--yes", "--max-sms-segments", "1")
    assert result.exit_code == 2
    assert "sl: 3 segments" in result.output and "sw: 2 segments" in result.output and "nothing was sent" in result.output
    assert twilio_fake.deliveries == []
    forced = run(
        "send", EXAMPLE, "--contacts", CONTACTS, "--channel", "sms", "--yes", "--force", "--json", "--max-sms-segments", "1"
    )
    # 8: row 13's London landline gets no SMS (a fixed-line number)
    assert forced.exit_code == 0 and len(twilio_fake.deliveries) == 8


def test_transliteration_is_opt_in_and_the_preview_shows_segments_saved(tmp_path: Path) -> None:
    # a limit no example SMS reaches, so both go out in the full form and the saving is in segments
    roomy = ("--max-sms-segments", "20")
    plain = json.loads(run("preview", EXAMPLE, "--contacts", CONTACTS, "--json", *roomy, "--out", tmp_path / "a").stdout)
    folded = json.loads(run("preview", EXAMPLE, "--contacts", CONTACTS, "--json", "--sms-transliterate", *roomy, "--out", tmp_path / "b").stdout)
    sms = {r["language"]: r for r in plain["renderings"] if r["channel"] == "sms"}
    sms_folded = {r["language"]: r for r in folded["renderings"] if r["channel"] == "sms"}
    assert sms["sl"]["encoding"] == "UCS-2" and sms_folded["sl"]["encoding"] == "GSM-7"
    assert folded["sms_transliterated"]["sl"] == {"before": sms["sl"]["segments"], "after": sms_folded["sl"]["segments"]}
    assert sms_folded["sl"]["segments"] < sms["sl"]["segments"]
    assert "č" not in (tmp_path / "b" / "sms" / "sl.txt").read_text(encoding="utf-8")
    assert plain["versions"]["sms"] != folded["versions"]["sms"]  # recipients see a different text: a new version
    assert plain["sms_transliterated"] == {}
    # at the default limit of 3 both fit, and the folded SMS buys a fuller form instead
    plain = json.loads(run("preview", EXAMPLE, "--contacts", CONTACTS, "--json", "--out", tmp_path / "c").stdout)
    folded = json.loads(run("preview", EXAMPLE, "--contacts", CONTACTS, "--json", "--sms-transliterate", "--out", tmp_path / "d").stdout)
    sms = {r["language"]: r for r in plain["renderings"] if r["channel"] == "sms"}
    sms_folded = {r["language"]: r for r in folded["renderings"] if r["channel"] == "sms"}
    assert sms["sl"]["segments"] <= 3 and sms_folded["sl"]["segments"] <= 3
    assert sms_folded["sl"]["form"] < sms["sl"]["form"]


def test_sms_cost_is_segments_times_recipients_times_price(tmp_path: Path) -> None:
    data = json.loads(run("preview", EXAMPLE, "--contacts", CONTACTS, "--json", "--sms-segment-price", "0.05", "--out", tmp_path / "o").stdout)
    for row in data["renderings"]:
        if row["channel"] == "sms":
            assert row["billed_segments"] == row["segments"] * row["recipients"]
            assert row["cost"] == round(row["billed_segments"] * 0.05, 4)


def test_check_strict_turns_a_fallback_into_an_error(tmp_path: Path) -> None:
    import shutil

    templates = tmp_path / "t"
    shutil.copytree(REPO / "templates", templates)
    sw = templates / "labels" / "sw.yaml"
    sw.write_text("\n".join(line for line in sw.read_text(encoding="utf-8").splitlines() if not line.startswith("hours:")) + "\n", encoding="utf-8")
    loose = run("check", EXAMPLE, "--templates", templates)
    assert loose.exit_code == 0 and "labels/sw.yaml" in loose.output and "'hours'" in loose.output
    strict = run("check", EXAMPLE, "--templates", templates, "--strict")
    assert strict.exit_code == 2 and "label 'hours' missing" in strict.output
    notice = tmp_path / "n.yaml"
    notice.write_text(EXAMPLE.read_text(encoding="utf-8") + "fallback: default\n", encoding="utf-8")
    text = notice.read_text(encoding="utf-8")
    # drop the Slovenian headline: a missing translation the notice allows to fall back
    lines = [line for line in text.splitlines() if not (line.strip().startswith("sl:") and "Vodo iz pipe" in line)]
    notice.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run("check", notice).exit_code == 0
    strict = run("check", notice, "--strict")
    assert strict.exit_code == 2 and "× sl" in strict.output


@pytest.mark.parametrize("where", ["before", "after"])
def test_env_file_and_verbose_work_before_or_after_the_command(where: str, tmp_path: Path, restore_logging) -> None:  # noqa: ANN001
    env = tmp_path / "custom.env"
    env.write_text("TWILIO_ACCOUNT_SID=ACsecretsecretsecret\nTWILIO_AUTH_TOKEN=tok-very-secret-123\nTWILIO_FROM=+15005550006\nTWILIO_MESSAGING_SERVICE_SID=MGx\n", encoding="utf-8")
    globals_ = ["--env-file", str(env), "-v"]
    command = ["send", str(EXAMPLE), "--contacts", str(CONTACTS), "--yes", "--channel", "sms"]
    args = globals_ + command if where == "before" else command[:2] + globals_ + command[2:]
    import logging

    ours = logging.getLogger("broadcast")
    level = ours.level
    try:
        result = run(*args)
        # the env file was read (its two conflicting senders are the error), and -v turned on our own log
        assert result.exit_code == 2 and "not both" in result.output, result.output
        assert "tok-very-secret-123" not in result.output
        assert ours.level == logging.DEBUG
    finally:
        ours.setLevel(level)


def test_a_global_option_after_the_command_keeps_its_value_and_leaves_the_commands_own_options() -> None:
    from broadcast.cli import _hoist

    assert _hoist(main, ["check", "n.yaml", "--env-file", "x.env", "--json"]) == ["--env-file", "x.env", "check", "n.yaml", "--json"]
    assert _hoist(main, ["--env-file", "check", "check", "n.yaml"]) == ["--env-file", "check", "check", "n.yaml"]
    assert _hoist(main, ["send", "n.yaml", "--env-file=x.env", "--", "-v"]) == ["--env-file=x.env", "send", "n.yaml", "--", "-v"]
    assert _hoist(main, ["status", "id", "-v"]) == ["-v", "status", "id"]


def _readme_options() -> dict[str, set[str]]:
    """Option name → the commands the README's options table says take it (``all``: the group's own)."""
    table: dict[str, set[str]] = {}
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`-"):
            names = re.findall(r"`(-[^`\s]+)", cells[0])
            for name in names:
                assert name not in table, f"{name} is in the README's options table twice"
                table[name] = set(cells[1].split())
    return table


def test_the_readme_options_table_matches_every_commands_help() -> None:
    import click

    actual: dict[str, set[str]] = {}
    for param in main.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                actual.setdefault(name, set()).add("all")
    ctx = click.Context(main)
    # the group loads its commands lazily: ask it for each, as `broadcast COMMAND --help` does
    for command_name in main.list_commands(ctx):
        command = main.get_command(ctx, command_name)
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                for name in (*param.opts, *param.secondary_opts):
                    actual.setdefault(name, set()).add(command_name)
    documented = _readme_options()
    assert set(documented) == set(actual), (
        f"in --help only: {sorted(set(actual) - set(documented))}; in the README only: {sorted(set(documented) - set(actual))}"
    )
    for name, commands in actual.items():
        assert documented[name] == commands, f"{name}: README says {sorted(documented[name])}, --help has {sorted(commands)}"


@pytest.mark.parametrize("price", ["nan", "inf", "NaN", "infinity"])
@pytest.mark.parametrize("command", ["preview", "send"])
def test_sms_segment_price_that_is_not_a_number_is_a_usage_error(tmp_path: Path, command: str, price: str) -> None:
    args = [command, EXAMPLE, "--contacts", CONTACTS, "--out", tmp_path / "o", "--sms-segment-price", price]
    result = run(*args, *(["--dry-run"] if command == "send" else []))
    assert result.exit_code == 2, result.output
    assert "--sms-segment-price" in result.output and "is not a price" in result.output
    assert "Internal error" not in result.output and not (tmp_path / "o").exists()


def test_resend_after_too_long_for_any_clock_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["send", str(EXAMPLE), "--contacts", str(CONTACTS), "--dry-run", "--resend-after", "99999999999d"]
    )
    assert result.exit_code == 2, result.output
    assert "--resend-after" in result.output and "Traceback" not in result.output


def test_check_and_a_dry_run_load_no_provider_sdk(tmp_path: Path) -> None:
    """They read adapters' limits (Twilio's 1,600 characters) but never build a client: no SDK is imported."""
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom broadcast.cli import main\n"
        f"assert CliRunner().invoke(main, ['check', {str(EXAMPLE)!r}]).exit_code == 0\n"
        f"assert CliRunner().invoke(main, ['send', {str(EXAMPLE)!r}, '--contacts', {str(CONTACTS)!r}, '--dry-run',"
        f" '--out', {str(tmp_path / 'out')!r}]).exit_code == 0\n"
        "print(sorted(m for m in ('sendgrid', 'twilio', 'tweepy', 'apprise') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
