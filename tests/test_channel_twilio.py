"""The SMS channel against the local Twilio fake: requests, refusals, lost answers, retries, secrets, the CLI."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.channels.twilio import SmsSettings, TwilioChannel
from broadcast.cli import main
from broadcast.config import Secret
from broadcast.errors import ChannelError
from broadcast.message import Message, Receipt, Rendering
from broadcast.send import RetryPolicy, deliver
from tests.conftest import CONTACTS, EXAMPLE
from tests.fakes import Faults, RecordedRequest, TwilioFake, credentials
from tests.fakes.fixtures import use_fakes
from tests.fakes.server import Reply

# Short enough to keep the file fast, long enough for a loaded machine to answer.
CLIENT_TIMEOUT = 0.5
HELD = Faults(timeout_delay=1.5)  # a "timeout" holds the answer well past CLIENT_TIMEOUT
TO = "+38640555010"
SERVICE = "MG" + "0123456789abcdef" * 2
NO_WAIT = RetryPolicy(attempts=4, wait=False)


class CodedTwilioFake(TwilioFake):
    """The Twilio fake plus refusals it has no switch for: ``refusals[To] = (HTTP status, Twilio code)``."""

    def __init__(self, **options: Any) -> None:
        self.refusals: dict[str, tuple[int, int]] = {}
        super().__init__(**options)

    def route(self, request: RecordedRequest) -> Reply:
        form = request.body if request.method == "POST" and isinstance(request.body, dict) else {}
        if form.get("To") in self.refusals:
            status, code = self.refusals[form["To"]]
            return self.error_reply(status, f"Refused by Twilio with {code}", code)
        return super().route(request)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[CodedTwilioFake]:
    with CodedTwilioFake(faults=HELD) as twilio:
        # the environment holds the credentials too, so mask() knows what to hide
        use_fakes(monkeypatch, twilio=twilio)
        yield twilio


def settings(base_url: str, **changes: Any) -> SmsSettings:
    """What config.py builds from the environment use_fakes() sets."""
    base = SmsSettings(
        account_sid=Secret(credentials.TWILIO_ACCOUNT_SID),
        auth_token=Secret(credentials.TWILIO_AUTH_TOKEN),
        sender=credentials.TWILIO_FROM,
        messaging_service_sid=None,
        status_callback=None,
        base_url=base_url,
    )
    return dataclasses.replace(base, **changes)


def channel(fake: TwilioFake, **changes: Any) -> TwilioChannel:
    return TwilioChannel(settings(fake.url, **changes), timeout=CLIENT_TIMEOUT)


def sms(recipient: str = TO, name: str = "Ana", text: str = "Boil water before drinking, %%name%%.") -> Message:
    rendering = Rendering("sms", "en", text=text)
    return Message("notice-1", "sms", "v1", recipient, "en", rendering, fields={"name": name})


def send_one(adapter: TwilioChannel, message: Message | None = None) -> Receipt:
    with adapter:
        [receipt] = adapter.send([message or sms()])
    return receipt


def form(fake: TwilioFake) -> dict[str, str]:
    [create] = [r for r in fake.requests if r.method == "POST"]
    return create.body


# ----- what is sent -----


def test_sends_the_personal_text_from_the_sender(fake: CodedTwilioFake) -> None:
    receipt = send_one(channel(fake))

    [(recipient, payload)] = fake.deliveries
    assert recipient == TO
    assert payload["body"] == "Boil water before drinking, Ana."
    assert payload["from"] == credentials.TWILIO_FROM
    assert payload["status_callback"] is None
    assert (receipt.status, receipt.provider_id) == ("sent", payload["sid"])
    assert (receipt.message_id, receipt.channel, receipt.recipient) == (sms().id, "sms", TO)
    assert "MessagingServiceSid" not in form(fake)
    assert fake.invalid == []


def test_messaging_service_is_sent_instead_of_from(fake: CodedTwilioFake) -> None:
    receipt = send_one(channel(fake, sender=None, messaging_service_sid=SERVICE))

    assert receipt.status == "sent"
    [(_, payload)] = fake.deliveries
    assert (payload["messaging_service_sid"], payload["from"]) == (SERVICE, None)
    assert "From" not in form(fake)
    assert fake.invalid == []


def test_status_callback_is_sent_when_set(fake: CodedTwilioFake) -> None:
    send_one(channel(fake, status_callback="https://status.example.org/twilio"))

    assert fake.deliveries[0].payload["status_callback"] == "https://status.example.org/twilio"
    assert fake.invalid == []


def test_many_threads_each_message_once(fake: CodedTwilioFake) -> None:
    fake.latency = 0.02  # so requests overlap
    messages = [sms(f"+3864055{n:04d}") for n in range(40)]

    outcome = deliver(messages, {"sms": channel(fake)}, policy=NO_WAIT)

    assert outcome.counts["sms"]["sent"] == 40
    assert len(fake.deliveries) == 40 and fake.duplicates() == {}
    assert 1 < fake.max_concurrency <= TwilioChannel.max_concurrency
    assert fake.invalid == []


def test_128_requests_in_flight_each_message_once(fake: CodedTwilioFake) -> None:
    """--concurrency sms=128 is taken, and 128 creates are in flight at once on the adapter's event loop."""
    from broadcast.channels import names
    from broadcast.rate import gates, parse_concurrency

    fake.latency = 0.3  # so every sender's request overlaps the others'
    gate = gates({}, parse_concurrency(["sms=128"], channels=names()))["sms"]
    messages = [sms(f"+3864055{n:04d}") for n in range(256)]

    outcome = deliver(messages, {"sms": TwilioChannel(settings(fake.url), timeout=5, gate=gate)}, policy=NO_WAIT)

    assert outcome.counts["sms"] == {"sent": 256}
    assert len(fake.deliveries) == 256 and fake.duplicates() == {}
    # more than aiohttp's own default limit of 100 connections, never more than the cap
    assert 100 < fake.max_concurrency <= 128
    assert fake.invalid == []


# ----- refusals -----


@pytest.mark.parametrize(
    ("scripted", "reason", "suppress"),
    [
        ("invalid_numbers", "invalid phone number (Twilio 21211)", False),
        ("unsubscribed", "the recipient replied STOP (Twilio 21610); suppressed from now on", True),
        ("region_disabled", "sending to this region is not enabled on the Twilio account (21408)", False),
    ],
)
def test_recipient_refusals_fail_that_recipient(
    fake: CodedTwilioFake, scripted: str, reason: str, suppress: bool
) -> None:
    getattr(fake, scripted).add(TO)

    receipt = send_one(channel(fake))

    assert (receipt.status, receipt.reason, receipt.suppress) == ("failed", reason, suppress)
    assert fake.deliveries == [] and fake.invalid == []


@pytest.mark.parametrize(("code", "words"), [(21614, "not a mobile number"), (21612, "cannot route")])
def test_unreachable_numbers_fail_in_words(fake: CodedTwilioFake, code: int, words: str) -> None:
    fake.refusals[TO] = (400, code)

    receipt = send_one(channel(fake))

    assert receipt.status == "failed" and not receipt.suppress
    assert words in receipt.reason and str(code) in receipt.reason


def test_other_refusals_fail_with_twilios_message_and_code(fake: CodedTwilioFake) -> None:
    fake.refusals[TO] = (400, 30007)

    receipt = send_one(channel(fake))

    assert receipt.status == "failed"
    assert "30007" in receipt.reason and "Refused by Twilio with 30007" in receipt.reason
    assert fake.invalid == []


@pytest.mark.parametrize("answer", [429, 500, 503])
def test_throttling_and_server_errors_are_retried(fake: CodedTwilioFake, answer: int) -> None:
    fake.script([answer])

    receipt = send_one(channel(fake))

    assert receipt.status == "retry"
    assert receipt.retry_after is None  # Twilio's SDK exposes no Retry-After; send.py's backoff decides
    assert fake.deliveries == []


def test_20429_then_success_through_deliver(fake: CodedTwilioFake) -> None:
    fake.script([429, 429])
    messages = [sms("+38640555010"), sms("+254712555010"), sms("+442079460019")]

    outcome = deliver(messages, {"sms": channel(fake)}, policy=NO_WAIT)

    assert outcome.counts["sms"] == {"sent": 3}
    assert fake.faults_injected["429"] == 2
    assert sorted(fake.delivery_counts().values()) == [1, 1, 1]


# ----- the whole channel stops -----


def test_wrong_credentials_stop_the_channel(fake: CodedTwilioFake) -> None:
    with pytest.raises(ChannelError) as raised:
        send_one(channel(fake, auth_token=Secret("fake-twilio-wrong-token-000")))

    assert "20003" in raised.value.message
    assert "TWILIO_AUTH_TOKEN" in raised.value.hint and "TWILIO_ACCOUNT_SID" in raised.value.hint
    assert fake.deliveries == []


def test_wrong_credentials_fail_the_rest_through_deliver(fake: CodedTwilioFake) -> None:
    adapter = channel(fake, auth_token=Secret("fake-twilio-wrong-token-000"))

    outcome = deliver([sms("+38640555010"), sms("+38640555011")], {"sms": adapter}, policy=NO_WAIT)

    assert outcome.counts["sms"]["sent"] == 0 and sum(outcome.counts["sms"].values()) == 2
    assert "TWILIO_AUTH_TOKEN" in outcome.stopped["sms"]
    assert fake.deliveries == []


@pytest.mark.parametrize("code", [21606, 21659, 21212])
def test_unusable_from_number_stops_the_channel(fake: CodedTwilioFake, code: int) -> None:
    fake.refusals[TO] = (400, code)

    with pytest.raises(ChannelError) as raised:
        send_one(channel(fake))

    assert str(code) in raised.value.message and "TWILIO_FROM" in raised.value.message
    assert "TWILIO_FROM" in raised.value.hint


def test_unusable_messaging_service_stops_the_channel(fake: CodedTwilioFake) -> None:
    fake.refusals[TO] = (400, 21703)

    with pytest.raises(ChannelError) as raised:
        send_one(channel(fake, sender=None, messaging_service_sid=SERVICE))

    assert "TWILIO_MESSAGING_SERVICE_SID" in raised.value.hint


def test_unknown_address_stops_the_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without validation the fake answers an unknown path 404 as Twilio does.
    with TwilioFake(validate=False) as fake:
        use_fakes(monkeypatch, twilio=fake)
        with pytest.raises(ChannelError) as raised:
            send_one(TwilioChannel(settings(fake.url + "/wrong"), timeout=CLIENT_TIMEOUT))

    assert "404" in raised.value.message and "TWILIO_API_BASE_URL" in raised.value.hint
    assert credentials.TWILIO_ACCOUNT_SID not in str(raised.value)


# ----- lost answers -----


@pytest.mark.parametrize("fault", ["timeout_after", "drop_after"])
def test_answer_lost_after_accept_is_found_not_resent(fake: CodedTwilioFake, fault: str) -> None:
    fake.script([fault])

    receipt = send_one(channel(fake))

    [(_, payload)] = fake.deliveries
    assert (receipt.status, receipt.provider_id) == ("sent", payload["sid"])
    assert fake.faults_injected[fault] == 1
    assert [r.method for r in fake.requests] == ["POST", "GET"]
    assert fake.invalid == []


def test_answer_lost_with_a_messaging_service_is_found(fake: CodedTwilioFake) -> None:
    # Twilio picks the From number later, so the lookup filters by To alone
    fake.script(["drop_after"])

    receipt = send_one(channel(fake, sender=None, messaging_service_sid=SERVICE))

    assert (receipt.status, receipt.provider_id) == ("sent", fake.deliveries[0].payload["sid"])
    [lookup] = [r.query for r in fake.requests if r.method == "GET"]
    assert lookup["To"] == TO and "From" not in lookup
    assert fake.invalid == []


@pytest.mark.parametrize("fault", ["timeout_after", "drop_after"])
def test_answer_lost_after_accept_is_sent_once_through_deliver(fake: CodedTwilioFake, fault: str) -> None:
    fake.script([fault])

    outcome = deliver([sms()], {"sms": channel(fake)}, policy=NO_WAIT)

    assert outcome.counts["sms"] == {"sent": 1}
    assert fake.delivery_counts() == {TO: 1}


@pytest.mark.parametrize("fault", ["timeout_before", "drop_before"])
def test_request_lost_before_accept_is_retried_and_sent_once(fake: CodedTwilioFake, fault: str) -> None:
    fake.script([fault])

    first = send_one(channel(fake))
    assert first.status == "retry" and "sending it again is safe" in first.reason
    assert fake.deliveries == []

    fake.reset()
    fake.script([fault])
    outcome = deliver([sms()], {"sms": channel(fake)}, policy=NO_WAIT)
    assert outcome.counts["sms"] == {"sent": 1}
    assert fake.delivery_counts() == {TO: 1}
    assert fake.invalid == []


def test_lookup_ignores_other_texts_to_the_same_number(fake: CodedTwilioFake) -> None:
    send_one(channel(fake), sms(text="Yesterday's notice."))
    fake.script(["timeout_before"])

    receipt = send_one(channel(fake))

    assert receipt.status == "retry" and receipt.provider_id is None


@pytest.mark.parametrize("lookup", [500, "drop_before"])
def test_answer_lost_and_lookup_failing_is_unknown(fake: CodedTwilioFake, lookup: int | str) -> None:
    fake.script(["timeout_after", lookup])

    receipt = send_one(channel(fake))

    assert receipt.status == "unknown"
    assert receipt.reason == "answer lost and Twilio could not be asked; may have been sent"
    assert len(fake.deliveries) == 1


def test_connection_refused_is_retried() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = TwilioChannel(settings(f"http://127.0.0.1:{port}"), timeout=CLIENT_TIMEOUT)

    receipt = send_one(adapter)

    assert receipt.status == "retry" and "could not connect" in receipt.reason


# ----- secrets -----


def test_receipts_and_errors_carry_no_secrets(fake: CodedTwilioFake) -> None:
    fake.invalid_numbers.add("+38640555011")
    fake.refusals["+38640555012"] = (400, 21606)
    fake.script(["timeout_after", 500])
    adapter = channel(fake)
    texts = [repr(adapter), repr(adapter.settings)]
    with adapter:
        texts += [repr(adapter.send([sms(n)])) for n in ("+38640555010", "+38640555011", "+38640555013")]
        with pytest.raises(ChannelError) as raised:
            adapter.send([sms("+38640555012")])
    texts.append(str(raised.value))

    for text in texts:
        assert credentials.TWILIO_AUTH_TOKEN not in text
        assert credentials.TWILIO_ACCOUNT_SID not in text


# ----- the command line -----



def send_cli(*extra: str, options: tuple[str, ...] = ()):  # noqa: ANN201
    # the example's Swahili and Slovenian SMS are longer than the default 3 segments; these tests are not about length
    args = [*extra, "send", str(EXAMPLE), "--contacts", str(CONTACTS), "--channel", "sms", "--yes", "--json", "--force",
            *options]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_counts_equal_what_twilio_received(fake: CodedTwilioFake) -> None:
    # the example's one UK number is a London landline, which gets an SMS only when fixed lines are allowed
    result = send_cli(options=("--allow-number-types", "fixed_line"))

    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["channels"]["sms"]
    recipients = fake.delivery_counts()
    assert counts["sent"] == counts["planned"] == len(fake.deliveries) == len(recipients)
    for country in ("+386", "+254", "+44"):
        assert any(number.startswith(country) for number in recipients), country
    assert fake.duplicates() == {} and fake.invalid == []


def test_cli_verbose_output_has_no_secrets(fake: CodedTwilioFake, restore_logging: None) -> None:
    fake.unsubscribed.add("+38641555010")
    fake.script([500])

    result = send_cli("--verbose")

    assert result.exit_code == 1  # the STOP recipient failed
    counts = json.loads(result.stdout)["channels"]["sms"]
    assert counts["sent"] == len(fake.deliveries) and counts["failed"] == 1
    assert "DEBUG broadcast.send: sms" in result.stderr  # our debug log ran; the SDK's, with payloads, stays off
    assert credentials.TWILIO_AUTH_TOKEN not in result.output
    assert credentials.TWILIO_ACCOUNT_SID not in result.output


def test_cli_wrong_token_stops_sms_without_showing_it(
    fake: CodedTwilioFake, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    wrong = "fake-twilio-secret-wrong-token-9876"
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", wrong)

    result = send_cli("--verbose")

    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["channels"]["sms"]["sent"] == 0 and "TWILIO_AUTH_TOKEN" in data["stopped"]["sms"]
    assert fake.deliveries == []
    assert wrong not in result.output and credentials.TWILIO_ACCOUNT_SID not in result.output


@pytest.mark.parametrize("base_url", ["127.0.0.1:{port}", "ftp://127.0.0.1:{port}", "http://[::1"])
def test_a_base_url_requests_cannot_use_means_not_sent(fake: CodedTwilioFake, base_url: str) -> None:
    """No connection was made, so the SMS cannot have left: retry (then failed), never 'may have been sent'."""
    port = fake.url.rsplit(":", 1)[1]
    adapter = TwilioChannel(settings(base_url.format(port=port)), timeout=CLIENT_TIMEOUT)

    receipt = send_one(adapter)

    assert receipt.status == "retry" and "nothing was sent" in receipt.reason
    assert fake.requests == []


class SlowToRecordTwilioFake(TwilioFake):
    """Twilio under load: a create is queued ``delay`` seconds before it is recorded, while look-ups answer at once."""

    delay = 0.8  # past the client's 0.5 s timeout, and before the adapter looks again (2 timeouts after the attempt)

    def _service(self, request: RecordedRequest, verdict: Any) -> Reply:
        if request.method == "POST":
            import time

            time.sleep(self.delay)
        return super()._service(request, verdict)


def test_a_lost_answer_whose_message_lands_late_is_found_not_sent_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    with SlowToRecordTwilioFake() as slow:
        use_fakes(monkeypatch, twilio=slow)
        outcome = deliver([sms()], {"sms": channel(slow)}, policy=NO_WAIT)
        import time

        time.sleep(slow.delay + 0.5)  # a second create, had there been one, has landed by now
        assert [d.recipient for d in slow.deliveries] == [TO], "sent twice: absence right after the attempt was trusted"
        assert outcome.counts["sms"]["sent"] == 1
