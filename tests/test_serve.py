"""`broadcast serve`: signed Twilio and SendGrid webhooks recorded through results.record, refused when unsigned."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from broadcast.cli import main
from broadcast.config import Env
from broadcast.ledger import Ledger
from broadcast.serve import Webhooks, app
from tests.conftest import CONTACTS, EXAMPLE
from tests.fakes import credentials
from tests.fakes.fixtures import Fakes

NOTICE = "boil-water-2026-03"
PUBLIC = "https://alerts.lakeside-water.example/hooks"
#: the account's auth token: Twilio signs its webhooks with the token the send used
TOKEN = credentials.TWILIO_AUTH_TOKEN


@pytest.fixture(scope="module")
def sendgrid_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair as SendGrid's signed Event Webhook uses: the private half signs, the public half (base64 DER,
    as SendGrid's console shows it) goes in SENDGRID_WEBHOOK_PUBLIC_KEY."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


@pytest.fixture()
def sent(live_send: Fakes, monkeypatch: pytest.MonkeyPatch, sendgrid_keys, tmp_path: Path) -> Ledger:  # noqa: ANN001
    """The example sent on email and SMS against the fakes, with BROADCAST_PUBLIC_URL set; serve's secrets set."""
    monkeypatch.setenv("BROADCAST_PUBLIC_URL", PUBLIC)
    result = CliRunner().invoke(
        main, ["send", str(EXAMPLE), "--contacts", str(CONTACTS), "--channel", "sms,email", "--yes", "--json", "--force"]
    )
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", sendgrid_keys[1])
    ledger = Ledger(os.environ["BROADCAST_LEDGER"])
    yield ledger
    ledger.close()


@pytest.fixture()
def client(sent: Ledger) -> Iterator:
    from starlette.testclient import TestClient

    with TestClient(app(sent, Webhooks.from_env(Env()))) as test_client:
        yield test_client


def messages(ledger: Ledger, channel: str) -> list[tuple[str, str, str]]:
    """(message id, provider id, recipient) of the notice's messages on ``channel`` with no final state yet."""
    return [(m, p, r) for m, p, r, _ in ledger.unsettled(NOTICE, channel, 5)]


def state(ledger: Ledger, recipient: str) -> dict:
    return next(row for row in ledger.outcomes(NOTICE) if row["recipient"] == recipient)


def written(ledger: Ledger) -> dict[str, int]:
    """Rows in the tables serve writes to: what "nothing written" is checked against."""
    with ledger.engine.connect() as conn:
        counts = {}
        for table in ("events", "outcomes", "replies", "suppressions"):
            exists = sa.inspect(conn).has_table(table)
            counts[table] = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar() if exists else 0
        return counts


def twilio_post(client, path: str, form: dict[str, str], *, token: str = TOKEN, url: str | None = None,  # noqa: ANN001
                signature: str | None = None):  # noqa: ANN202
    """POST a form as Twilio does: signed over the public URL it called (PUBLIC + path) and the form."""
    signed = RequestValidator(token).compute_signature(url or PUBLIC + path, form)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature != "":
        headers["X-Twilio-Signature"] = signature or signed
    return client.post(path, content=urlencode(form), headers=headers)


def status_form(sid: str, to: str, status: str, code: str = "") -> dict[str, str]:
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status, "To": to,
            "From": "+15005550006", "AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01"}
    if code:
        form["ErrorCode"] = code
    return form


def sendgrid_post(client, events: list[dict], key: ec.EllipticCurvePrivateKey, *, body: str | None = None,  # noqa: ANN001
                  timestamp: str | None = None, headers: dict[str, str] | None = None):  # noqa: ANN202
    """POST events as SendGrid's signed Event Webhook does: ECDSA P-256 SHA-256 over timestamp + body, base64."""
    payload = body if body is not None else json.dumps(events)
    stamp = timestamp or str(int(time.time()))
    signature = base64.b64encode(key.sign((stamp + payload).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    sent_headers = {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": signature,
                    "X-Twilio-Email-Event-Webhook-Timestamp": stamp}
    if headers is not None:
        sent_headers = headers
    return client.post("/sendgrid/events", content=payload.encode(), headers=sent_headers)


def sendgrid_event(provider_id: str, email: str, event: str, n: int, **extra: object) -> dict:
    """One event as SendGrid posts it: its sg_message_id is the request's X-Message-Id, then a filter suffix."""
    return {"email": email, "timestamp": 1_790_000_000 + n, "event": event, "sg_event_id": f"evt-{event}-{n}",
            "sg_message_id": f"{provider_id}.filterdrecv-5d7c9d6f5-abcde-1-0", "smtp-id": f"<{provider_id}@x>",
            "broadcast_notice": NOTICE, **extra}


# -- Twilio status callbacks ------------------------------------------------------------------------------------


def test_a_signed_status_callback_records_each_state_and_the_same_one_twice_changes_nothing(client, sent: Ledger) -> None:  # noqa: ANN001
    _, sid, phone = messages(sent, "sms")[0]
    for status in ("sent", "delivered"):
        answer = twilio_post(client, "/twilio/status", status_form(sid, phone, status))
        assert answer.status_code == 204, answer.text
    row = state(sent, phone)
    assert row["state"] == "delivered"
    before = written(sent)
    # Twilio calls again (a retry after a timeout): the same status of the same message is the same event
    assert twilio_post(client, "/twilio/status", status_form(sid, phone, "delivered")).status_code == 204
    # and a late "sent" does not move the state back
    assert twilio_post(client, "/twilio/status", status_form(sid, phone, "sent")).status_code == 204
    assert written(sent) == before
    assert state(sent, phone) == row
    # the other messages heard nothing
    assert {r["state"] for r in sent.outcomes(NOTICE) if r["channel"] == "sms" and r["recipient"] != phone} == {""}


def test_an_undelivered_callback_keeps_twilios_error_in_words(client, sent: Ledger) -> None:  # noqa: ANN001
    _, sid, phone = messages(sent, "sms")[1]
    assert twilio_post(client, "/twilio/status", status_form(sid, phone, "undelivered", "30003")).status_code == 204
    row = state(sent, phone)
    assert row["state"] == "undelivered"
    assert row["state_reason"] == "the phone is off or out of coverage (Twilio 30003)"


@pytest.mark.parametrize(
    "forgery",
    ["no signature", "another token", "the host serve sees", "a field changed after signing", "not base64"],
)
def test_a_status_callback_without_a_good_signature_is_403_and_writes_nothing(client, sent: Ledger, forgery: str) -> None:  # noqa: ANN001
    _, sid, phone = messages(sent, "sms")[0]
    form = status_form(sid, phone, "undelivered", "30005")
    before = written(sent)
    if forgery == "no signature":
        answer = twilio_post(client, "/twilio/status", form, signature="")
    elif forgery == "another token":
        answer = twilio_post(client, "/twilio/status", form, token="not-the-account-token-0000")
    elif forgery == "the host serve sees":
        # behind a proxy the request reaches serve as http://testserver/...; Twilio signed the public URL
        answer = twilio_post(client, "/twilio/status", form, url="http://testserver/twilio/status")
    elif forgery == "a field changed after signing":
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + "/twilio/status", {**form, "MessageStatus": "delivered"})
        answer = twilio_post(client, "/twilio/status", form, signature=signature)
    else:
        answer = twilio_post(client, "/twilio/status", form, signature="%%%")
    assert answer.status_code == 403
    assert written(sent) == before
    assert state(sent, phone)["state"] == ""


def test_a_signed_callback_without_its_fields_or_not_a_form_is_400(client, sent: Ledger) -> None:  # noqa: ANN001
    before = written(sent)
    assert twilio_post(client, "/twilio/status", {"To": "+38641000001", "AccountSid": "AC1"}).status_code == 400
    _, sid, phone = messages(sent, "sms")[0]
    assert twilio_post(client, "/twilio/status", status_form(sid, phone, "failed", "3000x")).status_code == 400
    body = b"\xff\xfe=1"
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "abc"}
    assert client.post("/twilio/status", content=body, headers=headers).status_code == 400
    assert twilio_post(client, "/twilio/inbound", {"From": "+38641000001"}).status_code == 400
    # a form far larger than Twilio's, or with more fields, is refused before it is parsed
    assert twilio_post(client, "/twilio/inbound", {"Body": "x" * 70_000}).status_code == 413
    assert twilio_post(client, "/twilio/inbound", {f"F{n}": "" for n in range(300)}).status_code == 400
    assert written(sent) == before


def test_a_ledger_that_cannot_record_answers_503_so_twilio_calls_again(client, sent: Ledger) -> None:  # noqa: ANN001
    _, sid, phone = messages(sent, "sms")[0]
    with sent.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE events RENAME TO events_away"))
    answer = twilio_post(client, "/twilio/status", status_form(sid, phone, "delivered"))
    assert answer.status_code == 503
    assert state(sent, phone)["state"] == ""
    with sent.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE events_away RENAME TO events"))
    # Twilio's retry of the same callback is then recorded
    assert twilio_post(client, "/twilio/status", status_form(sid, phone, "delivered")).status_code == 204
    assert state(sent, phone)["state"] == "delivered"


# -- Twilio inbound SMS: replies, STOP and START ----------------------------------------------------------------


def test_stop_by_inbound_sms_suppresses_the_number_and_start_lifts_it(client, sent: Ledger) -> None:  # noqa: ANN001
    _, _, phone = messages(sent, "sms")[0]
    inbound = {"MessageSid": "SMin0001", "From": phone, "To": "+15005550006", "Body": "Stop", "NumMedia": "0"}
    answer = twilio_post(client, "/twilio/inbound", inbound)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    # empty TwiML: serve sends no answer of its own
    assert answer.text.endswith("<Response />")
    suppressed = sent.suppressions_of("sms")
    assert [(s["recipient"], s["source"]) for s in suppressed] == [(phone, "reply")]
    # Twilio delivering the same inbound message twice records it once
    assert twilio_post(client, "/twilio/inbound", inbound).status_code == 200
    assert len(sent.replies(NOTICE)) == 1
    start = {**inbound, "MessageSid": "SMin0002", "Body": "START"}
    assert twilio_post(client, "/twilio/inbound", start).status_code == 200
    assert sent.suppressions_of("sms") == []
    assert [(r["text"], r["action"], r["notice"]) for r in sent.replies(NOTICE)] == [
        ("Stop", "opt-out", NOTICE), ("START", "opt-in", NOTICE)]


def test_a_free_text_reply_is_kept_and_an_unsigned_one_is_refused(client, sent: Ledger) -> None:  # noqa: ANN001
    _, _, phone = messages(sent, "sms")[2]
    reply = {"MessageSid": "SMin0003", "From": phone, "To": "+15005550006", "Body": "Salama, asante"}
    before = written(sent)
    assert twilio_post(client, "/twilio/inbound", {**reply, "Body": "STOP"}, token="guessed-token-123456").status_code == 403
    assert twilio_post(client, "/twilio/inbound", reply, signature="").status_code == 403
    assert written(sent) == before and sent.suppressions_of("sms") == []
    assert twilio_post(client, "/twilio/inbound", reply).status_code == 200
    assert [(r["sender"], r["text"], r["action"]) for r in sent.replies(NOTICE)] == [(phone, "Salama, asante", "")]


# -- SendGrid Event Webhook ---------------------------------------------------------------------------------------


def test_signed_sendgrid_events_record_states_a_bounce_suppresses_and_a_repeat_changes_nothing(
    client, sent: Ledger, sendgrid_keys  # noqa: ANN001
) -> None:
    key = sendgrid_keys[0]
    (_, id_a, first), (_, id_b, second), (_, id_c, third) = messages(sent, "email")[:3]
    batch = [
        sendgrid_event(id_a, first, "processed", 1), sendgrid_event(id_a, first, "delivered", 2),
        sendgrid_event(id_a, first, "open", 3, useragent="Mozilla"),
        sendgrid_event(id_b, second.upper(), "bounce", 4, type="bounce", reason="550 5.1.1 The email account does not exist"),
        sendgrid_event(id_c, third, "bounce", 5, type="blocked", reason="421 try again later"),
        sendgrid_event(id_c, third, "click", 6, url="https://example.org"),
    ]
    answer = sendgrid_post(client, batch, key)
    assert answer.status_code == 204, answer.text
    assert state(sent, first)["state"] == "delivered"
    assert state(sent, second)["state"] == "bounced"
    assert state(sent, second)["state_reason"] == "550 5.1.1 The email account does not exist"
    # a blocked message (a soft bounce) is undelivered, and no reason to stop writing to the address
    assert state(sent, third)["state"] == "undelivered"
    assert [(s["recipient"], s["source"]) for s in sent.suppressions_of("email")] == [(second, "provider")]
    before = written(sent)
    # SendGrid posts a batch again when our answer was lost: nothing changes
    assert sendgrid_post(client, batch, key).status_code == 204
    assert written(sent) == before


@pytest.mark.parametrize("forgery", ["no headers", "another key", "body changed", "old timestamp swapped", "not base64"])
def test_sendgrid_events_without_a_good_signature_are_403_and_write_nothing(
    client, sent: Ledger, sendgrid_keys, forgery: str  # noqa: ANN001
) -> None:
    _, provider_id, address = messages(sent, "email")[0]
    batch = [sendgrid_event(provider_id, address, "bounce", 1, type="bounce", reason="550 no such user")]
    before = written(sent)
    key = sendgrid_keys[0]
    payload = json.dumps(batch)
    stamp = str(int(time.time()))
    signature = base64.b64encode(key.sign((stamp + payload).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": stamp}
    if forgery == "no headers":
        answer = sendgrid_post(client, batch, key, headers={"Content-Type": "application/json"})
    elif forgery == "another key":
        answer = sendgrid_post(client, batch, ec.generate_private_key(ec.SECP256R1()))
    elif forgery == "body changed":
        answer = sendgrid_post(client, batch, key, body=payload.replace("bounce", "delivered"),
                               headers={**headers, "Content-Type": "application/json"})
    elif forgery == "old timestamp swapped":
        answer = sendgrid_post(client, batch, key, headers={**headers, "X-Twilio-Email-Event-Webhook-Timestamp": "1"})
    else:
        answer = sendgrid_post(client, batch, key, headers={**headers, "X-Twilio-Email-Event-Webhook-Signature": "***"})
    assert answer.status_code == 403
    assert written(sent) == before
    assert sent.suppressions_of("email") == []


@pytest.mark.parametrize(
    "body",
    ["not json", '{"event": "bounce"}', '[{"email": "a@example.org", "event": "bounce"}]', '[1, 2]',
     '[{"email": "a@example.org", "event": "delivered", "timestamp": "yesterday"}]'],
)
def test_signed_but_malformed_sendgrid_bodies_are_400_and_write_nothing(client, sent: Ledger, sendgrid_keys, body: str) -> None:  # noqa: ANN001
    before = written(sent)
    assert sendgrid_post(client, [], sendgrid_keys[0], body=body).status_code == 400
    assert written(sent) == before


# -- health, and what serve needs to start ------------------------------------------------------------------------


def test_healthz_answers_while_the_ledger_does(client) -> None:  # noqa: ANN001
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.text == "ok\n"


def test_a_providers_routes_are_not_mounted_without_its_secret(sent: Ledger, monkeypatch: pytest.MonkeyPatch, sendgrid_keys) -> None:  # noqa: ANN001
    from starlette.testclient import TestClient

    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY")
    with TestClient(app(sent, Webhooks.from_env(Env()))) as without_sendgrid:
        assert sendgrid_post(without_sendgrid, [], sendgrid_keys[0]).status_code == 404
        _, sid, phone = messages(sent, "sms")[0]
        assert twilio_post(without_sendgrid, "/twilio/status", status_form(sid, phone, "sent")).status_code == 204
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", sendgrid_keys[1])
    monkeypatch.delenv("BROADCAST_PUBLIC_URL")
    with TestClient(app(sent, Webhooks.from_env(Env()))) as without_public_url:
        assert twilio_post(without_public_url, "/twilio/status", status_form(sid, phone, "delivered")).status_code == 404
        assert twilio_post(without_public_url, "/twilio/inbound", {"MessageSid": "S", "From": phone, "Body": "x"}).status_code == 404
    assert state(sent, phone)["state"] == "sent"


def test_serve_without_any_secret_exits_2_naming_the_variables(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 2
    for name in ("TWILIO_AUTH_TOKEN", "BROADCAST_PUBLIC_URL", "SENDGRID_WEBHOOK_PUBLIC_KEY"):
        assert name in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_a_bad_key_a_missing_ledger_and_a_busy_port_without_printing_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sendgrid_keys  # noqa: ANN001
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("BROADCAST_PUBLIC_URL", PUBLIC)
    cut = sendgrid_keys[1][:40]
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", cut)
    bad_key = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert bad_key.exit_code == 2 and "SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve public key" in bad_key.output
    assert cut not in bad_key.output and TOKEN not in bad_key.output
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", sendgrid_keys[1])
    no_ledger = CliRunner().invoke(main, ["serve", "--port", "0", "--ledger", f"sqlite:///{tmp_path / 'none.db'}"])
    assert no_ledger.exit_code == 2 and "no ledger at" in no_ledger.output
    assert not (tmp_path / "none.db").exists()
    Ledger(f"sqlite:///{tmp_path / 'ledger.db'}").close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = CliRunner().invoke(main, ["serve", "--port", str(port), "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"])
    assert taken.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.output
    assert TOKEN not in taken.output


def test_help_lists_serve_and_imports_neither_starlette_nor_uvicorn() -> None:
    code = ("import sys; from click.testing import CliRunner; from broadcast.cli import main; "
            "out = CliRunner().invoke(main, ['--help']).output; "
            "print('serve' in out, sorted(m for m in ('starlette', 'uvicorn', 'broadcast.serve') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True []"


# -- send asks Twilio to call serve ---------------------------------------------------------------------------------


def test_send_with_a_public_url_sets_twilios_status_callback(sent: Ledger, live_send: Fakes, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    twilio = live_send.twilio
    assert len(twilio.deliveries) == 8
    assert {d.payload["status_callback"] for d in twilio.deliveries} == {PUBLIC + "/twilio/status"}
    # a TWILIO_STATUS_CALLBACK set by hand still wins (another receiver of the statuses)
    monkeypatch.setenv("BROADCAST_PUBLIC_URL", PUBLIC + "/")
    monkeypatch.setenv("TWILIO_STATUS_CALLBACK", "https://status.example.org/twilio")
    newcomer = tmp_path / "new.csv"
    newcomer.write_text("name,phone,language\nNew Person,+38641999001,en\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["send", str(EXAMPLE), "--contacts", str(newcomer), "--channel", "sms", "--yes", "--force"])
    assert result.exit_code == 0, result.output
    assert twilio.deliveries[-1].recipient == "+38641999001"
    assert twilio.deliveries[-1].payload["status_callback"] == "https://status.example.org/twilio"


def test_a_public_url_that_is_not_a_url_stops_the_send(live_send: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_PUBLIC_URL", "alerts.example.org/hooks")
    result = CliRunner().invoke(main, ["send", str(EXAMPLE), "--contacts", str(CONTACTS), "--channel", "sms", "--yes", "--force"])
    assert result.exit_code == 2 and "BROADCAST_PUBLIC_URL" in result.output
    assert live_send.twilio.deliveries == []


# -- the real command, in its own process ----------------------------------------------------------------------------


def test_broadcast_serve_in_its_own_process_records_a_signed_callback(sent: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "broadcast", "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )
    try:
        lines = [server.stderr.readline() for _ in range(6)]
        assert lines[0].startswith(f"broadcast serve on http://127.0.0.1:{port}, recording in sqlite:///"), lines
        assert "/sendgrid/events" in lines[4] and "not mounted (SendGrid Event Webhook): SENDGRID_WEBHOOK_PUBLIC_KEY not set" in lines[4]
        assert f"signed for {PUBLIC}/twilio/status" in lines[1] and f"signed for {PUBLIC}/voice/gather" in lines[3]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and server.poll() is None, "serve did not come up"
                time.sleep(0.05)
            # every SMS's callback at once: each request is answered once its event is in the ledger
            from concurrent.futures import ThreadPoolExecutor

            everyone = messages(sent, "sms")
            assert len(everyone) == 8
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(
                    lambda m: twilio_post(http, "/twilio/status", status_form(m[1], m[2], "delivered")).status_code, everyone))
            assert answers == [204] * 8
            assert {r["state"] for r in sent.outcomes(NOTICE) if r["channel"] == "sms"} == {"delivered"}
            _, sid, phone = everyone[0]
            assert twilio_post(http, "/twilio/status", status_form(sid, phone, "delivered"), token="x" * 32).status_code == 403
            assert http.post("/sendgrid/events", content=b"[]").status_code == 404
        assert state(sent, phone)["state"] == "delivered"
    finally:
        server.terminate()
        server.wait(timeout=20)
    # SIGTERM is how a service manager stops it: the requests in flight are answered, and serve exits 0
    assert server.returncode == 0
    assert "serve stopped (SIGTERM)" in server.stderr.read()


def test_the_key_pressed_in_a_call_is_the_called_persons_reply_counted_under_the_notices_keyword(
    live_send: Fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    from broadcast.serve import GATHER_PATH
    from tests.conftest import REPO

    monkeypatch.setenv("BROADCAST_PUBLIC_URL", PUBLIC)
    notice = tmp_path / "boil.yaml"
    notice.write_text(EXAMPLE.read_text(encoding="utf-8") + 'reply:\n  keywords: {SAFE: ["1", "safe"]}\n'
                      '  prompt: {en: "Reply 1 if you are safe", sw: "Jibu 1 kama uko salama", sl: "Odgovorite 1"}\n',
                      encoding="utf-8")
    result = CliRunner().invoke(main, ["send", str(notice), "--contacts", str(REPO / "tests" / "data" / "contacts" / "voice.csv"),
                                       "--channel", "voice", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    calls = live_send.twilio.calls
    assert calls and all(f"{PUBLIC}{GATHER_PATH}" in call["twiml"] for call in calls)
    ledger = Ledger(os.environ["BROADCAST_LEDGER"])
    try:
        with TestClient(app(ledger, Webhooks.from_env(Env()))) as client:
            first, second = calls[0], calls[1]
            pressed = {"CallSid": first["sid"], "To": first["to"], "From": first["from"], "Digits": "1",
                       "CallStatus": "in-progress", "AccountSid": "AC" + "0" * 32}
            assert twilio_post(client, GATHER_PATH, {**pressed, "Digits": "1"}, token="guessed-token-123456").status_code == 403
            answer = twilio_post(client, GATHER_PATH, pressed)
            assert answer.status_code == 200 and answer.text.endswith("<Response />")  # the call ends
            assert twilio_post(client, GATHER_PATH, pressed).status_code == 200  # Twilio posting it again
            # no key pressed: nothing to record
            quiet = {**pressed, "CallSid": second["sid"], "To": second["to"], "Digits": ""}
            assert twilio_post(client, GATHER_PATH, quiet).status_code == 200
        assert [(r["sender"], r["text"]) for r in ledger.replies("boil-water-2026-03")] == [(first["to"], "1")]
    finally:
        ledger.close()
    status = CliRunner().invoke(main, ["status", str(notice), "--json"])
    assert status.exit_code == 0, status.output
    rows = [row for row in json.loads(status.stdout)["results"] if row["channel"] == "voice"]
    assert sum(row["replied"]["SAFE"] for row in rows) == 1 and sum(row["replied"]["other"] for row in rows) == 0
