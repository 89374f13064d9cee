"""Live progress and Ctrl-C: bars for a person at a terminal, none in CI; an interrupt finishes what is under way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broadcast.message import Receipt
from broadcast.plan import build_plan
from broadcast.report import progress
from tests.conftest import EXAMPLE, REPO
from tests.fakes.fixtures import use_fakes


def _plan():  # noqa: ANN202
    from broadcast.contacts import read_contacts
    from broadcast.notice import load_notice
    from broadcast.render import Templates, render_notice

    return build_plan(render_notice(load_notice(EXAMPLE), Templates()), read_contacts([REPO / "contacts" / "example.csv"]), ["sms"])


def test_progress_is_off_when_not_enabled() -> None:
    with progress(_plan(), enabled=False) as advance:
        assert advance is None


def test_progress_bar_counts_receipts(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from broadcast import report

    screen = Console(file=io.StringIO(), force_terminal=True, width=150, record=True)
    monkeypatch.setattr(report, "_console", lambda stderr=False: screen)
    plan = _plan()
    plan.to_send["sms"] = 8
    messages = list(plan.messages())
    with progress(plan, enabled=True) as advance:
        assert advance is not None
        advance([Receipt(m.id, "sms", m.recipient, "sent") for m in messages[:3]])
        advance([Receipt(messages[3].id, "sms", messages[3].recipient, "failed", reason="x")])
    shown = screen.export_text()
    # the last frame: 4 of the 8 to send done, 3 sent and 1 failed
    assert "4/8" in shown and "sent 3 · failed 1" in shown, shown


def test_ctrl_c_finishes_what_is_in_flight_records_it_and_says_what_was_not_sent(
    monkeypatch: pytest.MonkeyPatch, twilio_fake, tmp_path: Path  # noqa: ANN001
) -> None:
    use_fakes(monkeypatch, twilio=twilio_fake)
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    twilio_fake.latency = 0.05
    contacts = tmp_path / "c.csv"
    contacts.write_text("phone,language\n" + "\n".join(f"+38641{n:06d},en" for n in range(100, 400)) + "\n", encoding="utf-8")
    args = [sys.executable, "-m", "broadcast", "send", str(EXAMPLE), "--contacts", str(contacts), "--channel", "sms", "--yes", "--json", "--force"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ}, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while len(twilio_fake.deliveries) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    data = json.loads(out)
    sms = data["channels"]["sms"]
    assert data["interrupted"] is True
    # what the fake received is exactly what the run says it sent: in-flight requests were settled, not lost
    assert sms["sent"] == len(twilio_fake.deliveries) < 300, (sms, err.decode()[-3000:])
    assert sms["sent"] + sms["failed"] + sms["not_started"] == 300 and sms["unknown"] == 0
    assert sms["not_started"] > 0 and sms["failed"] == 0  # nothing failed: the rest was left for the next run
    # and the next run sends the rest, once each
    again = subprocess.run(args, capture_output=True, env={**os.environ}, cwd=tmp_path, timeout=120)
    assert again.returncode == 0, again.stderr.decode()
    assert len(twilio_fake.deliveries) == 300 and twilio_fake.duplicates() == {}
