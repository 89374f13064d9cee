"""Local fake of Twilio's Programmable Messaging API (create, fetch and list Messages, 2010-04-01)."""

from __future__ import annotations

import base64
import math
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

from tests.fakes import credentials
from tests.fakes.server import Delivery, FakeServer, Faults, RecordedRequest, Reply

MAX_BODY = 1600
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# Twilio's codes for plain HTTP failures; the specific refusals below carry their own.
_STATUS_CODES = {401: 20003, 404: 20404, 405: 20004, 429: 20429, 500: 20500, 503: 20503}

# GSM 03.38: the basic set costs one septet a character, the extension set two (escape + char).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = set("^{}\\[~]|€\f")


def num_segments(body: str) -> int:
    """SMS segments for a body: GSM-7 160/153 per segment; one non-GSM character makes it UCS-2, 70/67."""
    if all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in body):
        units = sum(2 if char in _GSM_EXTENSION else 1 for char in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)


class TwilioFake(FakeServer):
    """Twilio Messages: Basic auth, the From/MessagingServiceSid rule, body limit, and scripted refusals.

    Put numbers in ``invalid_numbers`` (21211), ``unsubscribed`` (21610, the recipient sent STOP)
    or ``region_disabled`` (21408). ``messages`` holds every accepted Message resource, which the
    list endpoint serves so a sender can look a message up after losing the answer to its create.

    Delivery over fake time: a message is "sent" when accepted; once the fake's clock has moved ``settle_after``
    seconds past its creation (``advance``), it is "delivered", or what ``outcome(to, …)`` scripted for its number
    ("undelivered" with error 30003, …). ``inbound(from_, body)`` puts a reply in the list, direction "inbound".
    """

    provider = "twilio"

    def __init__(
        self,
        *,
        account_sid: str = credentials.TWILIO_ACCOUNT_SID,
        auth_token: str = credentials.TWILIO_AUTH_TOKEN,
        validate: bool = True,
        latency: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.invalid_numbers: set[str] = set()
        self.unsubscribed: set[str] = set()
        self.region_disabled: set[str] = set()
        self.messages: list[dict[str, Any]] = []
        #: messages people sent to our numbers (``inbound``), served by the list with direction "inbound"
        self.inbound_messages: list[dict[str, Any]] = []
        #: number → (final status, error code, error message) once the message settles; default "delivered"
        self.outcomes: dict[str, tuple[str, int | None, str | None]] = {}
        #: seconds of fake time after its creation at which a message reaches its final status
        self.settle_after = 5.0
        #: how far the fake's clock runs ahead of the real one (``advance``)
        self.offset = timedelta()
        #: answer message fetches with 503 once this many have been answered (an outage in the middle of a sync)
        self.outage_after: int | None = None
        self.fetches = 0
        #: every accepted Call resource, with the TwiML it was given ("twiml"), in order
        self.calls: list[dict[str, Any]] = []
        #: numbers a call is refused to (13224: Twilio cannot call this number)
        self.uncallable: set[str] = set()
        self._basic = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        super().__init__(validate=validate, latency=latency, faults=faults)

    @property
    def messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    @property
    def calls_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Calls.json"

    def _reset_state(self) -> None:
        self.messages.clear()
        self.calls.clear()
        self.inbound_messages.clear()

    # -- fake time, scripted outcomes and replies ---------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0) + self.offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock on: messages older than ``settle_after`` reach their final status."""
        with self._lock:
            self.offset += timedelta(seconds=seconds)

    def outcome(self, to: str, status: str, *, error_code: int | None = None, error_message: str | None = None) -> None:
        """Script how the message to ``to`` ends: "delivered", "undelivered", "failed" (with Twilio's error code)."""
        self.outcomes[to] = (status, error_code, error_message)

    def inbound(self, from_: str, body: str, *, to: str = credentials.TWILIO_FROM) -> dict[str, Any]:
        """A person texts ``body`` to our number: the list serves it, direction "inbound", status "received"."""
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(self.now())
        message = {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": body, "date_created": now,
            "date_sent": now, "date_updated": now, "direction": "inbound", "error_code": None, "error_message": None,
            "from": from_, "messaging_service_sid": None, "num_media": "0", "num_segments": str(num_segments(body)),
            "price": None, "price_unit": "USD", "sid": sid, "status": "received",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": to, "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        with self._lock:
            self.inbound_messages.append(message)
        return message

    def _view(self, message: dict[str, Any]) -> dict[str, Any]:
        """The message as Twilio shows it now, on the fake's clock."""
        if message["direction"] != "outbound-api":
            return message
        settles = parsedate_to_datetime(message["date_created"]) + timedelta(seconds=self.settle_after)
        if self.now() < settles:
            return message
        status, code, said = self.outcomes.get(message["to"], ("delivered", None, None))
        return {**message, "status": status, "error_code": code, "error_message": said,
                "date_updated": format_datetime(settles)}

    def authorized(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == self._basic

    def unauthorized_reply(self) -> Reply:
        reply = self.error_reply(401, "Authenticate")
        reply.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return reply

    def error_reply(self, status: int, message: str, code: int | None = None) -> Reply:
        code = code if code is not None else _STATUS_CODES.get(status, 20001)
        return Reply(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def invalid_reply(self, errors: list[str]) -> Reply:
        return self.error_reply(400, "Invalid parameter: " + "; ".join(errors), 20001)

    def route(self, request: RecordedRequest) -> Reply:
        if request.path == self.calls_path and request.method == "POST":
            return self._call(request.body if isinstance(request.body, dict) else {})
        if request.path == self.calls_path and request.method == "GET":
            return self._list_calls(request.query)
        one = re.fullmatch(rf"/2010-04-01/Accounts/{self.account_sid}/Messages/(\w+)\.json", request.path)
        if one and request.method == "GET":
            return self._fetch(one.group(1))
        if request.path != self.messages_path:
            return self.error_reply(404, f"The requested resource {request.path} was not found")
        if request.method == "POST":
            return self._create(request.body if isinstance(request.body, dict) else {})
        if request.method == "GET":
            return self._list(request.query)
        return self.error_reply(405, "Method not allowed")

    def _create(self, form: dict[str, Any]) -> Reply:
        to, sender, service = form.get("To"), form.get("From"), form.get("MessagingServiceSid")
        body, media = form.get("Body", ""), form.get("MediaUrl")
        if not to:
            return self.error_reply(400, "A 'To' phone number is required.", 21604)
        if not sender and not service:
            return self.error_reply(400, "A 'From' or 'MessagingServiceSid' parameter is required", 21603)
        if sender and service:
            return self.error_reply(400, "Use either 'From' or 'MessagingServiceSid', not both.", 21603)
        if not body and not media and not form.get("ContentSid"):
            return self.error_reply(400, "Message body is required.", 21602)
        if len(body) > MAX_BODY:
            return self.error_reply(
                400, f"The concatenated message body exceeds the {MAX_BODY} character limit.", 21617
            )
        if to in self.invalid_numbers or not _E164.match(to.removeprefix("whatsapp:")):
            return self.error_reply(400, f"Invalid 'To' Phone Number: {to}", 21211)
        if to in self.region_disabled:
            return self.error_reply(
                400,
                f"Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}",
                21408,
            )
        if to in self.unsubscribed:
            return self.error_reply(400, "Attempt to send to unsubscribed recipient", 21610)

        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(self.now())
        message = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": str(len(media) if isinstance(media, list) else int(bool(media))),
            "num_segments": str(num_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # A Messaging Service first "accepts" a message and picks a sender later.
            "status": "queued" if sender else "accepted",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        # The stored copy is what a later list shows: by then the message has gone out.
        self.messages.append({**message, "status": "sent", "date_sent": now})
        self.deliveries.append(
            Delivery(
                to,
                {
                    "sid": sid,
                    "from": sender or None,
                    "messaging_service_sid": service or None,
                    "body": body,
                    "num_segments": message["num_segments"],
                    "status_callback": form.get("StatusCallback"),
                },
            )
        )
        return Reply(201, message)

    def _call(self, form: dict[str, Any]) -> Reply:
        """Calls create: To and From (the spec requires both), and exactly one of Url, Twiml or ApplicationSid."""
        to, sender = form.get("To", ""), form.get("From", "")
        given = [name for name in ("Url", "Twiml", "ApplicationSid") if form.get(name)]
        if len(given) != 1:
            return self.error_reply(400, "Exactly one of Url, Twiml or ApplicationSid is required.", 21205)
        if len(form.get("Twiml", "")) > 4000:
            return self.error_reply(400, "Twiml is over 4000 characters.", 21232)
        if not _E164.match(sender):
            return self.error_reply(400, f"The source phone number provided, {sender}, is not yet verified.", 21210)
        if to in self.invalid_numbers or not _E164.match(to):
            return self.error_reply(400, f"The phone number you are attempting to call, {to}, is not valid.", 13223)
        if to in self.uncallable:
            return self.error_reply(400, f"Twilio cannot call {to}.", 13224)
        sid = "CA" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC).replace(microsecond=0))
        call = {
            "account_sid": self.account_sid, "annotation": None, "answered_by": None, "api_version": "2010-04-01",
            "caller_name": None, "date_created": now, "date_updated": now, "direction": "outbound-api",
            "duration": None, "end_time": None, "forwarded_from": None, "from": sender, "from_formatted": sender,
            "group_sid": None, "parent_call_sid": None, "phone_number_sid": None, "price": None, "price_unit": "USD",
            "queue_time": "0", "sid": sid, "start_time": None, "status": "queued", "subresource_uris": {},
            "to": to, "to_formatted": to, "trunk_sid": None, "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
        }
        self.calls.append({**call, "twiml": form.get("Twiml")})
        # kept apart from ``deliveries``, which count SMS
        return Reply(201, call)

    def _list_calls(self, query: dict[str, str]) -> Reply:
        """Calls, newest first, filtered by To and From; StartTime filters match only calls that have started,
        as Twilio's do (a queued call has no start_time). One page is enough for a sender's look-up."""
        if any(name.startswith("StartTime") for name in query):
            matches: list[dict[str, Any]] = []  # every call here is still queued: none has a start time
        else:
            matches = [
                {k: v for k, v in call.items() if k != "twiml"}
                for call in reversed(self.calls)
                if query.get("To", call["to"]) == call["to"] and query.get("From", call["from"]) == call["from"]
            ]
        page_size = min(int(query.get("PageSize", 50)), 1000)
        uri = self.calls_path + "?" + urlencode([*query.items()])
        chunk = matches[:page_size]
        return Reply(200, {
            "calls": chunk, "start": 0, "end": max(len(chunk) - 1, 0), "page": 0, "page_size": page_size,
            "uri": uri, "first_page_uri": uri, "next_page_uri": None, "previous_page_uri": None,
        })
    def _fetch(self, sid: str) -> Reply:
        """Fetch one Message by its SID, as it is now on the fake's clock."""
        if self.outage_after is not None and self.fetches >= self.outage_after:
            return self.error_reply(503, "Service Unavailable")
        self.fetches += 1
        for message in (*self.messages, *self.inbound_messages):
            if message["sid"] == sid:
                return Reply(200, self._view(message))
        return self.error_reply(404, f"The requested resource /Messages/{sid}.json was not found")

    def _list(self, query: dict[str, str]) -> Reply:
        """Newest first, filtered like Twilio: To, From, and DateSent / DateSent< / DateSent> by GMT day, inclusive."""
        try:
            on, before, after = (
                _day(query[name]) if name in query else None for name in ("DateSent", "DateSent<", "DateSent>")
            )
            page = int(query.get("Page", 0))
            page_size = min(int(query.get("PageSize", 50)), 1000)
        except ValueError as error:
            return self.error_reply(400, f"Invalid parameter: {error}", 20001)

        def wanted(message: dict[str, Any]) -> bool:
            sent = parsedate_to_datetime(message["date_sent"]).date()
            return (
                query.get("To", message["to"]) == message["to"]
                and query.get("From", message["from"]) == message["from"]
                and (on is None or sent == on)
                and (before is None or sent <= before)
                and (after is None or sent >= after)
            )

        everything = sorted((*self.messages, *self.inbound_messages), key=lambda m: parsedate_to_datetime(m["date_created"]))
        matches = [self._view(message) for message in reversed(everything) if wanted(message)]
        start = page * page_size
        chunk = matches[start : start + page_size]
        filters = [(name, value) for name, value in query.items() if name not in ("Page", "PageSize", "PageToken")]

        def page_uri(number: int) -> str:
            token = [("PageToken", f"PASM{number * page_size}")] if number else []
            return self.messages_path + "?" + urlencode([*filters, ("PageSize", page_size), ("Page", number), *token])

        return Reply(
            200,
            {
                "messages": chunk,
                "start": start,
                "end": start + len(chunk) - 1 if chunk else start,
                "page": page,
                "page_size": page_size,
                "uri": page_uri(page),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if start + page_size < len(matches) else None,
                "previous_page_uri": page_uri(page - 1) if page else None,
            },
        )


def _day(value: str) -> date:
    """Twilio filters by GMT day; it takes YYYY-MM-DD, ISO 8601 and RFC 2822 forms."""
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).astimezone(UTC).date()
    except (TypeError, ValueError):
        raise ValueError(f"cannot read date {value!r}") from None
