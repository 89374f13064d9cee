"""Retries keep their promise (stamina's model): a deadline per message, Retry-After honoured, Ctrl-C stops waits."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from broadcast.channels.sendgrid import EmailSettings, SendGridChannel
from broadcast.channels.twilio import SmsSettings, TwilioChannel
from broadcast.config import Secret
from broadcast.message import Message, Rendering
from broadcast.send import RetryPolicy, deliver
from tests.fakes import SendGridFake, TwilioFake, credentials


class FakeClock:
    """Time that moves only when asked to, or when a retry waits; every wait is recorded."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        self.waits.append(seconds)
        self.t += seconds
        return not stop.is_set()


def sms(n: int) -> Message:
    rendering = Rendering("sms", "en", text="Boil water before drinking.")
    return Message("notice-1", "sms", "v1", f"+3864055501{n}", "en", rendering)


def email(n: int) -> Message:
    rendering = Rendering("email", "en", subject="Boil water", html="<p>Boil water.</p>", text="Boil water.")
    return Message("notice-1", "email", "v1", f"person{n}@example.org", "en", rendering)


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake() as fake:
        yield fake


@pytest.fixture
def sendgrid() -> Iterator[SendGridFake]:
    with SendGridFake() as fake:
        yield fake


def twilio_channel(fake: TwilioFake) -> TwilioChannel:
    settings = SmsSettings(
        account_sid=Secret(credentials.TWILIO_ACCOUNT_SID), auth_token=Secret(credentials.TWILIO_AUTH_TOKEN),
        sender=credentials.TWILIO_FROM, messaging_service_sid=None, status_callback=None, base_url=fake.url,
    )
    return TwilioChannel(settings, timeout=5.0)


def sendgrid_channel(fake: SendGridFake) -> SendGridChannel:
    settings = EmailSettings(
        api_key=Secret(fake.api_key), sender="alerts@lakeside-water.example", sender_name=None, host=fake.url, sandbox=False
    )
    return SendGridChannel(settings, timeout=5.0)


def test_a_429_at_minute_16_of_a_long_send_is_retried(twilio: TwilioFake) -> None:
    clock = FakeClock()

    def sixteen_minutes_in() -> Iterator[Message]:
        clock.t = 16 * 60.0  # earlier messages took the run to minute 16; this one has not been tried yet
        yield sms(1)

    twilio.script([429])
    policy = RetryPolicy(attempts=3, deadline=900.0, wait=True, clock=clock)
    outcome = deliver({"sms": sixteen_minutes_in()}, {"sms": twilio_channel(twilio)}, policy=policy)
    assert outcome.counts["sms"]["sent"] == 1, outcome.failures
    assert len(twilio.requests) == 2 and len(clock.waits) == 1


def test_retry_after_120_waits_120_seconds(sendgrid: SendGridFake) -> None:
    clock = FakeClock()
    sendgrid.script([(429, {"Retry-After": "120"})])
    policy = RetryPolicy(attempts=3, wait=True, clock=clock)
    outcome = deliver([email(1)], {"email": sendgrid_channel(sendgrid)}, policy=policy)
    assert outcome.counts["email"]["sent"] == 1, outcome.failures
    assert len(clock.waits) == 1 and clock.waits[0] >= 120.0


def test_a_retry_after_past_the_messages_deadline_is_left_for_the_next_run_without_waiting(sendgrid: SendGridFake) -> None:
    clock = FakeClock()
    sendgrid.script([(429, {"Retry-After": "120"})])
    policy = RetryPolicy(attempts=3, deadline=100.0, wait=True, clock=clock)
    outcome = deliver([email(1)], {"email": sendgrid_channel(sendgrid)}, policy=policy)
    [receipt] = outcome.failures
    assert receipt.status == "retry" and receipt.reason.startswith("deadline reached")
    assert clock.waits == [] and len(sendgrid.requests) == 1


def test_ctrl_c_during_a_backoff_sends_nothing_more_without_a_rate_gate(twilio: TwilioFake) -> None:
    twilio.script([503] * 10)
    # a real clock and a long backoff: only Ctrl-C can end this wait early
    policy = RetryPolicy(attempts=5, base_delay=30.0, max_delay=30.0, wait=True)

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 20
        while not twilio.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the sender is now in its backoff
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    started = time.monotonic()
    presser.start()
    outcome = deliver([sms(1)], {"sms": twilio_channel(twilio)}, policy=policy)
    presser.join()
    assert time.monotonic() - started < 10
    assert outcome.interrupted
    assert len(twilio.requests) == 1
    assert outcome.failures == [] and outcome.counts["sms"]["not_started"] == 1
    assert outcome.not_started["sms"] == 1
