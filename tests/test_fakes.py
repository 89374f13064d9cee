"""The provider fakes speak each real API well enough that the real SDKs work against them, faults included."""

from __future__ import annotations

import datetime
import http.client
import os
import threading
from typing import Any

import pytest
import requests
import tweepy
from python_http_client.exceptions import BadRequestsError, TooManyRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail, MailSettings, SandBoxMode, To
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from tests.fakes import Faults, SendGridFake, TwilioFake, XFake, credentials, point_tweepy_at
from tests.fakes.fixtures import Fakes, use_fakes
from tests.fakes.twilio import num_segments

# Ample for a loaded 2-core machine; tests of lost answers pass SHORT_TIMEOUT, below what HELD holds.
CLIENT_TIMEOUT = 5.0
SHORT_TIMEOUT = 0.3
HELD = Faults(timeout_delay=1.0)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """All three SDKs honour proxy variables; a developer's proxy must not see requests to the fakes."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def sendgrid_client(
    fake: SendGridFake, api_key: str = credentials.SENDGRID_API_KEY, timeout: float = CLIENT_TIMEOUT
) -> SendGridAPIClient:
    client = SendGridAPIClient(api_key, host=fake.url)
    client.client.timeout = timeout  # python_http_client waits forever by default
    return client


def twilio_client(
    fake: TwilioFake, auth_token: str = credentials.TWILIO_AUTH_TOKEN, timeout: float = CLIENT_TIMEOUT
) -> TwilioClient:
    client = TwilioClient(credentials.TWILIO_ACCOUNT_SID, auth_token, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = fake.url
    return client


def x_client(fake: XFake, timeout: float = CLIENT_TIMEOUT, **overrides: str) -> tweepy.Client:
    keys = {
        "consumer_key": credentials.X_CONSUMER_KEY,
        "consumer_secret": credentials.X_CONSUMER_SECRET,
        "access_token": credentials.X_ACCESS_TOKEN,
        "access_token_secret": credentials.X_ACCESS_TOKEN_SECRET,
        **overrides,
    }
    client = tweepy.Client(**keys)
    point_tweepy_at(client.session, fake.url, timeout=timeout)
    return client


def mail(*addresses: str, **substitutions: str) -> Mail:
    message = Mail(
        from_email="alerts@example.org",
        to_emails=[To(address, substitutions=substitutions or None) for address in addresses],
        subject="Boil water notice",
        plain_text_content="Boil water before drinking it. -name-",
        is_multiple=True,  # one personalization per address, as a sender of individual notices does
    )
    message.custom_arg = CustomArg("notice_id", "n-1")
    return message


# ----- SendGrid -----


def test_sendgrid_accepts_sdk_mail_and_records_each_recipient(sendgrid_fake: SendGridFake) -> None:
    response = sendgrid_client(sendgrid_fake).send(mail("ana@example.com", "bo@example.com", **{"-name-": "Ana"}))

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert sendgrid_fake.invalid == []
    assert sendgrid_fake.delivery_counts() == {"ana@example.com": 1, "bo@example.com": 1}
    recipient, payload = sendgrid_fake.deliveries[0]
    assert payload["message_id"] == message_id
    assert payload["custom_args"] == {"notice_id": "n-1"}
    assert payload["substitutions"] == {"-name-": "Ana"}
    assert sendgrid_fake.requests[0].headers["authorization"] == f"Bearer {credentials.SENDGRID_API_KEY}"


def test_sendgrid_answers_400_to_what_its_spec_rejects(sendgrid_fake: SendGridFake) -> None:
    with pytest.raises(BadRequestsError) as raised:
        sendgrid_client(sendgrid_fake).client.mail.send.post(
            request_body={"personalizations": [{"to": [{"email": "ana@example.com"}]}], "subject": "no sender"}
        )

    assert raised.value.status_code == 400
    assert "'from' is a required property" in raised.value.to_dict["errors"][0]["message"]
    assert [(bad.method, bad.path) for bad in sendgrid_fake.invalid] == [("POST", "/v3/mail/send")]
    assert sendgrid_fake.deliveries == []


def test_sendgrid_wrong_key_gets_401_in_sendgrids_shape(sendgrid_fake: SendGridFake) -> None:
    with pytest.raises(UnauthorizedError) as raised:
        sendgrid_client(sendgrid_fake, api_key="SG.wrong").send(mail("ana@example.com"))

    assert raised.value.to_dict == {
        "errors": [
            {"message": "The provided authorization grant is invalid, expired, or revoked", "field": None, "help": None}
        ]
    }


def test_sendgrid_rejected_address_refuses_the_whole_request(sendgrid_fake: SendGridFake) -> None:
    sendgrid_fake.reject_emails.add("bo@example.com")

    with pytest.raises(BadRequestsError) as raised:
        sendgrid_client(sendgrid_fake).send(mail("ana@example.com", "bo@example.com"))

    [error] = raised.value.to_dict["errors"]
    sent = [p["to"][0]["email"] for p in sendgrid_fake.requests[0].body["personalizations"]]
    assert error["message"] == "Does not contain a valid address."
    # The SDK inserts each new personalization first, so the order is the reverse of to_emails.
    assert error["field"] == f"personalizations.{sent.index('bo@example.com')}.to.0.email"
    assert sendgrid_fake.deliveries == []


def test_sendgrid_sandbox_mode_is_not_a_delivery(sendgrid_fake: SendGridFake) -> None:
    message = mail("ana@example.com")
    message.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))

    response = sendgrid_client(sendgrid_fake).send(message)

    assert response.status_code == 200
    assert sendgrid_fake.deliveries == []
    assert [recipient for recipient, _ in sendgrid_fake.sandboxed] == ["ana@example.com"]
    assert sendgrid_fake.invalid == []


def test_sendgrid_refuses_more_than_1000_recipients_per_request(sendgrid_fake: SendGridFake) -> None:
    # 600 + 600: each personalization is within the spec, the total is not within SendGrid's limit.
    halves = [{"to": [{"email": f"r{half}-{n}@example.com"} for n in range(600)]} for half in range(2)]
    body = {
        "personalizations": halves,
        "from": {"email": "alerts@example.org"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "v"}],
    }

    with pytest.raises(BadRequestsError) as raised:
        sendgrid_client(sendgrid_fake).client.mail.send.post(request_body=body)

    assert "no more than 1000" in raised.value.to_dict["errors"][0]["message"]
    assert sendgrid_fake.invalid == []
    assert sendgrid_fake.deliveries == []


def test_sendgrid_scripted_429_carries_rate_limit_headers(sendgrid_fake: SendGridFake) -> None:
    sendgrid_fake.script([429])
    client = sendgrid_client(sendgrid_fake)

    with pytest.raises(TooManyRequestsError) as raised:
        client.send(mail("ana@example.com"))
    assert raised.value.headers["Retry-After"] == "1"
    assert int(raised.value.headers["X-RateLimit-Reset"]) > 0

    assert client.send(mail("ana@example.com")).status_code == 202
    assert sendgrid_fake.faults_injected == {"429": 1}
    assert sendgrid_fake.delivery_counts() == {"ana@example.com": 1}


@pytest.mark.parametrize(
    ("kind", "error", "delivered"),
    [
        ("drop_before", http.client.RemoteDisconnected, 0),
        ("drop_after", http.client.RemoteDisconnected, 1),
        ("timeout_before", TimeoutError, 0),
        ("timeout_after", TimeoutError, 1),
    ],
)
def test_sendgrid_lost_answers(sendgrid_fake: SendGridFake, kind: str, error: type, delivered: int) -> None:
    sendgrid_fake.faults = HELD
    sendgrid_fake.script([kind])

    with pytest.raises(error):
        sendgrid_client(sendgrid_fake, timeout=SHORT_TIMEOUT).send(mail("ana@example.com"))

    assert len(sendgrid_fake.deliveries) == delivered
    assert sendgrid_fake.faults_injected == {kind: 1}


# ----- Twilio -----


def test_twilio_create_returns_a_message_the_sdk_reads(twilio_fake: TwilioFake) -> None:
    message = twilio_client(twilio_fake).messages.create(
        to="+38640123456",
        from_=credentials.TWILIO_FROM,
        body="Prekuhajte vodo. č" * 5,  # one non-GSM character: UCS-2, 90 characters, 2 segments
        status_callback="https://status.example.org/twilio",
    )

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.num_segments == "2"
    assert message.to == "+38640123456"
    assert message.account_sid == credentials.TWILIO_ACCOUNT_SID
    assert isinstance(message.date_created, datetime.datetime)
    assert twilio_fake.invalid == []
    [(recipient, payload)] = twilio_fake.deliveries
    assert recipient == "+38640123456"
    assert payload["sid"] == message.sid
    assert payload["status_callback"] == "https://status.example.org/twilio"


def test_twilio_answers_400_to_what_its_spec_rejects(twilio_fake: TwilioFake) -> None:
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(twilio_fake).messages.create(
            to="+38640123456", from_=credentials.TWILIO_FROM, body="x", attempt="first"
        )

    assert raised.value.status == 400
    assert "Failed to cast value to integer type: first" in raised.value.msg
    assert len(twilio_fake.invalid) == 1
    assert twilio_fake.deliveries == []


def test_twilio_unknown_path_is_404_and_recorded_as_invalid(twilio_fake: TwilioFake) -> None:
    response = requests.get(
        twilio_fake.url + "/2010-04-01/Nope",
        auth=(credentials.TWILIO_ACCOUNT_SID, credentials.TWILIO_AUTH_TOKEN),
        timeout=CLIENT_TIMEOUT,
    )

    assert (response.status_code, response.json()["code"]) == (404, 20404)
    assert [bad.path for bad in twilio_fake.invalid] == ["/2010-04-01/Nope"]


def test_twilio_wrong_token_gets_20003(twilio_fake: TwilioFake) -> None:
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(twilio_fake, auth_token="wrong").messages.create(
            to="+38640123456", from_=credentials.TWILIO_FROM, body="x"
        )

    assert (raised.value.status, raised.value.code) == (401, 20003)


@pytest.mark.parametrize(
    ("scripted", "code"), [("invalid_numbers", 21211), ("unsubscribed", 21610), ("region_disabled", 21408)]
)
def test_twilio_scripted_numbers_get_their_error_codes(twilio_fake: TwilioFake, scripted: str, code: int) -> None:
    getattr(twilio_fake, scripted).add("+38640123456")

    with pytest.raises(TwilioRestException) as raised:
        twilio_client(twilio_fake).messages.create(to="+38640123456", from_=credentials.TWILIO_FROM, body="x")

    assert (raised.value.status, raised.value.code) == (400, code)
    assert twilio_fake.deliveries == []


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"body": "x"}, 21603),
        ({"body": "x", "from_": credentials.TWILIO_FROM, "messaging_service_sid": "MG" + "0" * 32}, 21603),
        ({"body": "x" * 1601, "from_": credentials.TWILIO_FROM}, 21617),
        ({"body": "x", "from_": credentials.TWILIO_FROM, "to": "040 123 456"}, 21211),
    ],
)
def test_twilio_message_rules(twilio_fake: TwilioFake, arguments: dict[str, Any], code: int) -> None:
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(twilio_fake).messages.create(**{"to": "+38640123456", **arguments})

    assert raised.value.code == code
    assert twilio_fake.invalid == []


def test_twilio_scripted_429_is_20429(twilio_fake: TwilioFake) -> None:
    twilio_fake.script([429])

    with pytest.raises(TwilioRestException) as raised:
        twilio_client(twilio_fake).messages.create(to="+38640123456", from_=credentials.TWILIO_FROM, body="x")

    assert (raised.value.status, raised.value.code) == (429, 20429)


def test_twilio_list_finds_a_message_whose_answer_was_lost(twilio_fake: TwilioFake) -> None:
    client = twilio_client(twilio_fake)
    started = datetime.datetime.now(datetime.UTC)
    twilio_fake.script(["drop_after"])

    with pytest.raises(requests.exceptions.ConnectionError):
        client.messages.create(to="+38640123456", from_=credentials.TWILIO_FROM, body="Boil water")

    [found] = client.messages.list(to="+38640123456", date_sent_after=started)
    assert (found.body, found.status) == ("Boil water", "sent")
    assert found.sid == twilio_fake.deliveries[0].payload["sid"]
    assert twilio_fake.invalid == []


def test_twilio_list_follows_pages(twilio_fake: TwilioFake) -> None:
    client = twilio_client(twilio_fake)
    for n in range(5):
        client.messages.create(to="+38640123456", from_=credentials.TWILIO_FROM, body=f"part {n}")
    client.messages.create(to="+38640999999", from_=credentials.TWILIO_FROM, body="someone else")

    found = client.messages.list(to="+38640123456", page_size=2)

    assert [message.body for message in found] == [f"part {n}" for n in reversed(range(5))]
    assert len([r for r in twilio_fake.requests if r.method == "GET"]) == 3
    assert twilio_fake.invalid == []


@pytest.mark.parametrize(
    ("kind", "error", "delivered"),
    [
        ("drop_after", requests.exceptions.ConnectionError, 1),
        ("timeout_before", requests.exceptions.ReadTimeout, 0),
    ],
)
def test_twilio_lost_answers(twilio_fake: TwilioFake, kind: str, error: type, delivered: int) -> None:
    twilio_fake.faults = HELD
    twilio_fake.script([kind])

    with pytest.raises(error):
        twilio_client(twilio_fake, timeout=SHORT_TIMEOUT).messages.create(
            to="+38640123456", from_=credentials.TWILIO_FROM, body="x"
        )

    assert len(twilio_fake.deliveries) == delivered


# ----- X -----


def test_x_thread_and_duplicate(x_fake: XFake) -> None:
    client = x_client(x_fake)

    first = client.create_tweet(text="Boil water notice for Ljubljana.")
    reply = client.create_tweet(text="Details: https://example.org/notice", in_reply_to_tweet_id=first.data["id"])
    with pytest.raises(tweepy.Forbidden) as raised:
        client.create_tweet(text="Boil water notice for Ljubljana.")

    assert first.data["id"].isdigit()
    assert first.data["edit_history_tweet_ids"] == [first.data["id"]]
    assert x_fake.tweets[reply.data["id"]]["in_reply_to_tweet_id"] == first.data["id"]
    assert raised.value.response.json() == {
        "detail": "You are not allowed to create a Tweet with duplicate content.",
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
    }
    assert len(x_fake.deliveries) == 2
    assert x_fake.invalid == []


def test_x_reply_must_name_a_tweet_it_created(x_fake: XFake) -> None:
    with pytest.raises(tweepy.Forbidden):
        x_client(x_fake).create_tweet(text="orphan", in_reply_to_tweet_id="12345")

    assert x_fake.deliveries == []


@pytest.mark.parametrize("wrong", [{"consumer_key": "someone-else"}, {"consumer_secret": "wrong-secret"}])
def test_x_bad_credentials_get_401(x_fake: XFake, wrong: dict[str, str]) -> None:
    with pytest.raises(tweepy.Unauthorized) as raised:
        x_client(x_fake, **wrong).create_tweet(text="hello")

    assert raised.value.response.json() == {
        "title": "Unauthorized",
        "type": "about:blank",
        "status": 401,
        "detail": "Unauthorized",
    }


def test_x_accepts_a_bearer_user_token(x_fake: XFake) -> None:
    client = tweepy.Client(bearer_token=credentials.X_BEARER_TOKEN)
    point_tweepy_at(client.session, x_fake.url, timeout=CLIENT_TIMEOUT)

    client.create_tweet(text="hello", user_auth=False)

    assert x_fake.deliveries[0].payload["auth"] == "bearer"
    assert x_fake.invalid == []


def test_x_counts_weighted_characters(x_fake: XFake) -> None:
    client = x_client(x_fake)

    client.create_tweet(text="水" * 140)  # CJK weighs 2: exactly 280
    with pytest.raises(tweepy.BadRequest) as raised:
        client.create_tweet(text="a" * 281)

    assert "too long" in str(raised.value)
    assert len(x_fake.deliveries) == 1


def test_x_answers_400_to_what_its_spec_rejects(x_fake: XFake) -> None:
    with pytest.raises(tweepy.BadRequest):
        x_client(x_fake).request("POST", "/2/tweets", json={"text": "hi", "colour": "red"}, user_auth=True)

    [bad] = x_fake.invalid
    assert "colour" in bad.errors[0]


def test_x_scripted_429_has_reset_time(x_fake: XFake) -> None:
    x_fake.script([429])

    with pytest.raises(tweepy.TooManyRequests) as raised:
        x_client(x_fake).create_tweet(text="hello")

    assert raised.value.reset_time is not None
    assert raised.value.response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("kind", "error"),
    [("drop_after", requests.exceptions.ConnectionError), ("timeout_after", requests.exceptions.ReadTimeout)],
)
def test_x_lost_answer_then_retry_meets_duplicate(x_fake: XFake, kind: str, error: type) -> None:
    x_fake.faults = HELD
    x_fake.script([kind])
    client = x_client(x_fake, timeout=SHORT_TIMEOUT)

    with pytest.raises(error):
        client.create_tweet(text="Boil water")
    with pytest.raises(tweepy.Forbidden):
        client.create_tweet(text="Boil water")

    assert x_fake.delivery_counts() == {"Boil water": 1}


# ----- faults, measurement, housekeeping -----


def run_mixed_faults(seed: int) -> tuple[list[str], dict[str, int], list[str]]:
    """Send 40 different mails one by one; return each outcome, the faults counted and who got mail.

    The client waits longer than a held answer, so a held answer ends as a drop (before accept) or a
    late 202 (after): outcomes then depend on the seed alone, not on how busy the machine is.
    """
    faults = Faults(
        seed=seed,
        error_rate=0.2,
        rate_limit_rate=0.05,
        timeout_before_rate=0.05,
        timeout_after_rate=0.05,
        drop_before_rate=0.05,
        drop_after_rate=0.05,
        timeout_delay=0.05,
    )
    outcomes = []
    with SendGridFake(faults=faults, validate=False) as fake, requests.Session() as session:
        for n in range(40):
            body = {"personalizations": [{"to": [{"email": f"r{n}@example.com"}]}], "from": {"email": "a@example.org"}}
            try:
                response = session.post(
                    fake.url + "/v3/mail/send",
                    json=body,
                    headers={"Authorization": f"Bearer {fake.api_key}"},
                    timeout=CLIENT_TIMEOUT,
                )
                outcomes.append(str(response.status_code))
            except requests.exceptions.ConnectionError:
                outcomes.append("dropped")
        return outcomes, dict(fake.faults_injected), [recipient for recipient, _ in fake.deliveries]


def test_faults_are_the_same_for_the_same_seed() -> None:
    first, second, other = run_mixed_faults(8), run_mixed_faults(8), run_mixed_faults(7)

    assert first == second
    assert first != other
    outcomes, injected, delivered = first
    assert sum(injected.values()) - injected.get("timeout_after", 0) == sum(outcome != "202" for outcome in outcomes)
    assert {"202", "429", "503", "dropped"} <= set(outcomes)
    assert {"drop_before", "drop_after", "timeout_before", "timeout_after"} <= set(injected)
    assert len(delivered) == outcomes.count("202") + injected.get("drop_after", 0)


def test_fault_rates_must_add_up_to_at_most_one() -> None:
    with pytest.raises(ValueError):
        Faults(error_rate=0.8, drop_after_rate=0.5)


def test_script_refuses_what_it_cannot_play(sendgrid_fake: SendGridFake) -> None:
    with pytest.raises(ValueError):
        sendgrid_fake.script(["explode"])
    with pytest.raises(ValueError):
        sendgrid_fake.script([202])


def test_latency_concurrency_and_window_are_measured() -> None:
    threads, each = 8, 3
    barrier = threading.Barrier(threads)
    with XFake(validate=False, latency=0.05, bearer_token="b") as fake:

        def post(worker: int) -> None:
            with requests.Session() as session:
                barrier.wait()
                for n in range(each):
                    response = session.post(
                        fake.url + "/2/tweets",
                        json={"text": f"worker {worker} post {n}"},
                        headers={"Authorization": "Bearer b"},
                        timeout=5,
                    )
                    assert response.status_code == 201

        workers = [threading.Thread(target=post, args=(worker,)) for worker in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        assert len(fake.deliveries) == threads * each
        assert fake.duplicates() == {}
        assert 2 <= fake.max_concurrency <= threads
        assert fake.max_in_window(seconds=60) == threads * each


def test_reset_forgets_what_was_recorded(x_fake: XFake) -> None:
    client = x_client(x_fake)
    client.create_tweet(text="before reset")
    x_fake.script([503])

    x_fake.reset()

    assert (x_fake.requests, x_fake.deliveries, x_fake.tweets, x_fake.faults_injected) == ([], [], {}, {})
    assert client.create_tweet(text="before reset").data["text"] == "before reset"


def test_use_fakes_points_the_environment_at_the_fakes(fake_providers: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fakes(monkeypatch, sendgrid=fake_providers.sendgrid, twilio=fake_providers.twilio, x=fake_providers.x)

    assert os.environ["SENDGRID_API_HOST"] == fake_providers.sendgrid.url
    assert os.environ["TWILIO_API_BASE_URL"] == fake_providers.twilio.url
    assert os.environ["X_API_BASE_URL"] == fake_providers.x.url
    assert "127.0.0.1" in os.environ["NO_PROXY"]
    environment = set(os.environ.values())
    assert all(secret in environment for secret in credentials.SECRETS if secret != credentials.X_BEARER_TOKEN)
    assert all("fake" in secret and "secret" in secret for secret in credentials.SECRETS)


def test_fake_answers_keep_the_connection_alive(sendgrid_fake: SendGridFake) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", int(sendgrid_fake.url.rsplit(":", 1)[1]), timeout=5)
    local_ports = set()
    for _ in range(3):
        connection.request("POST", "/v3/mail/send", body=b"{}", headers={"Authorization": "Bearer x"})
        connection.getresponse().read()
        local_ports.add(connection.sock.getsockname()[1])
    connection.close()

    assert len(local_ports) == 1


def test_num_segments_follows_gsm7_and_ucs2() -> None:
    assert num_segments("a" * 160) == 1
    assert num_segments("a" * 161) == 2
    assert num_segments("€" * 80) == 1  # extension characters weigh two septets: 160
    assert num_segments("č" * 70) == 1
    assert num_segments("č" * 71) == 2
