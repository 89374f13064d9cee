"""The one contract every channel keeps, the outbox included: one receipt per message, in order, honestly filled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from broadcast.channels import REGISTRY, live_channel, names
from broadcast.channels.base import Channel
from broadcast.channels.outbox import Outbox, OutboxChannel
from broadcast.config import channel_settings
from broadcast.contacts import read_contacts
from broadcast.message import Message, Status
from broadcast.notice import load_notice
from broadcast.plan import build_plan

CHANNELS = names()
from broadcast.render import Templates, render_notice
from tests.conftest import CONTACTS, EXAMPLE
from tests.fakes import credentials
from tests.fakes.fixtures import use_fakes

STATUSES = set(get_args(Status))
VOICE_CONTACTS = Path(__file__).parent / "data" / "contacts" / "voice.csv"


def planned(channel: str) -> list[Message]:
    renders = render_notice(load_notice(EXAMPLE), Templates())
    # a channel contacts must ask for (voice) is planned from a file where some do
    contacts = VOICE_CONTACTS if REGISTRY[channel].opt_in else CONTACTS
    plan = build_plan(renders, read_contacts([contacts]), [channel])
    return list(plan.messages())


@pytest.fixture(params=["outbox", *CHANNELS])
def channel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, Channel]]:
    kind = request.param
    if kind == "outbox":
        yield "email", OutboxChannel("email", Outbox(tmp_path / "outbox"))
        return
    fake_fixture = {"email": "sendgrid_fake", "sms": "twilio_fake", "social": "x_fake", "mastodon": "mastodon_fake",
                    "bluesky": "bluesky_fake", "team": "team_fake", "voice": "twilio_fake"}.get(kind)
    fake = request.getfixturevalue(fake_fixture) if fake_fixture else None
    use_fakes(monkeypatch, **({{"email": "sendgrid", "sms": "twilio", "social": "x", "mastodon": "mastodon", "bluesky": "bluesky", "team": "team", "voice": "twilio"}[kind]: fake} if fake else {}))
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
    settings = channel_settings([REGISTRY[kind]], web_dir=tmp_path / "web")
    yield kind, live_channel(kind, settings[kind])


def test_class_limits_are_declared(channel: tuple[str, Channel]) -> None:
    name, adapter = channel
    assert adapter.name == name
    assert adapter.max_batch >= 1 and adapter.max_concurrency >= 1
    # the dry-run's outbox is the one channel that talks to no network
    assert type(adapter).live is (not isinstance(adapter, OutboxChannel))


def test_one_receipt_per_message_in_order(channel: tuple[str, Channel]) -> None:
    name, adapter = channel
    messages = planned(name)
    assert messages
    batch = messages[: adapter.max_batch]
    # a batch shares one rendering, as send.batches() builds them
    batch = [m for m in batch if (m.language, m.rendering.variant) == (batch[0].language, batch[0].rendering.variant)]
    with adapter:
        receipts = adapter.send(batch)
        assert adapter.send([]) == []
    assert [r.message_id for r in receipts] == [m.id for m in batch]
    assert all(r.channel == name and r.recipient == m.recipient for r, m in zip(receipts, batch))
    assert all(r.status in STATUSES for r in receipts)
    for receipt in receipts:
        if receipt.status == "sent":
            assert receipt.provider_id
        if receipt.status in ("failed", "unknown", "retry", "skipped"):
            assert receipt.reason


def test_nothing_about_a_channel_prints_a_secret(channel: tuple[str, Channel]) -> None:
    _, adapter = channel
    shown = repr(adapter) + str(vars(adapter)) if hasattr(adapter, "__dict__") else repr(adapter)
    for secret in credentials.SECRETS:
        assert secret not in shown


def test_after_ctrl_c_no_request_starts_without_a_rate_gate(channel: tuple[str, Channel]) -> None:
    """Ctrl-C sets the channel's stop event; a request not yet started must not start, gate or no gate."""
    import threading

    from broadcast.message import INTERRUPTED

    name, adapter = channel
    if not type(adapter).live or name == "web":
        pytest.skip("writes files, makes no provider requests")
    messages = planned(name)[:1]
    adapter.gate = None
    adapter.stop = threading.Event()
    adapter.stop.set()
    with adapter:
        receipts = adapter.send(messages)
    assert [r.status for r in receipts] == ["not_started"] and receipts[0].reason == INTERRUPTED


def test_reconcile_answers_each_lost_message_or_says_it_cannot_look(channel: tuple[str, Channel]) -> None:
    """None: the provider offers no look-up. Otherwise one receipt per message, in order: sent, retry (provably never
    arrived) or unknown, each but sent with its reason."""
    from datetime import datetime, timedelta, timezone

    name, adapter = channel
    messages = planned(name)[:2]
    tried = datetime.now(timezone.utc) - timedelta(minutes=5)  # long enough ago for a look-up to be believed
    with adapter:
        answer = adapter.reconcile([(m, tried) for m in messages])
    if type(adapter).reconcile is Channel.reconcile:
        assert answer is None
        return
    assert answer is not None and [r.message_id for r in answer] == [m.id for m in messages]
    assert all(r.status in ("sent", "retry", "unknown") for r in answer)
    assert all(r.reason for r in answer if r.status != "sent")


def test_withdraw_takes_down_what_was_published_or_says_there_is_nothing(channel: tuple[str, Channel]) -> None:
    """None: a message once sent stays sent (email, SMS). Otherwise one receipt per message, in order: sent (taken
    down), skipped or failed, each but sent with its reason; and what was published is gone."""
    from dataclasses import replace

    name, adapter = channel
    messages = planned(name)[:1]
    with adapter:
        if not type(adapter).personal and type(adapter).live:
            [published] = adapter.send(messages)
            assert published.status == "sent", published.reason
            messages = [replace(m, posted=published.thread) for m in messages]
        answer = adapter.withdraw(messages, "cancelled")
    if type(adapter).withdraw is Channel.withdraw:
        assert answer is None
        return
    assert answer is not None and [r.message_id for r in answer] == [m.id for m in messages]
    assert [r.status for r in answer] == ["sent"] and all(r.reason for r in answer)


CREDENTIAL = {"email": "SENDGRID_API_KEY", "sms": "TWILIO_AUTH_TOKEN", "social": "X_ACCESS_TOKEN_SECRET", "voice": "TWILIO_AUTH_TOKEN"}


@pytest.mark.parametrize("kind", sorted(CREDENTIAL))
def test_a_refused_credential_stops_the_channel_with_a_channel_error(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from broadcast.errors import ChannelError

    fake = request.getfixturevalue({"email": "sendgrid_fake", "sms": "twilio_fake", "social": "x_fake", "voice": "twilio_fake"}[kind])
    use_fakes(monkeypatch, **{{"email": "sendgrid", "sms": "twilio", "social": "x", "mastodon": "mastodon", "bluesky": "bluesky", "voice": "twilio"}[kind]: fake})
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
    monkeypatch.setenv(CREDENTIAL[kind], "wrong-" + "x" * 30)
    adapter = live_channel(kind, channel_settings([REGISTRY[kind]], web_dir=tmp_path / "web")[kind])
    with adapter, pytest.raises(ChannelError) as refused:
        adapter.send(planned(kind)[:1])
    assert refused.value.hint and "wrong-" not in str(refused.value)
