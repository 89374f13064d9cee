"""Configuration through the CLI: provider URLs checked at start-up, the .env trust rule, and the email sender."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import EXAMPLE
from tests.fakes import SendGridFake, TwilioFake, XFake, credentials
from tests.fakes.fixtures import use_fakes

CONTACTS = "name,email,phone,language\nAna Novak,ana@mail.example,+38641555010,sl\n"
#: the example's Slovenian SMS is 9 segments; these tests are not about length
LONG_SMS = ("--max-sms-segments", "10")
SENDER = "alerts@lakeside-water.example"


def run(*args: object) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[SendGridFake, TwilioFake, XFake]]:
    with SendGridFake() as sendgrid, TwilioFake() as twilio, XFake() as x:
        use_fakes(monkeypatch, sendgrid=sendgrid, twilio=twilio, x=x)
        monkeypatch.setenv("BROADCAST_EMAIL_FROM", SENDER)
        monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'state' / 'ledger.db'}")
        monkeypatch.setenv("BROADCAST_WEB_DIR", str(tmp_path / "web"))
        (tmp_path / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
        yield sendgrid, twilio, x


def send(tmp_path: Path, *options: object) -> Any:
    return run("send", EXAMPLE, "--contacts", tmp_path / "contacts.csv", "--yes", *LONG_SMS, *options)


# -- provider URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "channel", "value"),
    [
        ("TWILIO_API_BASE_URL", "sms", "127.0.0.1:{port}"),
        ("SENDGRID_API_HOST", "email", "127.0.0.1:{port}"),
        ("X_API_BASE_URL", "social", "ftp://127.0.0.1:{port}"),
        ("TWILIO_API_BASE_URL", "sms", "http://[::1"),
        ("SENDGRID_API_HOST", "email", "http://127.0.0.1:port"),
        ("TWILIO_STATUS_CALLBACK", "sms", "example.org/twilio-status"),
    ],
)
def test_a_provider_url_that_is_not_a_full_url_stops_the_send_before_anything_goes_out(
    fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, channel: str, value: str  # noqa: ANN001
) -> None:
    port = fakes[0].url.rsplit(":", 1)[1]
    monkeypatch.setenv(variable, value.format(port=port))
    result = send(tmp_path, "--channel", channel)
    assert result.exit_code == 2, result.output
    assert variable in result.stderr and "Nothing was sent" in result.stderr and "Hint:" in result.stderr
    assert [len(f.requests) for f in fakes] == [0, 0, 0]
    assert not (tmp_path / "state").exists()


def test_a_proxy_url_with_a_password_is_accepted_and_shown_masked(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.setenv("X_API_BASE_URL", "ftp://relay:s3cret-proxy-pass@127.0.0.1:1")
    result = send(tmp_path, "--channel", "social")
    assert result.exit_code == 2
    assert "ftp://<hidden>@127.0.0.1:1" in result.stderr and "s3cret-proxy-pass" not in result.output


# -- the .env trust rule ----------------------------------------------------------------------------------


def test_a_dotenv_that_redirects_a_provider_is_refused_unless_trusted(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, _, _ = fakes
    # the key stays in the real environment; ./.env points SendGrid somewhere else (here: the fake)
    monkeypatch.delenv("SENDGRID_API_HOST")
    (tmp_path / ".env").write_text(f"SENDGRID_API_HOST={sendgrid.url}\n", encoding="utf-8")
    refused = send(tmp_path, "--channel", "email")
    assert refused.exit_code == 2, refused.output
    assert "SENDGRID_API_HOST comes from the env file" in refused.stderr and "SENDGRID_API_KEY from the environment" in refused.stderr
    assert "--trust-env-file" in refused.stderr and credentials.SENDGRID_API_KEY not in refused.output
    assert sendgrid.requests == []
    monkeypatch.delenv("SENDGRID_API_HOST")  # as a new process would start: the first run loaded .env into this one
    trusted = send(tmp_path, "--channel", "email", "--trust-env-file")
    assert trusted.exit_code == 0, trusted.output
    assert "Warning: email: SENDGRID_API_HOST comes from the env file" in trusted.stderr
    assert len(sendgrid.deliveries) == 1


def test_credentials_from_dotenv_sent_to_a_host_from_the_environment_also_need_trust(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    _, twilio, _ = fakes
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    (tmp_path / ".env").write_text(f"TWILIO_AUTH_TOKEN={credentials.TWILIO_AUTH_TOKEN}\n", encoding="utf-8")
    result = send(tmp_path, "--channel", "sms")
    assert result.exit_code == 2, result.output
    assert "TWILIO_API_BASE_URL comes from the environment, but TWILIO_AUTH_TOKEN from the env file" in result.stderr
    assert twilio.requests == []


def test_host_and_credentials_from_the_same_dotenv_need_no_flag(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, _, _ = fakes
    for name in ("SENDGRID_API_HOST", "SENDGRID_API_KEY"):
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text(
        f"SENDGRID_API_HOST={sendgrid.url}\nSENDGRID_API_KEY={credentials.SENDGRID_API_KEY}\n", encoding="utf-8"
    )
    result = send(tmp_path, "--channel", "email")
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr and len(sendgrid.deliveries) == 1


# -- the email sender -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "name_override", "expected"),
    [
        (f"Lakeside Water Alerts <{SENDER}>", None, {"email": SENDER, "name": "Lakeside Water Alerts"}),
        (f'"Vodovod, Jezero" <{SENDER}>', None, {"email": SENDER, "name": "Vodovod, Jezero"}),
        (f"Alerts <{SENDER}>", "Lakeside Water", {"email": SENDER, "name": "Lakeside Water"}),
        (SENDER, None, {"email": SENDER}),
    ],
)
def test_the_sender_may_be_written_with_a_display_name(
    fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sender: str, name_override: str | None, expected: dict[str, str]  # noqa: ANN001
) -> None:
    sendgrid, _, _ = fakes
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", sender)
    if name_override:
        monkeypatch.setenv("BROADCAST_EMAIL_FROM_NAME", name_override)
    result = send(tmp_path, "--channel", "email")
    assert result.exit_code == 0, result.output
    [request] = [r for r in sendgrid.requests if r.method == "POST"]
    assert request.body["from"] == expected
    assert sendgrid.invalid == []


@pytest.mark.parametrize("sender", ["Alerts <alerts at lakeside>", "alerts@", "Alerts"])
def test_a_sender_that_is_not_an_address_is_refused(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sender: str) -> None:  # noqa: ANN001
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", sender)
    result = send(tmp_path, "--channel", "email")
    assert result.exit_code == 2, result.output
    assert "BROADCAST_EMAIL_FROM" in result.stderr and "not an email address" in result.stderr
    assert fakes[0].requests == []


def test_a_dry_run_warns_about_what_the_live_send_would_refuse(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.delenv("SENDGRID_API_HOST")
    (tmp_path / ".env").write_text(f"SENDGRID_API_HOST={fakes[0].url}\n", encoding="utf-8")
    result = run("preview", EXAMPLE, "--contacts", tmp_path / "contacts.csv", "--channel", "email", *LONG_SMS)
    assert result.exit_code == 0, result.output
    assert "SENDGRID_API_HOST comes from the env file" in result.stdout and "--trust-env-file" in result.stdout


@pytest.mark.parametrize("value", ["0", "nan", "soon", "1e9"])
def test_a_provider_timeout_that_is_not_a_sane_number_of_seconds_stops_the_send(
    fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str  # noqa: ANN001
) -> None:
    monkeypatch.setenv("BROADCAST_PROVIDER_TIMEOUT", value)
    result = send(tmp_path, "--channel", "sms")
    assert result.exit_code == 2, result.output
    assert "BROADCAST_PROVIDER_TIMEOUT" in result.stderr and "Traceback" not in result.output
    assert [len(f.requests) for f in fakes] == [0, 0, 0]
    assert not (tmp_path / "state").exists()


def test_the_provider_timeout_sets_the_sms_adapters_request_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from broadcast.channels.twilio import SmsSettings, TwilioChannel
    from broadcast.config import Secret

    monkeypatch.setenv("BROADCAST_PROVIDER_TIMEOUT", "7.5")
    settings = SmsSettings(Secret("AC" + "0" * 32), Secret("t" * 32), "+15005550006", None, None, None)
    assert TwilioChannel(settings).timeout == 7.5
    assert TwilioChannel(settings, timeout=2.0).timeout == 2.0
