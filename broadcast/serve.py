"""`broadcast serve`: Twilio's and SendGrid's signed webhooks, recorded in the ledger through results.record."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broadcast.config import Env, Secret
from broadcast.errors import BroadcastError, ConfigError
from broadcast.results import Event, record

if TYPE_CHECKING:  # Starlette and uvicorn are imported when serve starts, so `broadcast --help` stays fast
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from broadcast.ledger import Ledger

log = logging.getLogger(__name__)

#: where Twilio's status callbacks come: the path a send asks for when BROADCAST_PUBLIC_URL is set (channels/twilio.py)
STATUS_PATH = "/twilio/status"
INBOUND_PATH = "/twilio/inbound"
#: where a call posts the key pressed (channels/voice.py asks Twilio for it when BROADCAST_PUBLIC_URL is set)
GATHER_PATH = "/voice/gather"
SENDGRID_PATH = "/sendgrid/events"
HEALTH_PATH = "/healthz"

#: the most a webhook body may be: SendGrid batches events up to about a megabyte; more is no provider's request
MAX_BODY = 8 * 1024 * 1024
#: a Twilio form is small (a 1,600-character Body and some twenty fields); its signature can be checked only once it
#: is parsed, so a larger form or more fields are refused before that work is done for someone unsigned
MAX_FORM, MAX_FIELDS = 64 * 1024, 200

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass(frozen=True)
class ServeRequest:
    """What `broadcast serve` was asked: where to listen, and which ledger to record in."""

    host: str = "127.0.0.1"
    port: int = 8080
    ledger: str | None = None


@dataclass(frozen=True)
class Webhooks:
    """What serve checks each provider's signature with, from the environment; None where it is not set."""

    #: the address the providers call (BROADCAST_PUBLIC_URL): Twilio signs the URL it called, not the one serve sees
    public_url: str | None
    twilio_token: Secret | None
    #: SendGrid's verification key (Mail Settings → Event Webhook → Signature Verification), base64 DER
    sendgrid_key: Any | None

    @classmethod
    def from_env(cls, env: Env) -> Webhooks:
        """BROADCAST_PUBLIC_URL and TWILIO_AUTH_TOKEN for the Twilio routes, SENDGRID_WEBHOOK_PUBLIC_KEY for SendGrid's."""
        public_url = env.url("BROADCAST_PUBLIC_URL")
        if public_url and ("?" in public_url or "#" in public_url):
            env.problem("BROADCAST_PUBLIC_URL has a query or fragment; give only scheme, host and any path prefix")
        token = env.secret("TWILIO_AUTH_TOKEN")
        key = None
        if env.get("SENDGRID_WEBHOOK_PUBLIC_KEY"):
            from sendgrid.helpers.eventwebhook import EventWebhook

            try:
                key = EventWebhook().convert_public_key_to_ecdsa(env.get("SENDGRID_WEBHOOK_PUBLIC_KEY"))
            except (ValueError, TypeError):
                # the key itself is not quoted: it is in the environment, and a half-pasted one helps nobody
                env.problem("SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve public key: copy the whole "
                            "Verification Key from SendGrid (Mail Settings → Event Webhook → Signature Verification)")
        return cls(public_url.rstrip("/") if public_url else None, token, key)

    def missing(self) -> dict[str, list[str]]:
        """Each provider's routes that cannot be mounted, and the variables they wait for."""
        out = {}
        twilio = [name for name, value in (("TWILIO_AUTH_TOKEN", self.twilio_token),
                                            ("BROADCAST_PUBLIC_URL", self.public_url)) if not value]
        if twilio:
            out["Twilio"] = twilio
        if self.sendgrid_key is None:
            out["SendGrid"] = ["SENDGRID_WEBHOOK_PUBLIC_KEY"]
        return out


class Refused(Exception):
    """A webhook request that is not recorded: its HTTP status and why (403 a signature, 400 a malformed body)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


def app(ledger: Ledger, webhooks: Webhooks) -> Starlette:
    """The ASGI app: a provider's routes only where its secret is set (Webhooks.missing), and GET /healthz."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    missing, writer = webhooks.missing(), _Writer(ledger)
    routes = [Route(HEALTH_PATH, _health(ledger), methods=["GET"])]
    if "Twilio" not in missing:
        routes += [
            Route(STATUS_PATH, _endpoint(writer, _twilio_route(webhooks, "status_event"), limit=MAX_FORM),
                  methods=["POST"]),
            Route(INBOUND_PATH, _endpoint(writer, _twilio_route(webhooks, "reply_event"), limit=MAX_FORM, twiml=True),
                  methods=["POST"]),
            # the empty TwiML that answers a key pressed ends the call
            Route(GATHER_PATH, _endpoint(writer, _twilio_route(webhooks, "gather_event"), limit=MAX_FORM, twiml=True),
                  methods=["POST"]),
        ]
    if "SendGrid" not in missing:
        routes.append(Route(SENDGRID_PATH, _endpoint(writer, _sendgrid_events(webhooks)), methods=["POST"]))
    return Starlette(routes=routes)


def run(request: ServeRequest, *, announce: Callable[[str], None]) -> int:
    """Check the secrets, open the ledger, listen, and serve until Ctrl-C or SIGTERM; ``announce`` gets the start-up
    lines (the address, each route or why it is not mounted, the ledger)."""
    from broadcast.ledger import Ledger, ledger_exists, masked_url, resolve_url

    env = Env()
    webhooks = Webhooks.from_env(env)
    if env.problems:
        raise ConfigError("; ".join(env.problems) + "; serve did not start", hint="fix the variable in the environment or .env")
    missing = webhooks.missing()
    if len(missing) == 2:
        names = [*missing["Twilio"], *missing["SendGrid"]]
        raise ConfigError(
            f"serve checks every webhook's signature and cannot check any: {', '.join(names)} not set; serve did not "
            "start, and the providers' results stay unrecorded until it does",
            hint="set TWILIO_AUTH_TOKEN and BROADCAST_PUBLIC_URL for Twilio, SENDGRID_WEBHOOK_PUBLIC_KEY for SendGrid "
            "(in the environment or .env); until then `broadcast sync` asks the providers instead",
        )
    url = resolve_url(request.ledger)
    if not ledger_exists(url):
        raise ConfigError(
            f"no ledger at {masked_url(url)}: serve records results against the messages a send recorded; serve did not start",
            hint="point --ledger / BROADCAST_LEDGER at the ledger `broadcast send` writes",
        )
    ledger = Ledger(url)
    listening = None
    try:
        listening = _listen(request.host, request.port)
        host, port = listening.getsockname()[:2]
        for line in _start_lines(host, port, webhooks, masked_url(url)):
            announce(line)
        import uvicorn

        config = uvicorn.Config(app(ledger, webhooks), log_level="warning", access_log=False, lifespan="off")
        with _stopping() as stopped_by:
            uvicorn.Server(config).run(sockets=[listening])
    finally:
        if listening is not None:
            listening.close()
        ledger.close()
    announce(f"serve stopped ({', '.join(stopped_by) or 'no signal'}); every request it answered is recorded")
    return 0


@contextmanager
def _stopping() -> Iterator[list[str]]:
    """Ctrl-C and SIGTERM are how a server is stopped: uvicorn finishes the requests in flight, then raises the signal
    again for the handler it found, which is this one, so serve exits 0 instead of dying by the signal."""
    import signal

    stopped_by: list[str] = []
    wanted = [signal.SIGINT, signal.SIGTERM]
    before = {sig: signal.signal(sig, lambda number, frame: stopped_by.append(signal.Signals(number).name)) for sig in wanted}
    try:
        yield stopped_by
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a port in use is a plain error (exit 2), not uvicorn's log line."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {host}: {exc}", hint="give --host an address of this machine, e.g. 127.0.0.1") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; serve did not start",
            hint="another program (or another serve) uses that port: choose another with --port",
        ) from None
    sock.set_inheritable(True)
    return sock


def _start_lines(host: str, port: int, webhooks: Webhooks, ledger: str) -> Iterator[str]:
    shown = f"[{host}]" if ":" in host else host
    yield f"broadcast serve on http://{shown}:{port}, recording in {ledger}"
    missing = webhooks.missing()
    routes = [("Twilio", STATUS_PATH, "Twilio status callbacks"), ("Twilio", INBOUND_PATH, "Twilio inbound SMS"),
              ("Twilio", GATHER_PATH, "keys pressed in calls"), ("SendGrid", SENDGRID_PATH, "SendGrid Event Webhook")]
    for provider, path, what in routes:
        if provider in missing:
            yield f"  POST {path:<17} not mounted ({what}): {' and '.join(missing[provider])} not set"
        elif provider == "Twilio":
            yield f"  POST {path:<17} {what}, signed for {webhooks.public_url}{path}"
        else:
            yield f"  POST {path:<17} {what}, signature checked"
    yield f"  GET  {HEALTH_PATH:<17} 200 while the ledger answers"


# -- the routes --------------------------------------------------------------------------------------------------


def _endpoint(
    writer: _Writer, read: Callable[[Request, bytes], list[Event]], *, limit: int = MAX_BODY, twiml: bool = False
) -> Callable[[Request], Any]:
    """One webhook route: read the body, let ``read`` check its signature and turn it into events, record them.

    Nothing is written for a request ``read`` refuses. A ledger that cannot be written answers 503, so the provider
    calls again later (Twilio and SendGrid both retry a 5xx); record() takes the same event twice without change.
    """
    from starlette.responses import PlainTextResponse, Response

    async def endpoint(request: Request) -> Response:
        try:
            body = await _body(request, limit)
            events = read(request, body)
        except Refused as refused:
            log.info("%s %s refused (%s): %s", request.method, request.url.path, refused.status, refused.why)
            return PlainTextResponse(refused.why + "\n", status_code=refused.status)
        try:
            await writer.record(events)
        except BroadcastError as exc:
            log.warning("%s: the ledger could not record %d events: %s", request.url.path, len(events), exc.message)
            return PlainTextResponse("the ledger cannot record this now; call again later\n", status_code=503)
        if twiml:
            from twilio.twiml.messaging_response import MessagingResponse

            # empty TwiML: Twilio sends no answer of its own (it still answers STOP and START itself)
            return Response(str(MessagingResponse()), media_type="text/xml")
        return Response(status_code=204)

    return endpoint


class _Writer:
    """Records the events of requests that arrive together in one results.record call: one transaction for many
    webhooks instead of one each (SQLite takes one writer at a time, and a commit costs the same for 1 row or 500).

    A request waits for the batch its events are in, so it is answered only once they are in the ledger; a batch the
    ledger refuses fails every request in it (503), and the providers post them again.
    """

    def __init__(self, ledger: Ledger) -> None:
        import asyncio

        self.ledger = ledger
        self.pending: list[tuple[list[Event], asyncio.Future[None]]] = []
        self.busy = asyncio.Lock()

    async def record(self, events: list[Event]) -> None:
        import asyncio

        from starlette.concurrency import run_in_threadpool

        if not events:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((events, done))
        async with self.busy:
            # while the previous batch was being written, more requests queued up: they all go in this one
            if not done.done():
                batch, self.pending = self.pending, []
                try:
                    applied = await run_in_threadpool(record, self.ledger, [e for events, _ in batch for e in events])
                except asyncio.CancelledError:
                    # the server is stopping: no request of the batch may wait for ever (its provider posts it again)
                    for _, waiting in batch:
                        waiting.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - a ledger error (503) or a bug (500): every request of the batch sees it
                    for _, waiting in batch:
                        if not waiting.done():
                            waiting.set_exception(exc)
                else:
                    log.info("recorded %d requests: %s", len(batch), applied)
                    for _, waiting in batch:
                        if not waiting.done():  # a request cancelled meanwhile has nobody to answer
                            waiting.set_result(None)
        await done


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"the body is larger than {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the body is larger than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _twilio_form(webhooks: Webhooks, request: Request, body: bytes) -> Mapping[str, str]:
    """The form Twilio posted, once its X-Twilio-Signature matches the public URL Twilio called and the form."""
    from urllib.parse import parse_qsl

    from starlette.datastructures import ImmutableMultiDict
    from twilio.request_validator import RequestValidator

    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        raise Refused(403, "no X-Twilio-Signature: not a request from Twilio")
    try:
        form = ImmutableMultiDict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                                            max_num_fields=MAX_FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the body is not a UTF-8 form (application/x-www-form-urlencoded)") from None
    # Twilio signs the URL it called: behind a proxy the host serve sees is not that one, so BROADCAST_PUBLIC_URL
    query = request.url.query
    called = f"{webhooks.public_url}{request.url.path}" + (f"?{query}" if query else "")
    token = webhooks.twilio_token.reveal() if webhooks.twilio_token else ""
    if not RequestValidator(token).validate(called, form, signature):
        raise Refused(403, f"X-Twilio-Signature does not match {called} and this form: not signed with TWILIO_AUTH_TOKEN")
    return form


def _twilio_route(webhooks: Webhooks, reads: str) -> Callable[[Request, bytes], list[Event]]:
    """A Twilio webhook: its signed form, turned into events by the adapter's ``reads`` classmethod:
    - POST /twilio/status (``status_event``): MessageSid, MessageStatus, ErrorCode, To → a delivery state;
    - POST /twilio/inbound (``reply_event``): From, Body, MessageSid → a reply (STOP, START, keywords: record());
    - POST /voice/gather (``gather_event``): CallSid, To, Digits → the called person's reply ("1": safe).
    """
    convert = getattr(_adapter("Twilio", reads), reads)

    def read(request: Request, body: bytes) -> list[Event]:
        form = _twilio_form(webhooks, request, body)
        try:
            # a webhook carries no time of its own: it is now
            event = convert(form, datetime.now(UTC))
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        return [event] if event is not None else []

    return read


def _sendgrid_events(webhooks: Webhooks) -> Callable[[Request, bytes], list[Event]]:
    """POST /sendgrid/events: a signed JSON array of events, each matched by its X-Message-Id and address."""
    from sendgrid.helpers.eventwebhook import EventWebhook

    verifier, email = EventWebhook(), _adapter("SendGrid", "webhook_events")

    def read(request: Request, body: bytes) -> list[Event]:
        import binascii

        signature, timestamp = request.headers.get(SIGNATURE_HEADER, ""), request.headers.get(TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            raise Refused(403, f"no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}: not a signed SendGrid request")
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "the body is not UTF-8 text") from None
        try:
            valid = verifier.verify_signature(payload, signature, timestamp, webhooks.sendgrid_key)
        except (binascii.Error, ValueError):  # a signature that is not base64 is no signature
            valid = False
        if not valid:
            raise Refused(403, "the signature does not match: not signed with the key in SENDGRID_WEBHOOK_PUBLIC_KEY")
        try:
            items = json.loads(payload)
        except ValueError:
            raise Refused(400, "the body is not JSON") from None
        if not isinstance(items, list):
            raise Refused(400, "the body is not a JSON array of events")
        try:
            return email.webhook_events(items)
        except ValueError as exc:
            raise Refused(400, str(exc)) from None

    return read


def _adapter(provider: str, reads: str) -> Any:
    """The registered adapter of ``provider`` that turns its webhooks into events (its ``reads`` method)."""
    from broadcast.channels import REGISTRY

    return next(adapter for adapter in REGISTRY.values() if adapter.provider == provider and hasattr(adapter, reads))


def _health(ledger: Ledger) -> Callable[[Request], Any]:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import PlainTextResponse

    def ping() -> None:
        import sqlalchemy as sa

        with ledger.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    async def health(request: Request) -> Response:
        try:
            await run_in_threadpool(ping)
        except Exception as exc:  # noqa: BLE001 - any failure means the ledger does not answer; the type says which
            log.warning("healthz: the ledger does not answer: %s", type(exc).__name__)
            return PlainTextResponse("the ledger does not answer\n", status_code=503)
        return PlainTextResponse("ok\n")

    return health
