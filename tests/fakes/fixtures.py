"""Pytest fixtures that start the provider fakes and point broadcast's environment at them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest

from tests.fakes import credentials
from tests.fakes.bluesky import BlueskyFake
from tests.fakes.mastodon import MastodonFake
from tests.fakes.sendgrid import SendGridFake
from tests.fakes.team import SlackWebhookFake, point_apprise_at, shared_receiver
from tests.fakes.twilio import TwilioFake
from tests.fakes.x import XFake


class Fakes(NamedTuple):
    """All three fakes, as the ``fake_providers`` fixture hands them out."""

    sendgrid: SendGridFake
    twilio: TwilioFake
    x: XFake


def use_fakes(
    monkeypatch: pytest.MonkeyPatch,
    *,
    sendgrid: SendGridFake | None = None,
    twilio: TwilioFake | None = None,
    x: XFake | None = None,
    mastodon: MastodonFake | None = None,
    bluesky: BlueskyFake | None = None,
    team: SlackWebhookFake | None = None,
) -> None:
    """Set the environment broadcast reads so it talks to these fakes with the fake credentials.

    Proxies are bypassed for 127.0.0.1 because all three SDKs honour proxy variables.
    A provider left out keeps whatever the environment had.
    """
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    if sendgrid is not None:
        monkeypatch.setenv("SENDGRID_API_HOST", sendgrid.url)
        monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
    if twilio is not None:
        monkeypatch.setenv("TWILIO_API_BASE_URL", twilio.url)
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", twilio.account_sid)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", twilio.auth_token)
        monkeypatch.setenv("TWILIO_FROM", credentials.TWILIO_FROM)
    if team is None and (sendgrid or twilio or x):
        # every registered channel is on by default: a live send needs team chat URLs too, so tests that do not
        # look at team chat post to one receiver kept for the whole test process
        team = shared_receiver()
    if team is not None:
        point_apprise_at(monkeypatch, team)
        monkeypatch.setenv("BROADCAST_TEAM_URLS", team.slack_url("staff"))
    if x is not None:
        monkeypatch.setenv("X_API_BASE_URL", x.url)
        monkeypatch.setenv("X_CONSUMER_KEY", x.consumer_key)
        monkeypatch.setenv("X_CONSUMER_SECRET", x.consumer_secret)
        monkeypatch.setenv("X_ACCESS_TOKEN", x.access_token)
        monkeypatch.setenv("X_ACCESS_TOKEN_SECRET", x.access_token_secret)
    if mastodon is not None:
        monkeypatch.setenv("MASTODON_API_BASE_URL", mastodon.url)
        monkeypatch.setenv("MASTODON_ACCESS_TOKEN", mastodon.access_token)
    if bluesky is not None:
        monkeypatch.setenv("BLUESKY_PDS_URL", bluesky.url)
        monkeypatch.setenv("BLUESKY_HANDLE", bluesky.handle)
        monkeypatch.setenv("BLUESKY_APP_PASSWORD", bluesky.app_password)


@pytest.fixture
def sendgrid_fake() -> Iterator[SendGridFake]:
    with SendGridFake() as fake:
        yield fake


@pytest.fixture
def twilio_fake() -> Iterator[TwilioFake]:
    with TwilioFake() as fake:
        yield fake


@pytest.fixture
def team_fake() -> Iterator[SlackWebhookFake]:
    with SlackWebhookFake() as fake:
        yield fake


@pytest.fixture
def x_fake() -> Iterator[XFake]:
    with XFake() as fake:
        yield fake


@pytest.fixture
def mastodon_fake() -> Iterator[MastodonFake]:
    with MastodonFake() as fake:
        yield fake


@pytest.fixture
def bluesky_fake() -> Iterator[BlueskyFake]:
    with BlueskyFake() as fake:
        yield fake


@pytest.fixture
def fake_providers(
    monkeypatch: pytest.MonkeyPatch, sendgrid_fake: SendGridFake, twilio_fake: TwilioFake, x_fake: XFake
) -> Fakes:
    """All three fakes running, with the environment pointing at them."""
    use_fakes(monkeypatch, sendgrid=sendgrid_fake, twilio=twilio_fake, x=x_fake)
    return Fakes(sendgrid_fake, twilio_fake, x_fake)


@pytest.fixture
def live_send(monkeypatch: pytest.MonkeyPatch, fake_providers: Fakes, tmp_path) -> Fakes:  # noqa: ANN001
    """The fakes, and what a live send needs besides credentials: a sender, and a ledger and a web folder of the
    test's own."""
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("BROADCAST_WEB_DIR", str(tmp_path / "web"))
    return fake_providers
