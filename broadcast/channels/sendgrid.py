"""The email channel: SendGrid v3 mail/send, one request per batch, each recipient personalized by substitutions."""

from __future__ import annotations

import html
import http.client
import json
import re
import time
import urllib.error
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the SDK is imported where a client is built, so check and preview read this module cheaply
    from datetime import datetime

    from python_http_client.exceptions import HTTPError

    from broadcast.notice import LocalNotice
    from broadcast.results import Sent

from broadcast.channels.base import Channel, RenderOptions
from broadcast.config import Env, Secret, email_sender, mask, provider_timeout
from broadcast.errors import ChannelError
from broadcast.message import INTERRUPTED, Message, Receipt, Rendering, Status, placeholder
from broadcast.results import Event
from broadcast.text import tidy

#: SendGrid takes at most 1000 personalizations and 1000 recipients (to + cc + bcc) per request
MAX_RECIPIENTS = 1000
#: SendGrid's limit on the keys and values of one personalization's substitutions, in UTF-8 bytes
MAX_SUBSTITUTION_BYTES = 10_000

SANDBOX_REASON = "SendGrid sandbox: accepted, not delivered"
ANSWER_LOST = "answer lost: SendGrid may have accepted this batch; not retried automatically to avoid sending twice"
_KEY_HINT = "check SENDGRID_API_KEY, and that the key has the Mail Send permission"
_SENDER_HINT = "verify BROADCAST_EMAIL_FROM (or its domain) as a Sender Identity in SendGrid, or set it to one that is"

#: what `sync` says when the key cannot read the Email Activity API
NO_ACTIVITY = ("SendGrid's Email Activity API is not available to this key (it is a paid add-on): email delivery "
               "results need `broadcast serve` and the Event Webhook")
#: an Email Activity event, in results.Event kinds; a soft bounce ("blocked", "soft") is no reason to suppress
ACTIVITY_KINDS = {"processed": "queued", "deferred": "deferred", "delivered": "delivered", "dropped": "dropped",
                  "bounced": "bounced", "spam_report": "spamreport", "unsubscribe": "unsubscribe",
                  "group_unsubscribe": "unsubscribe"}

#: a 400 error field that names one personalization, i.e. one recipient: "personalizations.3.to.0.email"
_RECIPIENT_FIELD = re.compile(r"personalizations\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class _Answer:
    """What one mail/send request came to, for every message it carried."""

    status: Status
    reason: str | None = None
    provider_id: str | None = None
    retry_after: float | None = None
    #: a 400 that names recipients: personalization index → SendGrid's words; nothing was delivered
    refused: Mapping[int, str] = field(default_factory=dict)
    #: a 413: the request body was too large, so a smaller request may go through
    too_large: bool = False


SENDGRID_HOST = "https://api.sendgrid.com"

#: Event Webhook events in results.Event kinds (`broadcast serve`); a "bounce" of type "blocked" is a soft one
WEBHOOK_KINDS = {
    "processed": "queued", "deferred": "deferred", "delivered": "delivered", "dropped": "dropped", "bounce": "bounced",
    "spamreport": "spamreport", "unsubscribe": "unsubscribe", "group_unsubscribe": "unsubscribe", "open": "open",
}


@dataclass(frozen=True)
class EmailSettings:
    api_key: Secret
    sender: str
    sender_name: str | None
    host: str
    sandbox: bool = False

    @classmethod
    def from_env(cls, env: Env) -> EmailSettings | None:
        """SENDGRID_API_KEY and BROADCAST_EMAIL_FROM ('Name <addr>' or an address); --sandbox from the run."""
        api_key, host = env.secret("SENDGRID_API_KEY"), env.url("SENDGRID_API_HOST")
        sender_name, sender, wrong = None, env.get("BROADCAST_EMAIL_FROM"), None
        if sender:
            sender_name, sender, wrong = email_sender(sender)
            if wrong:
                env.problem(f"BROADCAST_EMAIL_FROM={env.get('BROADCAST_EMAIL_FROM')!r} {wrong}")
        if not env.need("SENDGRID_API_KEY", "BROADCAST_EMAIL_FROM") or api_key is None:
            return None
        return cls(
            api_key=api_key,
            sender=sender,
            # BROADCAST_EMAIL_FROM_NAME, when set, names the sender over the name in BROADCAST_EMAIL_FROM
            sender_name=env.get("BROADCAST_EMAIL_FROM_NAME") or sender_name or None,
            host=host or SENDGRID_HOST,
            sandbox=bool(env.option("sandbox", False)),
        )


class SendGridChannel(Channel):
    """Sends a batch sharing one rendering as one mail with one personalization per recipient."""

    name: ClassVar[str] = "email"
    title: ClassVar[str] = "Email"
    provider: ClassVar[str] = "SendGrid"
    address: ClassVar[str] = "email"
    aliases: ClassVar[tuple[str, ...]] = ("e-mail",)
    templates: ClassVar[Mapping[str, str]] = {
        "subject": "email/subject.txt.j2", "html": "email/body.html.j2", "text": "email/body.txt.j2",
    }
    # an emergency may reach people who unsubscribed from email, if the notice says so (notice.override_suppressions)
    overridable_suppressions: ClassVar[bool] = True
    settings: ClassVar[type[EmailSettings]] = EmailSettings
    secrets: ClassVar[tuple[str, ...]] = ("SENDGRID_API_KEY",)
    host_variable: ClassVar[str] = "SENDGRID_API_HOST"
    max_batch: ClassVar[int] = MAX_RECIPIENTS
    max_concurrency: ClassVar[int] = 4

    def __init__(self, settings: EmailSettings, *, timeout: float | None = None, **run: Any) -> None:
        from sendgrid import SendGridAPIClient

        super().__init__(settings, **run)
        self.settings = settings
        self.timeout = provider_timeout() if timeout is None else timeout
        self._client = SendGridAPIClient(settings.api_key.reveal(), host=settings.host)

    @classmethod
    def shape(cls, rendering: Rendering, parts: Mapping[str, str], options: RenderOptions, local: LocalNotice) -> Rendering:
        return replace(rendering, subject=" ".join(parts["subject"].split()), html=parts["html"], text=tidy(parts["text"]))

    def results(self, since: datetime | None, messages: Sequence[Sent]) -> Iterator[Event]:
        """Each message's events from the Email Activity API (a paid add-on): one query per mail/send request
        (``msg_id LIKE '<X-Message-Id>%'``), and the message's own events for one not delivered. Email has no
        replies here: ``since`` is not used."""
        by_request: dict[str, set[str]] = {}
        for sent in messages:
            by_request.setdefault(sent.provider_id, set()).add(sent.recipient.lower())
        for request_id, recipients in by_request.items():
            found = self._activity(lambda request_id=request_id: self._client.client.messages.get(
                query_params={"query": f"msg_id LIKE '{request_id}%'", "limit": MAX_RECIPIENTS}, timeout=self.timeout))
            for row in found.get("messages", []):
                if str(row.get("to_email", "")).lower() not in recipients:
                    continue
                if row.get("status") == "not_delivered":
                    detail = self._activity(lambda row=row: self._client.client.messages._(row["msg_id"]).get(timeout=self.timeout))
                    yield from _activity_events(request_id, row["to_email"], detail.get("events", []))
                else:
                    yield from _activity_events(request_id, row["to_email"], [
                        {"event_name": row.get("status"), "processed": row.get("last_event_time")}])

    def _activity(self, ask: Any) -> dict[str, Any]:
        """One Email Activity request; a key without the add-on is ResultsUnavailable, other failures ChannelError."""
        from python_http_client.exceptions import HTTPError

        from broadcast.results import ResultsUnavailable

        try:
            with self.request() as go:
                if not go:
                    raise ChannelError("sync stopped: interrupted (Ctrl-C); what it read so far is recorded",
                                       hint="run `broadcast sync` again: it goes on from there")
                response = ask()
        except HTTPError as exc:
            if exc.status_code in (401, 403):
                raise ResultsUnavailable(
                    NO_ACTIVITY, hint="buy the Email Activity add-on and give the key its scope, or run `broadcast serve`"
                ) from None
            raise ChannelError(f"SendGrid's Email Activity API answered HTTP {exc.status_code}",
                               hint="run `broadcast sync` again later: what it read so far is recorded") from None
        except (OSError, http.client.HTTPException, urllib.error.URLError) as exc:
            raise ChannelError(f"could not reach SendGrid: {mask(str(exc))[:200]}",
                               hint="check the network (and SENDGRID_API_HOST if you set it), then run `broadcast sync` again") from None
        try:
            return json.loads(response.body or b"{}")
        except ValueError:
            raise ChannelError("SendGrid's Email Activity API answered something that is not JSON",
                               hint="run `broadcast sync` again later") from None

    @classmethod
    def address_key(cls, address: str) -> str:
        # an address is matched whatever its case: One@x and one@x are one person, who opted out once
        return address.casefold()

    @classmethod
    def ledger_key(cls, address: str) -> str:
        # the ledger keys an email lower-cased: One@x and one@x are one person (kept as it was: it is in every row)
        return address.lower()

    @classmethod
    def webhook_events(cls, items: Sequence[Any]) -> list[Event]:
        """SendGrid Event Webhook events (the posted JSON array) as Events; a click or a resubscribe says nothing the
        ledger keeps. ValueError naming the first event that is not one."""
        from datetime import UTC, datetime

        out = []
        for number, item in enumerate(items, 1):
            stamp = item.get("timestamp") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(item.get("event"), str) or not isinstance(item.get("email"), str) \
                    or isinstance(stamp, bool) or not isinstance(stamp, int | float):
                raise ValueError(f"event {number} has no event name, email or numeric timestamp")
            kind = WEBHOOK_KINDS.get(item["event"])
            if kind is None:
                continue
            if kind == "bounced" and item.get("type") == "blocked":
                kind = "undelivered"  # a soft bounce (a full mailbox, a block list): no reason to stop writing to them
            try:
                at = datetime.fromtimestamp(stamp, UTC)
            except (OverflowError, OSError, ValueError):
                raise ValueError(f"event {number} has a timestamp out of range") from None
            # sg_message_id is the X-Message-Id the send recorded, then ".filter…": one id for every recipient of a
            # mail/send request, so the address tells its messages apart (each also carries broadcast_message)
            provider_id = str(item.get("sg_message_id") or "").split(".", 1)[0]
            out.append(Event(cls.name, kind, at, provider_id=provider_id, recipient=item["email"],  # type: ignore[arg-type]
                             reason=str(item.get("reason") or item.get("response") or ""),
                             event_id=str(item.get("sg_event_id") or "")))
        return out

    @classmethod
    def stats(cls, rendering: Rendering) -> dict[str, Any]:
        return {"subject": rendering.subject}

    @classmethod
    def readable(cls, rendering: Rendering) -> str:
        return f"{rendering.subject}\n\n{rendering.text}"

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        receipts: dict[str, Receipt] = {}
        parts: deque[list[Message]] = deque()
        # send.py already hands over batches of one rendering within the limit; grouping again keeps any caller safe
        groups: dict[Rendering, list[Message]] = {}
        # built once per recipient: checked against SendGrid's limit here, sent in _mail
        # (a local, not an attribute: up to max_concurrency sends run at once on one adapter)
        subs = {m.id: _substitutions(m) for m in messages}
        for message in messages:
            size = sum(len(key.encode()) + len(value.encode()) for key, value in subs[message.id].items())
            if size > MAX_SUBSTITUTION_BYTES:
                receipts[message.id] = _receipt(
                    message,
                    "failed",
                    reason=f"the contact's name is too long for SendGrid: {size:,} bytes of substitutions, "
                    f"SendGrid allows {MAX_SUBSTITUTION_BYTES:,}",
                )
            else:
                groups.setdefault(message.rendering, []).append(message)
        for group in groups.values():
            parts.extend(group[i : i + MAX_RECIPIENTS] for i in range(0, len(group), MAX_RECIPIENTS))

        # Each pass settles a part, drops at least one refused recipient from it, or halves it,
        # so the loop ends after at most three requests per message.
        while parts:
            part = parts.popleft()
            answer = self._post(part, subs)
            if answer.refused:
                for index, words in answer.refused.items():
                    receipts[part[index].id] = _receipt(part[index], "failed", reason=f"SendGrid refused this recipient: {words}")
                # SendGrid took none of the request, so everyone it did not name goes again at once
                rest = [m for i, m in enumerate(part) if i not in answer.refused]
                if rest:
                    parts.appendleft(rest)
            elif answer.too_large and len(part) > 1:
                half = len(part) // 2
                parts.extendleft([part[half:], part[:half]])
            else:
                for message in part:
                    receipts[message.id] = _receipt(
                        message, answer.status, answer.provider_id, answer.reason, answer.retry_after
                    )
        return [receipts[m.id] for m in messages]

    def _post(self, part: list[Message], subs: Mapping[str, dict[str, str]]) -> _Answer:
        from python_http_client.exceptions import HTTPError

        mail = self._mail(part, subs)
        try:
            with self.request() as go:
                if not go:
                    return _Answer("not_started", reason=INTERRUPTED)
                response = self._client.client.mail.send.post(request_body=mail, timeout=self.timeout)
        except HTTPError as exc:
            return self._refusal(exc, len(part))
        except urllib.error.URLError as exc:
            # urllib wraps only what fails before the request is fully written (connection refused, DNS,
            # connect timeout), so SendGrid cannot have taken this batch and sending it again is safe
            return _Answer("retry", reason=mask(f"could not reach SendGrid at {self.settings.host}: {exc.reason}"))
        except (ValueError, http.client.InvalidURL) as exc:
            raise ChannelError(
                mask(f"SENDGRID_API_HOST={self.settings.host!r} is not a URL SendGrid can be reached at: {exc}"),
                hint="leave SENDGRID_API_HOST unset for https://api.sendgrid.com, or give a full URL like https://api.eu.sendgrid.com",
            ) from None
        except (OSError, http.client.HTTPException):
            # The request went out and the answer did not come back (read timeout, RemoteDisconnected,
            # reset, IncompleteRead): SendGrid has no idempotency key, so only a person can decide to resend
            return _Answer("unknown", reason=ANSWER_LOST)
        message_id = response.headers.get("X-Message-Id")
        # in sandbox mode SendGrid validates the mail and answers 200 instead of 202, delivering nothing
        if self.settings.sandbox and response.status_code == 200:
            return _Answer("previewed", reason=SANDBOX_REASON, provider_id=message_id)
        return _Answer("sent", provider_id=message_id)

    def _mail(self, part: list[Message], subs: Mapping[str, dict[str, str]]) -> dict[str, Any]:
        """The request body. A plain dict, as the SDK's README shows: its Mail helper inserts each new
        personalization at the front, and a 400 names recipients by their position in the request."""
        rendering = part[0].rendering
        sender = {"email": self.settings.sender}
        if self.settings.sender_name:
            sender["name"] = self.settings.sender_name
        # SendGrid requires text/plain before text/html, and refuses an empty content value
        content = [{"type": "text/plain", "value": rendering.text}, {"type": "text/html", "value": rendering.html}]
        mail: dict[str, Any] = {
            "from": sender,
            "subject": rendering.subject,
            "content": [c for c in content if c["value"]],
            "personalizations": [_personalization(m, subs[m.id]) for m in part],
        }
        if self.settings.sandbox:
            mail["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return mail

    def _refusal(self, exc: HTTPError, size: int) -> _Answer:
        """Turn a SendGrid error status into an answer, or a ChannelError when no batch can go through."""
        status = exc.status_code
        errors = _errors(exc.body)
        words = mask("; ".join(message for message, _ in errors) or str(exc.reason))
        names_sender = any(f == "from" or f.startswith("from.") for _, f in errors)
        # every batch would meet the same refusal, so the channel stops instead of failing batch after batch
        if status in (400, 401, 403) and names_sender:
            raise ChannelError(f"SendGrid refused the sender {self.settings.sender} ({status}): {words}", hint=_SENDER_HINT)
        if status in (401, 403):
            raise ChannelError(f"SendGrid refused the API key ({status}): {words}", hint=_KEY_HINT)
        if status == 404:
            raise ChannelError(
                mask(f"SendGrid's mail/send was not found at {self.settings.host} (404)"),
                hint="check SENDGRID_API_HOST; leave it unset for https://api.sendgrid.com",
            )
        if status == 400:
            refused: dict[int, str] = {}
            for message, field_name in errors:
                match = _RECIPIENT_FIELD.match(field_name)
                if match is None or int(match.group(1)) >= size:
                    break
                refused.setdefault(int(match.group(1)), mask(message))
            else:
                if refused:
                    return _Answer("failed", refused=refused)
            return _Answer(
                "failed",
                reason=f"SendGrid refused this email (400): {words}. Nothing in this batch was sent; "
                "fix the notice or templates and send again",
            )
        if status == 413:
            return _Answer("failed", reason="this email is too large for SendGrid (413); shorten the notice", too_large=True)
        if status == 429:
            return _Answer("retry", reason=f"SendGrid rate limit (429): {words}", retry_after=_retry_after(exc.headers))
        if status >= 500:
            return _Answer("retry", reason=f"SendGrid server error ({status}): {words}", retry_after=_retry_after(exc.headers))
        return _Answer("failed", reason=f"SendGrid answered {status}: {words}")


def _personalization(message: Message, substitutions: dict[str, str]) -> dict[str, Any]:
    # custom_args go here rather than at the top level: each recipient's message id is its own
    personalization: dict[str, Any] = {
        "to": [{"email": message.recipient}],
        "custom_args": {"broadcast_notice": message.notice_id, "broadcast_message": message.id},
    }
    if substitutions:
        personalization["substitutions"] = substitutions
    return personalization


def _substitutions(message: Message) -> dict[str, str]:
    """SendGrid replaces each tag in the subject and in both contents, so the HTML tag carries the escaped value."""
    out: dict[str, str] = {}
    for name, value in message.fields.items():
        out[placeholder(name)] = value
        out[placeholder(name, html_part=True)] = html.escape(value)
    return out


def _errors(body: bytes | None) -> list[tuple[str, str]]:
    """(message, field) for each entry of SendGrid's {"errors": [...]}; empty when the body is something else."""
    try:
        entries = json.loads(body or b"")["errors"]
        return [(str(e.get("message") or ""), str(e.get("field") or "")) for e in entries]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait: X-RateLimit-Reset (epoch seconds) or Retry-After (seconds or an HTTP date), the later one."""
    if headers is None:
        return None
    waits = []
    reset, after = headers.get("X-RateLimit-Reset"), headers.get("Retry-After")
    try:
        waits.append(float(reset) - time.time())
    except (TypeError, ValueError):
        pass
    try:
        waits.append(float(after))
    except (TypeError, ValueError):
        try:
            waits.append(parsedate_to_datetime(after).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return max(0.0, *waits) if waits else None


def _receipt(
    message: Message,
    status: Status,
    provider_id: str | None = None,
    reason: str | None = None,
    retry_after: float | None = None,
) -> Receipt:
    return Receipt(message.id, message.channel, message.recipient, status, provider_id, reason, retry_after=retry_after)


def _activity_events(request_id: str, recipient: str, events: Sequence[Mapping[str, Any]]) -> Iterator[Event]:
    """Email Activity events as results.Event values, keyed by the request's X-Message-Id and the recipient."""
    from datetime import UTC, datetime

    for event in events:
        kind = ACTIVITY_KINDS.get(str(event.get("event_name", "")))
        if kind is None:
            continue
        if kind == "bounced" and event.get("bounce_type") in ("soft", "blocked"):
            # refused for now (a full mailbox, a block list): not delivered, and no reason to stop writing to them
            kind = "undelivered"
        try:
            at = datetime.fromisoformat(str(event.get("processed", "")).replace("Z", "+00:00"))
        except ValueError:
            at = datetime.now(UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        reason = str(event.get("reason") or event.get("server_response") or "")
        yield Event("email", kind, at, provider_id=request_id, recipient=recipient, reason=reason)  # type: ignore[arg-type]
