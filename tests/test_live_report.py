"""The live send's report says, like the dry-run's, who was rejected, what each warning costs and why anything was skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import Fakes

MESSY = (
    "name,email,phone,language\n"
    "Ana,ana@mail.example,+38641555010,sl\n"
    "Nobody,not-an-address,,en\n"  # row 3: rejected, no usable address
    "Ben,ben@mail.example,12,en\n"  # row 4: keeps email, loses SMS
)


@pytest.fixture()
def live(live_send: Fakes, tmp_path: Path) -> Fakes:
    (tmp_path / "messy.csv").write_text(MESSY, encoding="utf-8")
    return live_send


def test_the_live_report_lists_rejected_rows_warnings_and_skipped_reasons(live: Fakes, tmp_path: Path) -> None:
    args = ["send", str(EXAMPLE), "--contacts", str(tmp_path / "messy.csv"), "--channel", "email,sms", "--yes",
            "--max-sms-segments", "20", "--max-rejected", "100%"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code in (0, 1), first.output
    assert "messy.csv" in first.output
    assert "row 3" in first.output and "rejected" in first.output
    assert "row 4" in first.output and "warning" in first.output
    again = CliRunner().invoke(main, args)
    assert "skipped: already sent" in again.output, again.output
    assert len(live.sendgrid.deliveries) == 2 and len(live.twilio.deliveries) == 1
