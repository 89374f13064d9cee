"""The SMS channel: one Twilio Messages create per message, through the official twilio SDK."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from broadcast.channels.base import Channel, Cost, RenderOptions
from broadcast.config import Env, Secret, mask, provider_timeout
from broadcast.errors import ChannelError
from broadcast.message import CONTACT_FIELDS, INTERRUPTED, Message, Receipt, Rendering, Status, personalize
from broadcast.results import Event
from broadcast.text import compact

# The SDK is imported where a request is made, so check and preview can read this adapter's limits
# (max_body and the other facts) without loading Twilio's client
if TYPE_CHECKING:
    from collections.abc import Mapping

    import aiohttp
    import requests
    from twilio.base.exceptions import TwilioRestException
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    from broadcast.notice import LocalNotice
    from broadcast.results import Sent

#: seconds for connecting and for each read; a lost answer is then looked up, never blindly re-sent

CREDENTIALS_HINT = "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (Twilio Console → Account → API keys & tokens)"

#: refusals of one recipient, in words a comms person understands
RECIPIENT_REASONS = {
    21211: "invalid phone number (Twilio 21211)",
    21408: "sending to this region is not enabled on the Twilio account (21408)",
    21610: "the recipient replied STOP (Twilio 21610); suppressed from now on",
    21612: "Twilio cannot route an SMS from our sender to this number (Twilio 21612)",
    21614: "not a mobile number, so it cannot receive SMS (Twilio 21614)",
}
#: our sender itself is unusable, so every message would fail the same way: From number errors
#: (21212, 21606, 21659, 21660, 21661), neither From nor service (21603), Messaging Service errors (217xx)
SENDER_CODES = frozenset({21212, 21603, 21606, 21659, 21660, 21661, 21701, 21702, 21703, 21704, 21705})

#: Twilio's message statuses in results.Event kinds (an outbound message's; inbound ones are replies)
STATUS_KINDS = {
    "accepted": "accepted", "scheduled": "accepted", "queued": "queued", "sending": "queued", "sent": "sent",
    "delivered": "delivered", "read": "delivered", "partially_delivered": "delivered", "undelivered": "undelivered",
    "failed": "failed", "canceled": "failed",
}
#: the delivery error codes a comms person meets most, in their words (www.twilio.com/docs/api/errors)
DELIVERY_REASONS = {
    30003: "the phone is off or out of coverage (Twilio 30003)",
    30004: "the recipient or their carrier blocked the message (Twilio 30004)",
    30005: "the number is unknown or no longer in service (Twilio 30005)",
    30006: "a landline, or a carrier that cannot take SMS (Twilio 30006)",
    30007: "the carrier filtered the message as spam (Twilio 30007)",
    30008: "the carrier gave no reason (Twilio 30008)",
}

#: Twilio filters its list only by the GMT day a message was *sent* (empty while it is still queued),
#: so the lookup asks for the recipient's newest messages and compares creation times here
LOOKUP_LIMIT = 50
#: how long before our attempt a matching message may have been created: room for our clock being
#: ahead of Twilio's. A match from earlier in that window is the same text to the same number, so
#: calling it sent is true either way; missing the real one would send it twice.
CLOCK_SLACK = timedelta(minutes=10)
#: a lost answer's message is taken as never sent only if Twilio's list still lacks it this many client
#: timeouts after the attempt started (30 s timeouts: one minute); before that it may still be on its way in
SETTLE_TIMEOUTS = 2


#: stands in for a recipient's name while the SMS form is chosen: a long name must not push the sent SMS over the
#: limit. Thirty letters covers all but a few names; billing counts each real name (Channel.cost).
LONG_NAME = "x" * 30

#: the path `broadcast serve` takes status callbacks on; a send with BROADCAST_PUBLIC_URL asks Twilio to call it
STATUS_CALLBACK_PATH = "/twilio/status"


@dataclass(frozen=True)
class SmsSettings:
    account_sid: Secret
    auth_token: Secret
    sender: str | None
    messaging_service_sid: str | None
    status_callback: str | None
    base_url: str | None

    @classmethod
    def from_env(cls, env: Env) -> SmsSettings | None:
        """TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and exactly one of TWILIO_FROM and TWILIO_MESSAGING_SERVICE_SID."""
        sid, token = env.secret("TWILIO_ACCOUNT_SID"), env.secret("TWILIO_AUTH_TOKEN")
        base_url, callback = env.url("TWILIO_API_BASE_URL"), env.url("TWILIO_STATUS_CALLBACK")
        if not callback and env.get("BROADCAST_PUBLIC_URL"):
            # where `broadcast serve` is reached: Twilio reports each message's status there (TWILIO_STATUS_CALLBACK wins)
            public = env.url("BROADCAST_PUBLIC_URL")
            callback = public.rstrip("/") + STATUS_CALLBACK_PATH if public else None
        complete = env.need("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
        sender, service = env.get("TWILIO_FROM"), env.get("TWILIO_MESSAGING_SERVICE_SID")
        if not sender and not service:
            env.missing.append("TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
            return None
        if sender and service:
            env.problem("set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID, not both (Twilio accepts exactly one)")
        if not complete or sid is None or token is None:
            return None
        return cls(sid, token, sender or None, service or None, callback, base_url)


class TwilioChannel(Channel):
    """Twilio Programmable Messaging: From or MessagingServiceSid, optional StatusCallback, one request per SMS."""

    name: ClassVar[str] = "sms"
    title: ClassVar[str] = "SMS"
    provider: ClassVar[str] = "Twilio"
    address: ClassVar[str] = "phone"
    aliases: ClassVar[tuple[str, ...]] = ("text",)
    templates: ClassVar[dict[str, str]] = {"text": "sms.txt.j2"}
    #: the SMS template's forms, longest first (documented in templates/sms.txt.j2); the first that fits is sent
    forms: ClassVar[range] = range(1, 8)
    billed: ClassVar[bool] = True
    #: a text message wakes people: info and advisory notices wait for the recipient's morning
    quiet_at_night: ClassVar[bool] = True
    settings: ClassVar[type[SmsSettings]] = SmsSettings
    secrets: ClassVar[tuple[str, ...]] = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    host_variable: ClassVar[str] = "TWILIO_API_BASE_URL"
    max_batch: ClassVar[int] = 1
    max_concurrency: ClassVar[int] = 10
    #: Twilio refuses a longer body (21617) however many segments it would be; check reads this
    max_body: ClassVar[int] = 1600

    @classmethod
    def shape(cls, rendering: Rendering, parts: dict[str, str], options: RenderOptions, local: LocalNotice) -> Rendering:
        text = compact(parts["text"])
        if options.transliterate:
            # asked for, to pay for fewer segments: č→c, curly quotes → straight (recipients see the difference)
            from broadcast.segments import transliterate

            text = transliterate(text)
        return replace(rendering, text=text)

    @classmethod
    def fits(cls, rendering: Rendering, options: RenderOptions) -> bool:
        from broadcast.segments import count_segments

        named = personalize(rendering, dict.fromkeys(CONTACT_FIELDS, LONG_NAME))
        return options.max_segments is None or count_segments(named.text).segments <= options.max_segments

    @classmethod
    def cost(cls, rendering: Rendering) -> Cost:
        from broadcast.segments import count_segments

        return Cost(count_segments(rendering.text).segments, ("segment", "segments"))

    @classmethod
    def stats(cls, rendering: Rendering) -> dict[str, Any]:
        from broadcast.segments import count_segments

        info = count_segments(rendering.text)
        return {"characters": info.characters, "encoding": info.encoding, "segments": info.segments, "form": rendering.form}

    @classmethod
    def status_event(cls, form: Mapping[str, str], at: datetime) -> Event | None:
        """A status callback's form (MessageSid, MessageStatus, ErrorCode, To) as an Event; None for a status that is
        no delivery state. ValueError when the form is not a status callback."""
        sid, status = form.get("MessageSid") or form.get("SmsSid"), form.get("MessageStatus") or form.get("SmsStatus")
        code = form.get("ErrorCode") or ""
        if not sid or not status or not (code.isdigit() or not code):
            raise ValueError("a status callback has MessageSid, MessageStatus and a numeric ErrorCode if any")
        return cls._status_event(sid, status, int(code) if code else None, "", form.get("To", ""), at)

    @classmethod
    def _status_event(cls, sid: str, status: str, code: int | None, said: str, to: str, at: datetime) -> Event | None:
        """A message's status as an Event, whether a callback brought it or `sync` fetched it; None for a status
        that is no delivery state."""
        kind = STATUS_KINDS.get(status)
        if kind is None:
            return None
        reason = (DELIVERY_REASONS.get(code) or f"Twilio error {code}" + (f": {said}" if said else "")) if code else (
            "canceled before it was sent" if status == "canceled" else "")
        # each status of a message is reported once: the SID and the status are the event (a callback Twilio makes
        # again, or the same status read by `sync` and pushed to `serve`, records nothing new)
        return Event(cls.name, kind, at, provider_id=sid, recipient=to, reason=reason,  # type: ignore[arg-type]
                     event_id=f"{sid}:{status}")

    @classmethod
    def reply_event(cls, form: Mapping[str, str], at: datetime) -> Event:
        """An inbound message's form (MessageSid, From, Body) as a reply. ValueError when it is not one."""
        sid, sender = form.get("MessageSid") or form.get("SmsSid"), form.get("From")
        if not sid or not sender or "Body" not in form:
            raise ValueError("an inbound message has MessageSid, From and Body")
        return Event(cls.name, "reply", at, recipient=sender, text=form["Body"], event_id=sid)

    def __init__(self, settings: SmsSettings, *, timeout: float | None = None, **run: Any) -> None:
        super().__init__(settings, **run)
        self.settings = settings
        self.timeout = provider_timeout() if timeout is None else timeout
        # Twilio accepts exactly one of From and MessagingServiceSid; config.py refuses both being set
        if settings.messaging_service_sid:
            self._sender: dict[str, Any] = {"messaging_service_sid": settings.messaging_service_sid}
            self._sender_variable = "TWILIO_MESSAGING_SERVICE_SID"
        else:
            self._sender = {"from_": settings.sender}
            self._sender_variable = "TWILIO_FROM"
        self._extra: dict[str, Any] = {"status_callback": settings.status_callback} if settings.status_callback else {}
        # requests does not promise that one Session is safe across threads, so each sending thread
        # gets its own Client and Session; each keeps its connection alive between messages.
        self._local = threading.local()
        self._lock = threading.Lock()
        self._http_clients: list[TwilioHttpClient] = []
        # Creates go through the SDK's async client on one event loop in a thread of its own (_Sending), built on
        # the first send: the sending threads only wait there, so 128 requests in flight cost what 10 did
        self._sending: _Sending | None = None

    def close(self) -> None:
        with self._lock:
            http_clients, self._http_clients = self._http_clients, []
            self._local = threading.local()
            sending, self._sending = self._sending, None
        for http_client in http_clients:
            if http_client.session is not None:
                http_client.session.close()
        if sending is not None:
            sending.close()

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        return [self._send_one(message) for message in messages]

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            from twilio.http.http_client import TwilioHttpClient
            from twilio.rest import Client

            http_client = TwilioHttpClient(timeout=self.timeout)
            account_sid, auth_token = self.settings.account_sid.reveal(), self.settings.auth_token.reveal()
            client = Client(account_sid, auth_token, http_client=http_client)
            if self.settings.base_url:
                # Domain.base_url is the SDK's public setting for where the Api domain lives
                client.api.base_url = self.settings.base_url
            # the SDK imports its Messages modules on first use: do that now, not inside the --rate gate
            client.messages  # noqa: B018
            self._local.client = client
            with self._lock:
                self._http_clients.append(http_client)
        return client

    def _send_one(self, message: Message) -> Receipt:
        from twilio.base.exceptions import TwilioRestException

        body = message.personal().text
        if len(body) > self.max_body:
            # check refuses a rendering over the limit; only a long name can get here, and Twilio would refuse it
            return _receipt(
                message, "failed",
                reason=f"with this contact's name the SMS is {len(body):,} characters, over Twilio's limit of "
                f"{self.max_body:,}; nothing was sent to Twilio",
            )
        import aiohttp

        sending = self._sending_loop()
        started = datetime.now(timezone.utc)
        try:
            with self.request() as go:
                if not go:
                    return _receipt(message, "not_started", reason=INTERRUPTED)
                created = sending.create(to=message.recipient, body=body, **self._sender, **self._extra)
        except TwilioRestException as error:
            return self._refused(message, error)
        except (aiohttp.ClientError, TimeoutError) as error:  # asyncio's TimeoutError is the builtin
            if _never_connected(error):
                return _receipt(message, "retry", reason="could not connect to Twilio; nothing was sent")
            # The request may have reached Twilio; sending again could deliver it twice, so ask first.
            timed_out = isinstance(error, TimeoutError)
            lost = "Twilio did not answer in time" if timed_out else "the connection to Twilio dropped"
            return self._reconcile(self._client(), message, body, started, lost)
        return _receipt(message, "sent", provider_id=created.sid)

    def _sending_loop(self) -> _Sending:
        with self._lock:
            if self._sending is None:
                self._sending = _Sending(self.settings, self.timeout)
            return self._sending

    def reconcile(self, lost: Sequence[tuple[Message, datetime]]) -> list[Receipt]:
        """After a crash: Twilio's message list says whether each in-flight SMS went out. One look-up per message,
        as many at once as the channel sends (a SIGKILLed runner leaves hundreds; one by one at 200 ms each, they
        held the next run for a minute)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(item: tuple[Message, datetime]) -> Receipt:
            message, since = item
            why = "an earlier run stopped before Twilio answered"
            return self._reconcile(self._client(), message, message.personal().text, since, why)

        senders = max(1, min(len(lost), getattr(self.gate, "concurrency", None) or self.max_concurrency))
        with ThreadPoolExecutor(senders, thread_name_prefix="sms-lookup") as pool:
            return list(pool.map(one, lost))

    def results(self, since: datetime | None, messages: Sequence[Sent]) -> Iterator[Event]:
        """Each message's status (fetched by its SID), then the replies: inbound messages to our number since
        ``since`` (Twilio's list filtered by To and DateSent>, which is by GMT day; record() drops what it has)."""
        client = self._client()
        for sent in messages:
            found = self._asking(lambda sent=sent: client.messages(sent.provider_id).fetch(), missing_ok=True)
            if found is None:
                continue
            event = self._status_event(
                found.sid, found.status or "", found.error_code or None, found.error_message or "no description",
                found.to or sent.recipient, found.date_updated or found.date_created or datetime.now(timezone.utc))
            if event is not None:
                yield event
        # with a Messaging Service the replies may come to any of its numbers: every inbound message is read
        to = {"to": self.settings.sender} if self.settings.sender else {}
        after = {"date_sent_after": since} if since is not None else {}
        for found in self._asking(lambda: list(client.messages.stream(**to, **after, page_size=1000))) or []:
            if found.direction != "inbound":
                continue
            yield Event("sms", "reply", found.date_sent or found.date_created or datetime.now(timezone.utc),
                        recipient=found.from_ or "", text=found.body or "", event_id=found.sid)

    def _asking(self, ask: Any, *, missing_ok: bool = False) -> Any:
        """One question to Twilio for `sync`; a message Twilio no longer keeps (404) is None when ``missing_ok``."""
        import requests
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            with self.request() as go:
                if not go:
                    raise ChannelError("sync stopped: interrupted (Ctrl-C); what it read so far is recorded",
                                       hint="run `broadcast sync` again: it goes on from there")
                return ask()
        except TwilioRestException as error:
            if error.status == 404 and missing_ok:
                return None
            if error.status in (401, 403) or error.code == 20003:
                raise ChannelError(f"Twilio refused the credentials (HTTP {error.status}, code {error.code})",
                                   hint=CREDENTIALS_HINT) from None
            raise ChannelError(f"Twilio could not answer (HTTP {error.status}, code {error.code}): {mask(str(error.msg))}",
                               hint="run `broadcast sync` again later: what it read so far is recorded") from None
        except (TwilioException, requests.RequestException) as error:
            raise ChannelError(f"could not reach Twilio: {mask(str(error))[:200]}",
                               hint="check the network (and TWILIO_API_BASE_URL if you set it), then run `broadcast sync` again") from None

    def _refused(self, message: Message, error: TwilioRestException) -> Receipt:
        status, code = error.status, error.code
        said = mask(str(error.msg).removeprefix("Unable to create record: "))
        if status in (401, 403) or code == 20003:
            raise ChannelError(
                f"Twilio refused the credentials (HTTP {status}, code {code}): {said}", hint=CREDENTIALS_HINT
            )
        if code in SENDER_CODES:
            raise ChannelError(
                f"Twilio will not send from {self._sender_variable} (code {code}): {said}",
                hint=f"check {self._sender_variable}: it must be a message-capable sender of this Twilio account "
                "(a number you own, or a Messaging Service with numbers in its sender pool)",
            )
        if status == 404:
            raise ChannelError(
                f"Twilio does not know the Messages address for this account (HTTP 404): {said}",
                hint="check TWILIO_ACCOUNT_SID, and TWILIO_API_BASE_URL if you set it",
            )
        if status == 429 or code == 20429:
            # Twilio sends no Retry-After that the SDK exposes (TwilioRestException carries no headers),
            # so retry_after stays empty and send.py's jittered exponential backoff sets the pace.
            return _receipt(message, "retry", reason=f"Twilio is busy: too many requests at once ({code})")
        if status >= 500:
            return _receipt(message, "retry", reason=f"Twilio had a server error (HTTP {status}, code {code}): {said}")
        if code in RECIPIENT_REASONS:
            return _receipt(message, "failed", reason=RECIPIENT_REASONS[code], suppress=code == 21610)
        return _receipt(message, "failed", reason=f"Twilio refused the message (code {code}): {said}")

    def _reconcile(self, client: Client, message: Message, body: str, started: datetime, lost: str) -> Receipt:
        """The answer to a create was lost: look for the message in Twilio's list before deciding.

        Absence right after the attempt proves nothing: a request whose answer was lost may still be queued at
        Twilio and land a moment later, and sending it again then delivers it twice. So the message counts as
        never sent only when it is still absent SETTLE_TIMEOUTS client timeouts after the attempt started.
        """
        found = self._look_up(client, message, body, started)
        wait = (started + timedelta(seconds=self.timeout * SETTLE_TIMEOUTS) - datetime.now(timezone.utc)).total_seconds()
        if found is None and wait > 0:
            stop = self.stop or threading.Event()
            if stop.wait(wait):
                return _receipt(message, "unknown", reason=f"{lost}; not looked up again: interrupted (Ctrl-C)")
            found = self._look_up(client, message, body, started)
        if found is None:
            return _receipt(
                message, "retry", reason=f"{lost}; Twilio has no record of the message, so sending it again is safe"
            )
        return found

    def _look_up(self, client: Client, message: Message, body: str, started: datetime) -> Receipt | None:
        """The message in the recipient's newest messages: sent, unknown (Twilio could not be asked), or None."""
        import requests
        from twilio.base.exceptions import TwilioException

        sender = {"from_": self.settings.sender} if "from_" in self._sender else {}
        try:
            with self.request() as go:
                if not go:
                    return _receipt(message, "unknown", reason="answer lost; not looked up: interrupted (Ctrl-C)")
                recent = client.messages.list(to=message.recipient, **sender, limit=LOOKUP_LIMIT)
        # a failed list page raises the plain TwilioException, not TwilioRestException
        except (TwilioException, requests.RequestException):
            return _receipt(message, "unknown", reason="answer lost and Twilio could not be asked; may have been sent")
        since = started - CLOCK_SLACK
        # the name may have been corrected in the contacts since the attempt: any name in its place matches
        shape = _body_pattern(message)
        for found in recent:
            if found.date_created is None or found.date_created < since or found.body is None:
                continue
            if found.body == body or (shape is not None and shape.fullmatch(found.body)):
                return _receipt(message, "sent", provider_id=found.sid)
        return None


def _body_pattern(message: Message) -> re.Pattern[str] | None:
    """The SMS text with each per-recipient field as a wildcard, or None when it has none."""
    parts = re.split(r"%%[a-z_]+%%", message.rendering.text)
    if len(parts) == 1:
        return None
    return re.compile(r"[^\n]*".join(re.escape(part) for part in parts))


class _Sending:
    """The SDK's async client on an event loop in a thread of its own: ``create`` blocks the calling thread only.

    Measured against the fake at 50 ms latency (bench/scale.py, 2 CPUs), at 128 in flight the SDK's async client
    carried 1,594 SMS/s and its threaded client 605/s, at 0.40 against 1.39 ms of CPU per message: with one requests
    Session per thread, requests and urllib3 fill the GIL long before the provider is the limit. The sending threads, the --rate/--concurrency
    gate and Ctrl-C stay as they were: a thread takes its seat, hands the request to the loop and waits.
    """

    def __init__(self, settings: SmsSettings, timeout: float) -> None:
        import asyncio  # here, not at the top: `broadcast --help` loads this module

        from twilio.rest import Client

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sms-async", daemon=True)
        self._thread.start()
        self.http = self.run(_open_http(timeout))
        client = Client(settings.account_sid.reveal(), settings.auth_token.reveal(), http_client=self.http)
        if settings.base_url:
            client.api.base_url = settings.base_url
        # the SDK imports its Messages modules on first use: do that now, not inside the --rate gate
        self.messages = client.messages

    def run(self, coroutine: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def create(self, **form: Any) -> Any:
        """One Messages create; raises what the SDK and aiohttp raise, in the calling thread."""
        return self.run(self.messages.create_async(**form))

    def close(self) -> None:
        try:
            self.run(self.http.session.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()


class _AsyncHttp:
    """The SDK's async HTTP client interface over one aiohttp session, with our timeouts.

    twilio's AsyncTwilioHttpClient hands aiohttp the timeout of each call, which the SDK leaves None, and aiohttp
    reads None as no limit at all: an answer that never came would hold its sender for ever. Here connecting and
    each read are limited as the threaded client limits them, so a lost answer is looked up as before.
    """

    is_async = True

    def __init__(self, session: aiohttp.ClientSession, timeout: aiohttp.ClientTimeout) -> None:
        self.session, self.timeout = session, timeout

    async def request(self, method: str, url: str, params: Any = None, data: Any = None, headers: Any = None,
                      auth: tuple[str, str] | None = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Any:
        from twilio.http.response import Response

        if auth:
            headers = {**(headers or {}), "Authorization": _basic(*auth)}
        async with self.session.request(method.upper(), url, params=params, data=data, headers=headers,
                                        timeout=self.timeout, allow_redirects=allow_redirects) as answer:
            return Response(answer.status, await answer.text(), answer.headers)


@functools.cache
def _basic(login: str, password: str) -> str:
    """The Authorization header for HTTP basic auth (aiohttp deprecates its auth= for this)."""
    import base64

    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


async def _open_http(timeout: float) -> _AsyncHttp:
    """The session is made on the loop that uses it, as aiohttp requires. No connection limit of its own
    (aiohttp's default is 100): the sending threads and the gate already bound the requests in flight."""
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    return _AsyncHttp(session, aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout))


def _never_connected(error: BaseException) -> bool:
    """True when no request left: refused, no DNS answer, connect timeout, or a URL aiohttp would not even try."""
    import aiohttp

    return isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL,
                              aiohttp.NonHttpUrlClientError))


def _never_sent(error: requests.RequestException) -> bool:
    """True when the connection failed before the request went out: refused, no DNS answer, connect timeout,
    or a URL requests would not even try (no scheme, unknown scheme, bad host)."""
    import requests

    if isinstance(error, (requests.ConnectTimeout, requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                          requests.exceptions.MissingSchema)):
        return True
    from urllib3.exceptions import ConnectTimeoutError

    # requests wraps urllib3's MaxRetryError, whose reason says which step failed
    cause = error.args[0] if error.args else None
    return isinstance(getattr(cause, "reason", None), ConnectTimeoutError)


def _receipt(
    message: Message,
    status: Status,
    *,
    provider_id: str | None = None,
    reason: str | None = None,
    suppress: bool = False,
) -> Receipt:
    return Receipt(message.id, message.channel, message.recipient, status, provider_id, reason, suppress)
