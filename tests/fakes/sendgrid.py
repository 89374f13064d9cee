"""Local fake of SendGrid's v3 Mail Send API (POST /v3/mail/send)."""

from __future__ import annotations

import base64
import time
import uuid
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
        super().__init__(validate=validate, latency=latency, faults=faults)

    def _reset_state(self) -> None:
        self.sandboxed.clear()

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
        if sandbox:
            return Reply(200)
        return Reply(202, headers={"X-Message-Id": message_id})

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
