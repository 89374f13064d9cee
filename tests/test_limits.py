"""--rate and --concurrency on a live send: the fakes never see more requests in a second, or at once, than allowed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import EXAMPLE
from tests.fakes.fixtures import use_fakes
from tests.test_send_e2e import sms_contacts

MINIMAL = Path(__file__).parent / "data" / "notices" / "minimal.yaml"


@pytest.fixture()
def fakes(monkeypatch: pytest.MonkeyPatch, sendgrid_fake, twilio_fake, x_fake, tmp_path: Path):  # noqa: ANN001, ANN201
    use_fakes(monkeypatch, sendgrid=sendgrid_fake, twilio=twilio_fake, x=x_fake)
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    return sendgrid_fake, twilio_fake, x_fake


def send(*args: object) -> tuple[int, dict | str]:
    result = CliRunner().invoke(main, ["send", *map(str, args), "--yes", "--json", "--force"])
    return result.exit_code, (json.loads(result.stdout) if result.exit_code in (0, 1) else result.output)


def test_sms_rate_and_concurrency_caps_hold_at_the_provider(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    twilio.latency = 0.03
    contacts = sms_contacts(tmp_path / "c.csv", range(90))
    started = time.monotonic()
    code, data = send(MINIMAL, "--contacts", contacts, "--channel", "sms", "--rate", "sms=40/s", "--concurrency", "sms=3")
    took = time.monotonic() - started
    assert code == 0, data
    assert data["channels"]["sms"]["sent"] == 90 and len(twilio.deliveries) == 90 and twilio.duplicates() == {}
    assert twilio.max_in_window(1.0) <= 40, twilio.max_in_window(1.0)
    assert twilio.max_concurrency <= 3, twilio.max_concurrency
    assert took >= 2.0  # 90 requests at 40 per second cannot take less than two full windows


def test_x_posts_of_a_thread_obey_the_social_rate(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, x = fakes
    contacts = sms_contacts(tmp_path / "c.csv", range(1))
    code, data = send(EXAMPLE, "--contacts", contacts, "--channel", "social", "--rate", "social=3/s")
    assert code == 0, data
    assert len(x.deliveries) == 7 and x.max_in_window(1.0) <= 3


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--rate", "sms=fast", "sms=fast"),
        ("--rate", "pager=5/s", "pager"),
        ("--rate", "sms=0/s", "sms=0/s"),
        ("--concurrency", "sms=0", "sms=0"),
        ("--concurrency", "email=many", "email=many"),
    ],
)
def test_bad_limits_stop_before_anything_is_read_or_sent(option: str, value: str, said: str, fakes, tmp_path: Path) -> None:  # noqa: ANN001
    result = CliRunner().invoke(main, ["send", str(MINIMAL), "--contacts", str(tmp_path / "none.csv"), option, value, "--yes"])
    assert result.exit_code == 2, result.output
    assert said in result.output and "Hint:" in result.output and "Traceback" not in result.output
    assert all(fake.requests == [] for fake in fakes)
