"""Two people before a blast: `approve` binds an approval to exactly what `send` would send, in the ledger."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.fakes.fixtures import Fakes
from tests.test_lifecycle import counts, marks, write_people

REPO = Path(__file__).resolve().parent.parent
BANK = REPO / "tests" / "data" / "notices" / "bank-breach.yaml"
ANA = "Ana Novak <ana@lakeside-water.example>"
SAM = "Sam Sender <sam@lakeside-water.example>"
#: a label only the SMS prints: editing one character of it in sl changes the sms × sl rendering and nothing else
SL_SMS_LABEL = 'labels:\n  sl:\n    sms_header: "{severity} {org}: {headline}"\n'
ORIGINAL = BANK.read_text(encoding="utf-8") + "approval: required\n" + SL_SMS_LABEL
EDITED = ORIGINAL.replace('sms_header: "{severity} {org}: {headline}"', 'sms_header: "{severity} {org}; {headline}"')


def run(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def sender(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Whoever runs `send` in these tests, unless --as says otherwise; git's own identity never leaks in."""
    monkeypatch.setenv("BROADCAST_USER", SAM)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)
    return SAM


def notice_and_people(tmp_path: Path, text: str = ORIGINAL) -> tuple[Path, Path]:
    notice = tmp_path / "bank.yaml"
    notice.write_text(text, encoding="utf-8")
    return notice, write_people(tmp_path / "people.csv")


def approve(notice: Path, people: Path, *extra: object, who: str = ANA) -> tuple[int, str, str]:
    return run("approve", notice, "--contacts", people, "--as", who, "--yes", *extra)


def send(notice: Path, people: Path, *extra: object) -> tuple[int, str, str]:
    return run("send", notice, "--contacts", people, "--yes", "--json", *extra)


def test_an_approved_send_delivers_and_an_sms_edit_in_sl_refuses_naming_it(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    live = live_send
    notice, people = notice_and_people(tmp_path)

    code, out, err = approve(notice, people)
    assert code == 0, err + out
    assert "Approved: #1 by Ana Novak <ana@lakeside-water.example> (from --as)" in out
    assert "sms [sl]:" in out and "headline [sw]:" in out and "fingerprint:" in out

    before = marks(live)
    code, out, err = send(notice, people)
    assert code == 0, err + out
    first = counts(live, before)
    assert first["sms"] == first["email"] == {"en": 2, "sw": 2, "sl": 2}
    print("\napproved send:", {k: dict(v) for k, v in first.items()})

    # one character of the Slovenian SMS header changes: the send refuses and names that rendering alone
    notice.write_text(EDITED, encoding="utf-8")
    before = marks(live)
    code, out, err = send(notice, people)
    assert code == 2, err + out
    assert marks(live) == before, "nothing may be sent"
    said = err.replace("\n", " ")
    assert re.search(r"sms × sl changed since Ana Novak approved at \d{4}-\d\d-\d\d \d\d:\d\d UTC; run approve again", said), said
    assert said.count("changed since") == 1, said
    print("refusal:", err.strip().splitlines()[0])

    # re-approved: the send goes out to the Slovenian SMS recipients only, worded as an update
    code, out, err = approve(notice, people)
    assert code == 0, err + out
    before = marks(live)
    code, out, err = send(notice, people)
    assert code == 0, err + out
    again = counts(live, before)
    assert again["sms"] == {"sl": 2} and again["email"] == Counter() and again["social"]["posts"] == 0
    bodies = [d.payload["body"] for d in live.twilio.deliveries[before["sms"]:]]
    assert bodies and all(b.startswith("POSODOBITEV: ") for b in bodies), bodies
    print("after re-approval:", {k: dict(v) for k, v in again.items()})


def test_without_an_approval_a_required_notice_sends_nothing(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    before = marks(live_send)
    code, out, err = send(notice, people)
    assert code == 2, err + out
    assert marks(live_send) == before
    assert "sms × sl is not approved" in err and "email × en is not approved" in err
    assert "Traceback" not in err


def test_the_environment_requires_approval_for_every_notice(live_send: Fakes, sender: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notice, people = notice_and_people(tmp_path, BANK.read_text(encoding="utf-8"))
    before = marks(live_send)
    assert send(notice, people)[0] == 0  # optional by default: sent
    notice.write_text(BANK.read_text(encoding="utf-8").replace("PINs are safe.", "PINs are safe!"), encoding="utf-8")
    monkeypatch.setenv("BROADCAST_REQUIRE_APPROVAL", "1")
    mark = marks(live_send)
    code, out, err = send(notice, people)
    assert code == 2 and marks(live_send) == mark
    assert "email × en is not approved" in err
    assert marks(live_send) != before


def test_the_approver_must_not_be_the_sender_unless_self_approve(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    # the same person, written differently: compared by address
    assert approve(notice, people, who="sam@LAKESIDE-water.example")[0] == 0
    before = marks(live_send)
    code, out, err = send(notice, people)
    assert code == 2 and marks(live_send) == before
    assert "was approved only by you, the sender (Sam Sender <sam@lakeside-water.example> (from BROADCAST_USER))" in err
    assert "--self-approve" in err
    code, out, err = send(notice, people, "--self-approve")
    assert code == 0, err + out
    assert any("self-approved" in w for w in json.loads(out)["warnings"]), out


def test_identity_comes_from_git_when_nothing_else_says(live_send: Fakes, sender: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notice, people = notice_and_people(tmp_path)
    monkeypatch.delenv("BROADCAST_USER")
    code, out, err = run("approve", notice, "--contacts", people, "--yes")
    assert code == 2 and "cannot tell who is approving" in err and "Traceback" not in err
    (tmp_path / "gitconfig").write_text("[user]\n\temail = ana@lakeside-water.example\n", encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    code, out, err = run("approve", notice, "--contacts", people, "--yes")
    assert code == 0, err + out
    assert "by ana@lakeside-water.example (from git user.email)" in out


def test_the_preview_page_shows_each_renderings_approval(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    out = tmp_path / "preview"

    def page() -> dict[str, tuple[str, str]]:
        code, text, err = run("preview", notice, "--contacts", people, "--out", out)
        assert code == 0, err + text
        html = (out / "index.html").read_text(encoding="utf-8")
        found = re.findall(r'data-channel="(\w+)" data-language="(\w+)".*?data-approval="(\w+)" title="([^"]*)"', html, re.S)
        return {f"{c} × {lang}": (state, title) for c, lang, state, title in found}

    before = page()
    # email, SMS, the banner and the call script in each of the three languages; X in the notice's one social language
    assert before["sms × sl"][0] == "unapproved" and len(before) == 13 and "social × en" in before and "voice × sw" in before
    assert approve(notice, people)[0] == 0
    approved = page()
    assert {state for state, _ in approved.values()} == {"approved"}
    assert approved["email × en"][1].startswith("email × en approved by Ana Novak at ")
    notice.write_text(EDITED, encoding="utf-8")
    edited = page()
    assert edited["sms × sl"][0] == "changed" and "sms × sl changed since Ana Novak approved at" in edited["sms × sl"][1]
    assert {k for k, (state, _) in edited.items() if state != "approved"} == {"sms × sl"}
    assert "Approval <b>required</b>" in (out / "index.html").read_text(encoding="utf-8")


def test_check_preview_approve_and_send_compute_one_fingerprint(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    code, out, err = run("approve", notice, "--contacts", people, "--as", ANA, "--yes", "--json")
    assert code == 0, err
    approved = json.loads(out)
    assert send(notice, people)[0] == 0
    assert run("check", notice)[0] == 0
    events = json.loads(run("log", notice, "--json")[1])["events"]
    # approve's fingerprint includes the audience; send and check record the renderings' own, which must agree
    # with each other and with the approval's per-rendering digests
    fingerprints = {e["event"]: e["fingerprint"] for e in events}
    assert fingerprints["approve"] == approved["fingerprint"]
    assert fingerprints["send"] == fingerprints["check"] != ""
    assert set(approved["renderings"]) == {f"{c} × {lang}" for c in ("email", "sms", "web", "voice") for lang in ("en", "sw", "sl")} | {"social × en"}


def test_the_scheduled_workflow_exits_2_with_one_error_line_naming_the_unapproved_edit(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    """The workflow's own send step, run by bash against the fakes: an edit pushed without approval sends nothing."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "resend.yml").read_text(encoding="utf-8"))
    job = workflow["jobs"]["resend"]
    step = next(s for s in job["steps"] if s.get("name") == "Send what is still owed")
    notice, people = notice_and_people(tmp_path)
    script = step["run"]
    for name, value in {"BROADCAST_NOTICE": notice, "BROADCAST_CONTACTS": people, "BROADCAST_CHANNELS": "",
                        "BROADCAST_RESEND_AFTER": ""}.items():
        script = script.replace("${{ vars.%s }}" % name, str(value))
    assert "${{" not in script
    assert job["env"]["BROADCAST_REQUIRE_APPROVAL"] == "1"
    env = {**os.environ, "BROADCAST_REQUIRE_APPROVAL": "1", "BROADCAST_USER": "github-actions (lakeside/alerts)",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    assert shutil.which("broadcast", path=env["PATH"])

    def ci() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    assert approve(notice, people)[0] == 0
    first = ci()
    assert first.returncode == 0, first.stderr
    notice.write_text(EDITED, encoding="utf-8")
    before = marks(live_send)
    second = ci()
    errors = [line for line in second.stdout.splitlines() if line.startswith("::error::")]
    print("\nCI:", second.returncode, errors)
    assert second.returncode == 2 and marks(live_send) == before
    assert len(errors) == 1 and "sms × sl changed since Ana Novak approved at" in errors[0] and "Nothing was sent" in errors[0]


@pytest.mark.parametrize("value", ["maybe", "{policy: required, audience: everyone}", "{required: yes}"])
def test_a_bad_approval_field_names_the_line_and_field(tmp_path: Path, value: str) -> None:
    notice = tmp_path / "bank.yaml"
    notice.write_text(BANK.read_text(encoding="utf-8") + f"approval: {value}\n", encoding="utf-8")
    code, out, err = run("check", notice)
    assert code == 2 and "Traceback" not in err
    assert "approval" in err and re.search(r"line \d+", err), err


def test_approve_asks_and_without_a_terminal_needs_yes(live_send: Fakes, sender: str, tmp_path: Path) -> None:
    notice, people = notice_and_people(tmp_path)
    code, out, err = run("approve", notice, "--contacts", people, "--as", ANA)
    assert code == 2 and "refusing to approve without --yes in a non-interactive shell; nothing was recorded" in err
    before = marks(live_send)
    assert send(notice, people)[0] == 2 and marks(live_send) == before
    code, out, err = run("log", notice, "--json")
    assert [(e["event"], e["exit_code"]) for e in json.loads(out)["events"]] == [("approve", 2), ("send", 2)]
