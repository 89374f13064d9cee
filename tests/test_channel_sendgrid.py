"""The SendGrid email adapter, driven through the real sendgrid SDK against the local SendGrid fake."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.channels.sendgrid import ANSWER_LOST, SANDBOX_REASON, EmailSettings, SendGridChannel
from broadcast.cli import main
from broadcast.config import Secret
from broadcast.errors import ChannelError
from broadcast.message import Message, Receipt, Rendering
from broadcast.send import RetryPolicy, deliver
from tests.conftest import CONTACTS, EXAMPLE
from tests.fakes import Faults, SendGridFake, credentials
from tests.fakes.fixtures import use_fakes
from tests.fakes.server import RecordedRequest, Reply

SENDER = "alerts@lakeside-water.example"
NAMED = Rendering(
    "email",
    "en",
    subject="Boil your tap water, %%name%%",
    html="<p>Dear %%name:html%%,</p><p>Boil tap water for 1 minute.</p>",
    text="Dear %%name%%,\n\nBoil tap water for 1 minute.",
)
UNNAMED = Rendering(
    "email",
    "en",
    "noname",
    subject="Boil your tap water",
    html="<p>Hello,</p><p>Boil tap water for 1 minute.</p>",
    text="Hello,\n\nBoil tap water for 1 minute.",
)


def messages(count: int, *, name: str | None = "Ana <Novak> & \"Co\"", rendering: Rendering | None = None) -> list[Message]:
    rendering = rendering or (NAMED if name else UNNAMED)
    return [
        Message(
            notice_id="boil-water-2026-03",
            channel="email",
            version=f"v{rendering.variant}",
            recipient=f"person{i}@example.org",
            language=rendering.language,
            rendering=rendering,
            fields={"name": name} if name else {},
        )
        for i in range(count)
    ]


def channel(fake: SendGridFake, *, sandbox: bool = False, api_key: str | None = None, host: str | None = None,
            timeout: float = 5.0) -> SendGridChannel:
    settings = EmailSettings(
        api_key=Secret(api_key or fake.api_key),
        sender=SENDER,
        sender_name="Lakeside Water",
        host=host or fake.url,
        sandbox=sandbox,
    )
    return SendGridChannel(settings, timeout=timeout)


def statuses(receipts: list[Receipt]) -> list[str]:
    return [r.status for r in receipts]


def policy(attempts: int = 5) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, wait=False)


@pytest.fixture
def fake() -> Iterator[SendGridFake]:
    # "timeouts" hold the answer longer than the short client timeout the fault tests use
    with SendGridFake(faults=Faults(timeout_delay=1.0)) as server:
        yield server


# ----- what goes out ---------------------------------------------------------------------------


def test_one_request_carries_every_recipient_with_substitutions_and_custom_args(fake: SendGridFake) -> None:
    batch = messages(3)
    receipts = channel(fake).send(batch)

    assert fake.invalid == []
    assert len(fake.requests) == 1
    assert statuses(receipts) == ["sent"] * 3
    assert [r.message_id for r in receipts] == [m.id for m in batch]
    assert {r.provider_id for r in receipts} == {fake.deliveries[0].payload["message_id"]}
    assert [d.recipient for d in fake.deliveries] == [m.recipient for m in batch]
    for delivery, message in zip(fake.deliveries, batch):
        assert delivery.payload["substitutions"] == {
            "%%name%%": 'Ana <Novak> & "Co"',
            "%%name:html%%": "Ana &lt;Novak&gt; &amp; &quot;Co&quot;",
        }
        assert delivery.payload["custom_args"] == {"broadcast_notice": "boil-water-2026-03", "broadcast_message": message.id}
        assert delivery.payload["from"] == SENDER
    body = fake.requests[0].body
    assert body["from"] == {"email": SENDER, "name": "Lakeside Water"}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "custom_args" not in body and "mail_settings" not in body


def test_what_sendgrid_substitutes_is_what_personal_renders(fake: SendGridFake) -> None:
    """SendGrid replaces every tag in the subject and both contents; the result must match Message.personal()."""
    [message] = messages(1)
    channel(fake).send([message])
    body = fake.requests[0].body
    substitutions = body["personalizations"][0]["substitutions"]

    def substitute(text: str) -> str:
        for tag, value in substitutions.items():
            text = text.replace(tag, value)
        return text

    parts = {c["type"]: c["value"] for c in body["content"]}
    personal = message.personal()
    assert substitute(body["subject"]) == personal.subject
    assert substitute(parts["text/plain"]) == personal.text
    assert substitute(parts["text/html"]) == personal.html


def test_the_unnamed_variant_carries_no_substitutions(fake: SendGridFake) -> None:
    receipts = channel(fake).send(messages(2, name=None))
    assert statuses(receipts) == ["sent", "sent"]
    assert all("substitutions" not in p for p in fake.requests[0].body["personalizations"])
    assert fake.invalid == []


def test_2500_recipients_go_as_three_requests(fake: SendGridFake) -> None:
    batch = messages(2500)
    adapter = channel(fake)
    outcome = deliver(batch, {"email": adapter}, policy=policy())

    assert outcome.counts["email"]["sent"] == 2500
    assert sorted(len(r.body["personalizations"]) for r in fake.requests) == [500, 1000, 1000]
    assert len(fake.deliveries) == 2500 and fake.duplicates() == {}
    assert fake.invalid == []


def test_one_call_never_mixes_renderings_or_exceeds_the_limit(fake: SendGridFake) -> None:
    batch = messages(2, name="Ana") + messages(1, name=None)
    receipts = channel(fake).send(batch)
    assert statuses(receipts) == ["sent"] * 3
    assert [len(r.body["personalizations"]) for r in fake.requests] == [2, 1]
    assert channel(fake).send([]) == [] and len(fake.requests) == 2


def test_a_name_over_the_substitution_limit_fails_alone(fake: SendGridFake) -> None:
    long_one = messages(1, name="Ž" * 3000)[0]
    others = messages(3, name="Ana")[1:]
    receipts = channel(fake).send([long_one, *others])
    assert statuses(receipts) == ["failed", "sent", "sent"]
    assert "too long for SendGrid" in receipts[0].reason and "10,000" in receipts[0].reason
    assert [d.recipient for d in fake.deliveries] == [m.recipient for m in others]


def test_sandbox_is_previewed_never_sent(fake: SendGridFake) -> None:
    receipts = channel(fake, sandbox=True).send(messages(3))
    assert statuses(receipts) == ["previewed"] * 3
    assert {r.reason for r in receipts} == {SANDBOX_REASON}
    assert fake.requests[0].body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert fake.deliveries == [] and len(fake.sandboxed) == 3
    assert fake.invalid == []


# ----- what comes back -------------------------------------------------------------------------


def test_a_refused_address_fails_alone_and_the_rest_go_once(fake: SendGridFake) -> None:
    batch = messages(5)
    fake.reject_emails = {batch[1].recipient, batch[4].recipient}
    receipts = channel(fake).send(batch)

    assert statuses(receipts) == ["sent", "failed", "sent", "sent", "failed"]
    assert receipts[1].reason == "SendGrid refused this recipient: Does not contain a valid address."
    assert fake.delivery_counts() == {batch[i].recipient: 1 for i in (0, 2, 3)}
    # the first request names person1, the second person4, the third carries the other three
    assert [len(r.body["personalizations"]) for r in fake.requests] == [5, 4, 3]
    assert fake.invalid == []


def test_a_400_naming_no_recipient_fails_the_whole_batch(fake: SendGridFake) -> None:
    fake.script([400])
    receipts = channel(fake).send(messages(3))
    assert statuses(receipts) == ["failed"] * 3
    assert receipts[0].reason.startswith("SendGrid refused this email (400): Bad Request.")
    assert len(fake.requests) == 1 and fake.deliveries == []


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_stops_the_channel(fake: SendGridFake, status: int) -> None:
    adapter = channel(fake, api_key="SG.wrong-key.0123456789") if status == 401 else channel(fake)
    if status == 403:
        fake.script([403])
    with pytest.raises(ChannelError) as caught:
        adapter.send(messages(2))
    assert caught.value.message.startswith(f"SendGrid refused the API key ({status})")
    assert "SENDGRID_API_KEY" in caught.value.hint and "Mail Send" in caught.value.hint
    assert "SG.wrong-key" not in str(caught.value) and fake.api_key not in str(caught.value)


class _SenderRefusingFake(SendGridFake):
    """SendGrid's answer naming the from field; the fake's scripted errors carry no field."""

    status = 403

    def route(self, request: RecordedRequest) -> Reply:
        return self.error_reply(self.status, "The from address does not match a verified Sender Identity.", "from")


@pytest.mark.parametrize("status", [400, 403])
def test_a_refused_sender_stops_the_channel_with_its_own_hint(status: int) -> None:
    with _SenderRefusingFake() as server:
        server.status = status
        with pytest.raises(ChannelError) as caught:
            channel(server).send(messages(1))
    assert SENDER in caught.value.message and "verified Sender Identity" in caught.value.message
    assert "BROADCAST_EMAIL_FROM" in caught.value.hint


@pytest.mark.parametrize("host", ["api.sendgrid.com", "fake"])
def test_a_wrong_host_stops_the_channel(fake: SendGridFake, host: str) -> None:
    if host == "fake":
        fake.script([404])
    with pytest.raises(ChannelError) as caught:
        channel(fake, host=None if host == "fake" else host).send(messages(1))
    assert "SENDGRID_API_HOST" in caught.value.hint


def test_a_refused_key_through_deliver_fails_the_channel_and_records_why(fake: SendGridFake) -> None:
    adapter = channel(fake, api_key="SG.wrong-key.0123456789")
    received: list[Receipt] = []
    outcome = deliver(messages(3), {"email": adapter}, policy=policy(), on_receipts=received.extend)
    assert len(received) == 3 and all("SendGrid refused the API key" in r.reason for r in received)
    assert fake.deliveries == [] and len(fake.requests) == 1
    assert "SendGrid refused the API key" in outcome.stopped["email"]


def test_a_413_halves_the_batch(fake: SendGridFake) -> None:
    fake.script([413])
    receipts = channel(fake).send(messages(5))
    assert statuses(receipts) == ["sent"] * 5
    assert [len(r.body["personalizations"]) for r in fake.requests] == [5, 2, 3]
    assert fake.duplicates() == {} and len(fake.deliveries) == 5


def test_a_413_for_one_recipient_fails_it(fake: SendGridFake) -> None:
    fake.script([413])
    [receipt] = channel(fake).send(messages(1))
    assert receipt.status == "failed" and "too large" in receipt.reason


def test_429_asks_for_a_retry_after_the_reset(fake: SendGridFake) -> None:
    adapter = channel(fake)
    fake.script([(429, {"X-RateLimit-Reset": str(int(time.time()) + 30)}), (429, {"Retry-After": "7"}), 429])
    by_reset = adapter.send(messages(2))
    assert statuses(by_reset) == ["retry", "retry"]
    assert 28 <= by_reset[0].retry_after <= 30
    assert adapter.send(messages(1))[0].retry_after == 7
    # the fake's own 429 carries Retry-After and X-RateLimit-Reset of 1 s
    assert 0 <= adapter.send(messages(1))[0].retry_after <= 1
    assert fake.deliveries == []


def test_a_429_burst_then_success_delivers_each_recipient_once(fake: SendGridFake) -> None:
    fake.script([429, 429, 429])
    batch = messages(4)
    outcome = deliver(batch, {"email": channel(fake)}, policy=policy(attempts=5))
    assert outcome.counts["email"]["sent"] == 4
    assert len(fake.requests) == 4
    assert fake.delivery_counts() == {m.recipient: 1 for m in batch}


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_retried(fake: SendGridFake, status: int) -> None:
    fake.script([status])
    [receipt] = channel(fake).send(messages(1))
    assert receipt.status == "retry" and f"({status})" in receipt.reason
    fake.reset()
    fake.script([status])
    batch = messages(3)
    outcome = deliver(batch, {"email": channel(fake)}, policy=policy())
    assert outcome.counts["email"]["sent"] == 3
    assert fake.delivery_counts() == {m.recipient: 1 for m in batch}


# ----- the network -----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "host",
    [pytest.param(f"http://127.0.0.1:{_closed_port()}", id="connection-refused"), pytest.param("http://no-such-host.invalid", id="dns")],
)
def test_a_request_that_never_left_is_retried(fake: SendGridFake, host: str) -> None:
    receipts = channel(fake, host=host).send(messages(2))
    assert statuses(receipts) == ["retry", "retry"]
    assert receipts[0].reason.startswith(f"could not reach SendGrid at {host}")


@pytest.mark.skipif(sys.platform != "linux", reason="a full listen backlog drops new connections only on Linux")
def test_a_connect_timeout_is_retried(fake: SendGridFake) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        waiting = []
        for _ in range(4):  # fill the backlog so the next connect hangs in SYN
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            waiting.append(client)
        try:
            [receipt] = channel(fake, host=f"http://127.0.0.1:{port}", timeout=0.3).send(messages(1))
        finally:
            for client in waiting:
                client.close()
    assert receipt.status == "retry" and "timed out" in receipt.reason


@pytest.mark.parametrize("fault", ["drop_before", "timeout_before", "drop_after", "timeout_after"])
def test_a_lost_answer_is_unknown_and_never_sent_twice(fake: SendGridFake, fault: str) -> None:
    fake.script([fault])
    batch = messages(3)
    received: list[Receipt] = []
    outcome = deliver(batch, {"email": channel(fake, timeout=0.3)}, policy=policy(), on_receipts=received.extend)

    assert outcome.counts["email"]["unknown"] == 3
    assert {r.reason for r in received} == {ANSWER_LOST}
    assert len(fake.requests) == 1
    expected = 1 if fault.endswith("after") else 0
    assert fake.delivery_counts() == ({m.recipient: expected for m in batch} if expected else {})


def test_random_faults_never_deliver_twice_and_sent_means_delivered(fake: SendGridFake) -> None:
    fake.faults = Faults(seed=1, error_rate=0.2, rate_limit_rate=0.1, burst=2, drop_before_rate=0.1, drop_after_rate=0.1)
    batch = [m for i in range(12) for m in messages(10, name=f"Name {i}", rendering=Rendering("email", f"l{i}", subject="s", html="<p>h</p>", text="t"))]
    batch = [Message("n", m.channel, m.version, f"{m.language}.{m.recipient}", m.language, m.rendering, m.fields) for m in batch]
    received: list[Receipt] = []
    deliver(batch, {"email": channel(fake)}, policy=policy(attempts=8), on_receipts=received.extend)

    counts = fake.delivery_counts()
    assert fake.duplicates() == {}
    assert len(received) == len(batch)
    for receipt in received:
        if receipt.status == "sent":
            assert counts[receipt.recipient] == 1
        elif receipt.status != "unknown":
            assert counts[receipt.recipient] == 0
    assert {"429", "503", "drop_before", "drop_after"} <= set(fake.faults_injected)


# ----- secrets and the command line ------------------------------------------------------------


def _env(monkeypatch: pytest.MonkeyPatch, fake: SendGridFake) -> None:
    use_fakes(monkeypatch, sendgrid=fake)
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", SENDER)


def _send(*extra: str) -> Any:
    args = [*extra, "send", str(EXAMPLE), "--contacts", str(CONTACTS), "--channel", "email", "--yes", "--json"]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_no_receipt_or_error_shows_the_key(fake: SendGridFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", fake.api_key)
    adapter = channel(fake)
    fake.script([400, 429, 500, "drop_after"])
    fake.reject_emails = {"person0@example.org"}
    shown = [repr(adapter), str(vars(adapter))]
    for _ in range(5):
        shown += [repr(r) for r in adapter.send(messages(2))]
    fake.script([401])
    with pytest.raises(ChannelError) as caught:
        adapter.send(messages(1))
    shown.append(str(caught.value))
    assert all(credentials.SENDGRID_API_KEY not in text for text in shown)


def test_the_cli_sends_email_and_counts_what_sendgrid_took(fake: SendGridFake, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, fake)
    result = _send()
    assert result.exit_code == 0, result.output
    email = json.loads(result.stdout)["channels"]["email"]
    assert email["sent"] == len(fake.deliveries) == email["planned"] > 0
    assert email["failed"] == email["unknown"] == 0
    assert fake.duplicates() == {} and fake.invalid == []
    # one request per language and variant, every one validated by SendGrid's own OpenAPI document
    assert len(fake.requests) == len({(d.payload["message_id"]) for d in fake.deliveries})


def test_the_cli_sandbox_previews_and_sends_nothing(fake: SendGridFake, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, fake)
    result = CliRunner().invoke(
        main, ["send", str(EXAMPLE), "--contacts", str(CONTACTS), "--channel", "email", "--yes", "--json", "--sandbox"],
        catch_exceptions=False,
    )
    email = json.loads(result.stdout)["channels"]["email"]
    assert email["previewed"] == len(fake.sandboxed) == email["planned"] and email["sent"] == 0
    assert fake.deliveries == [] and fake.invalid == []


def test_verbose_output_never_shows_the_key(fake: SendGridFake, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, fake)
    fake.reject_emails = {"ana.novak@zascita.example"}
    result = _send("--verbose")
    assert result.exit_code == 1  # one address refused
    assert "DEBUG broadcast.send: email" in result.output  # our debug log ran; the SDK's (with payloads) does not
    assert "Authorization" not in result.output
    assert credentials.SENDGRID_API_KEY not in result.output
    email = json.loads(result.stdout)["channels"]["email"]
    assert email["failed"] == 1 and email["sent"] == len(fake.deliveries)


def test_a_wrong_key_on_the_cli_stops_email_without_showing_it(fake: SendGridFake, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, fake)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.someone-elses-secret-key.0123456789")
    result = _send("--verbose")
    assert result.exit_code == 1
    assert "SG.someone-elses-secret-key" not in result.output
    data = json.loads(result.stdout)
    assert "SendGrid refused the API key (401)" in data["stopped"]["email"]
    assert fake.deliveries == []
