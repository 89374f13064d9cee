"""Local fake of SendGrid's v3 Mail Send API (POST /v3/mail/send) and Email Activity API (GET /v3/messages)."""

from __future__ import annotations

import base64
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes import credentials
from tests.fakes.server import Delivery, FakeServer, Faults, RecordedRequest, Reply

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


class SendGridFake(FakeServer):
    """SendGrid Mail Send: bearer auth, limits, sandbox mode, and addresses scripted to be refused.

    A delivery is one ``to`` address of one personalization. ``reject_emails`` makes SendGrid refuse
    the whole request (400, no delivery at all), as it does for an address it cannot accept.
    """

    provider = "sendgrid"
    # The Email Activity API is not in the mail_v3 spec we validate against. Its shape here follows SendGrid's own
    # OpenAPI document for it, twilio/sendgrid-oai spec/json/tsg_email_activity_v3.json (ListMessage, GetMessage):
    # a list of {from_email, msg_id, subject, to_email, status, opens_count, clicks_count, last_event_time} and a
    # message's events [{event_name, processed, reason, bounce_type, …}]; the fake checks the query itself.
    outside_spec = ("/v3/messages",)
    max_personalizations = 1000
    max_recipients = 1000  # to + cc + bcc over all personalizations

    def __init__(
        self,
        *,
        api_key: str = credentials.SENDGRID_API_KEY,
        validate: bool = True,
        latency: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        self.api_key = api_key
        self.reject_emails: set[str] = set()
        self.sandboxed: list[Delivery] = []
        #: False: the key lacks the Email Activity add-on, and GET /v3/messages answers 403
        self.activity_access = True
        #: address → (event_name, reason, bounce_type) the message to it ends with; default "delivered"
        self.outcomes: dict[str, tuple[str, str, str]] = {}
        #: every message SendGrid split a request into: one per recipient, with its own msg_id
        self.activity: list[dict[str, Any]] = []
        super().__init__(validate=validate, latency=latency, faults=faults)

    def _reset_state(self) -> None:
        self.sandboxed.clear()
        self.activity.clear()

    def outcome(self, email: str, event: str, *, reason: str = "", bounce_type: str = "") -> None:
        """Script how the message to ``email`` ends: "bounced" (bounce_type "hard" or "soft"), "dropped",
        "deferred", or "delivered" (the default)."""
        self.outcomes[email.lower()] = (event, reason, bounce_type)

    def authorized(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def unauthorized_reply(self) -> Reply:
        return self.error_reply(401, "The provided authorization grant is invalid, expired, or revoked")

    def error_reply(self, status: int, message: str, field: str | None = None, help_url: str | None = None) -> Reply:
        return Reply(status, {"errors": [{"message": message, "field": field, "help": help_url}]})

    def invalid_reply(self, errors: list[str]) -> Reply:
        return Reply(400, {"errors": [{"message": error, "field": None, "help": HELP} for error in errors]})

    def rate_limit_headers(self, retry_after: int) -> dict[str, str]:
        return {
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + retry_after),
        }

    def route(self, request: RecordedRequest) -> Reply:
        if request.path.startswith("/v3/messages"):
            return self._activity(request)
        if request.path != "/v3/mail/send":
            return self.error_reply(404, "Not Found")
        if request.method != "POST":
            return self.error_reply(405, "Method Not Allowed")
        mail = request.body
        refusal = self._refusal(mail)
        if refusal is not None:
            return refusal
        personalizations = mail["personalizations"]
        sandbox = (mail.get("mail_settings") or {}).get("sandbox_mode", {}).get("enable") is True
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        accepted = self.sandboxed if sandbox else self.deliveries
        for index, personalization in enumerate(personalizations):
            for to in personalization.get("to") or []:
                accepted.append(Delivery(to["email"], _summary(mail, index, message_id)))
                if not sandbox:
                    self.activity.append(self._activity_row(message_id, index, mail, to["email"]))
        if sandbox:
            return Reply(200)
        return Reply(202, headers={"X-Message-Id": message_id})

    def _activity_row(self, message_id: str, index: int, mail: dict[str, Any], to: str) -> dict[str, Any]:
        event, reason, bounce_type = self.outcomes.get(to.lower(), ("delivered", "", ""))
        # the outcome is known at once, as if the mail had been processed two seconds before
        final = datetime.now(UTC).replace(microsecond=0)
        processed = final - timedelta(seconds=2)
        events = [{"event_name": "processed", "processed": _iso(processed)}]
        if event != "processed":
            events.append({"event_name": event, "processed": _iso(final), "reason": reason, "bounce_type": bounce_type})
        status = {"processed": "processed", "delivered": "delivered", "deferred": "processed"}.get(event, "not_delivered")
        return {
            "from_email": (mail.get("from") or {}).get("email", ""),
            "msg_id": f"{message_id}.filter0001.{index}.{uuid.uuid4().hex[:8].upper()}.0",
            "subject": mail["personalizations"][index].get("subject", mail.get("subject", "")),
            "to_email": to, "status": status, "opens_count": 0, "clicks_count": 0,
            "last_event_time": events[-1]["processed"], "events": events,
        }

    def _activity(self, request: RecordedRequest) -> Reply:
        """GET /v3/messages?query=… (ListMessage) and GET /v3/messages/{msg_id} (GetMessage)."""
        if request.method != "GET":
            return self.error_reply(405, "Method Not Allowed")
        if not self.activity_access:
            # what SendGrid answers a key without the Email Activity add-on or its scope
            return Reply(403, {"errors": [{"field": None, "message": "access forbidden"}]})
        one = re.fullmatch(r"/v3/messages/([^/]+)", request.path)
        if one:
            for row in self.activity:
                if row["msg_id"] == one.group(1):
                    return Reply(200, {**row, "template_id": "", "asm_group_id": 1, "teammate": "", "api_key_id": "key",
                                       "categories": [], "unique_args": "Null", "originating_ip": "127.0.0.1",
                                       "outbound_ip": "127.0.0.1", "outbound_ip_type": "shared"})
            return Reply(404, {"errors": [{"message": "message not found"}]})
        if request.path != "/v3/messages":
            return self.error_reply(404, "Not Found")
        query = request.query.get("query", "")
        limit = request.query.get("limit", "10")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            return Reply(400, {"errors": [{"message": "limit must be from 1 to 1000"}]})
        # the query forms broadcast uses: msg_id LIKE '<X-Message-Id>%' and to_email="<address>"
        like = re.fullmatch(r"msg_id LIKE '([^'%]+)%'", query)
        to = re.fullmatch(r'to_email="([^"]+)"', query)
        if like is None and to is None:
            return Reply(400, {"errors": [{"message": f"invalid syntax: {query!r}"}]})
        rows = [
            {k: v for k, v in row.items() if k != "events"}
            for row in self.activity
            if (like and row["msg_id"].startswith(like.group(1))) or (to and row["to_email"] == to.group(1))
        ]
        return Reply(200, {"messages": rows[: int(limit)]})

    def _refusal(self, mail: Any) -> Reply | None:
        """The 400 SendGrid answers for this mail, or None if it takes it; checks what the spec cannot."""
        if (
            not isinstance(mail, dict)
            or not isinstance(mail.get("personalizations"), list)
            or not mail["personalizations"]
        ):
            return self.error_reply(
                400,
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                HELP + "#-Personalizations-Errors",
            )
        personalizations = mail["personalizations"]
        if len(personalizations) > self.max_personalizations:
            return self.error_reply(
                400,
                f"The personalizations field must have no more than {self.max_personalizations} items; "
                f"this request has {len(personalizations)}.",
                "personalizations",
                HELP + "#-Personalizations-Errors",
            )
        recipients = sum(len(p.get(kind) or []) for p in personalizations for kind in ("to", "cc", "bcc"))
        if recipients > self.max_recipients:
            return self.error_reply(
                400,
                f"The total number of recipients must be no more than {self.max_recipients}; "
                f"this request has {recipients}.",
                "personalizations",
                HELP + "#-Personalizations-Errors",
            )
        rejected = {address.lower() for address in self.reject_emails}
        for index, personalization in enumerate(personalizations):
            for position, to in enumerate(personalization.get("to") or []):
                if not isinstance(to, dict) or not to.get("email"):
                    return self.error_reply(
                        400, "The to email is required.", f"personalizations.{index}.to.{position}.email", HELP
                    )
                if to["email"].lower() in rejected:
                    return self.error_reply(
                        400,
                        "Does not contain a valid address.",
                        f"personalizations.{index}.to.{position}.email",
                        HELP + "#message.personalizations.to",
                    )
            if "substitutions" in personalization and "dynamic_template_data" in personalization:
                return self.error_reply(
                    400,
                    "Substitutions may not be used with dynamic templating",
                    f"personalizations.{index}.substitutions",
                    HELP + "#message.personalizations.substitutions",
                )
        return None


def _summary(mail: dict[str, Any], index: int, message_id: str) -> dict[str, Any]:
    """What one recipient's message would carry; personalization values override the top-level ones."""
    personalization = mail["personalizations"][index]
    return {
        "message_id": message_id,
        "personalization": index,
        "from": (mail.get("from") or {}).get("email"),
        "subject": personalization.get("subject", mail.get("subject")),
        "template_id": mail.get("template_id"),
        "substitutions": personalization.get("substitutions", {}),
        "dynamic_template_data": personalization.get("dynamic_template_data", {}),
        "custom_args": {**(mail.get("custom_args") or {}), **personalization.get("custom_args", {})},
        "text": _plain_text(mail, personalization),
    }


def _plain_text(mail: dict[str, Any], personalization: dict[str, Any]) -> str:
    """The text/plain part as this recipient reads it: the shared content with their substitutions made."""
    text = next((c.get("value", "") for c in mail.get("content") or [] if c.get("type") == "text/plain"), "")
    for key, value in (personalization.get("substitutions") or {}).items():
        text = text.replace(key, str(value))
    return text


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
