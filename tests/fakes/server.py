"""The threaded local HTTP server each provider fake builds on: recording, validation, faults, latency, measurement."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import socketserver
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, NamedTuple, Self
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.validation import Verdict, check_request, spec_for

# "before": the provider never took the message. "after": it took it and the answer was lost,
# the case where a naive retry sends the message twice.
BEFORE_ACCEPT = frozenset({"timeout_before", "drop_before"})
AFTER_ACCEPT = frozenset({"timeout_after", "drop_after"})


@dataclass(frozen=True)
class Faults:
    """Random faults, each decided from the seed, the request's content and how often that content came before.

    Keying the draw on content rather than arrival order keeps a run reproducible when many
    threads send at once: the same message on the same attempt always meets the same fault.
    A 429 burst is the exception: once started it answers the next ``burst`` requests in arrival order.
    The rates are shares of requests and must add up to at most 1.
    """

    seed: int = 0
    error_rate: float = 0.0  # answered 500 or 503, half each
    rate_limit_rate: float = 0.0  # starts a burst of 429s
    burst: int = 3  # 429s in one burst, counting the request that started it
    retry_after: int = 1  # seconds, in Retry-After and the reset headers
    timeout_before_rate: float = 0.0
    timeout_after_rate: float = 0.0
    drop_before_rate: float = 0.0
    drop_after_rate: float = 0.0
    timeout_delay: float = 2.0  # how long a "timeout" holds the answer; set it above the client's timeout

    def __post_init__(self) -> None:
        rates = [rate for _, rate in self._bands()]
        if any(rate < 0 for rate in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be >= 0 and add up to at most 1, got {rates}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")

    def _bands(self) -> list[tuple[str, float]]:
        return [
            ("error", self.error_rate),
            ("429", self.rate_limit_rate),
            ("timeout_before", self.timeout_before_rate),
            ("timeout_after", self.timeout_after_rate),
            ("drop_before", self.drop_before_rate),
            ("drop_after", self.drop_after_rate),
        ]

    @property
    def active(self) -> bool:
        """Whether any fault can happen; when none can, requests skip the per-request draw."""
        return any(rate for _, rate in self._bands())

    def draw(self, key: str, attempt: int) -> str | None:
        """Return the fault kind for this content on this attempt ("500", "503", "429", "drop_after", ...) or None."""
        rng = random.Random(f"{self.seed}:{key}:{attempt}")
        point = rng.random()
        for kind, rate in self._bands():
            if point < rate:
                if kind == "error":
                    return "500" if rng.random() < 0.5 else "503"
                return kind
            point -= rate
        return None


class Fault(NamedTuple):
    """One injected misbehaviour: a kind for counting, and the status and headers to answer with, if any."""

    kind: str
    status: int | None = None
    headers: Mapping[str, str] | None = None


@dataclass
class RecordedRequest:
    """A request as the fake saw it. Header names are lowercase; the body is parsed JSON, a form dict, or text."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes
    time: float  # time.time() when it arrived

    @property
    def key(self) -> str:
        """What makes two requests "the same message" for fault decisions."""
        query = "&".join(f"{name}={value}" for name, value in self.query.items())
        return hashlib.sha1(f"{self.method} {self.path}?{query}\n".encode() + self.raw).hexdigest()


class Delivery(NamedTuple):
    """A message the fake accepted for one recipient, with a summary of what would have been sent."""

    recipient: str
    payload: dict[str, Any]


class InvalidRequest(NamedTuple):
    """A request the provider's OpenAPI document rejects, and why."""

    method: str
    path: str
    errors: tuple[str, ...]


@dataclass
class Reply:
    """An answer to write: JSON body when ``body`` is a dict or list, nothing when it is None."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse connections
    # Without this, Nagle's algorithm and the client's delayed ACK can add 40 ms to an answer.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a line per request on stderr would drown test output and slow benchmarks."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 512  # the listen backlog: room for 200+ clients connecting at once

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or close mid-answer are part of the tests, not a fault of the fake.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Wake handler threads waiting on idle keep-alive connections so they end."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FakeServer:
    """A provider API on 127.0.0.1 that records what it is sent and misbehaves on request.

    Subclasses set ``provider`` and implement ``authorized``, ``unauthorized_reply``,
    ``error_reply`` and ``route``; ``route`` runs under ``self._lock``, so it can check and
    change state in one step, and must not sleep.
    """

    provider: ClassVar[str]
    #: path prefixes of documented endpoints the spec file we validate against does not cover; the fake checks
    #: those requests itself (route)
    outside_spec: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, validate: bool = True, latency: float = 0.0, faults: Faults | None = None) -> None:
        if validate:
            # Build the document now rather than inside the first request, where Twilio's
            # 1.5 s build would look like a slow answer to a client with a short timeout.
            spec_for(self.provider)
        self.validate = validate
        self.latency = latency
        self.faults = faults or Faults()
        self.requests: list[RecordedRequest] = []
        self.deliveries: list[Delivery] = []
        self.invalid: list[InvalidRequest] = []
        self.faults_injected: Counter[str] = Counter()
        self.max_concurrency = 0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._seen: Counter[str] = Counter()
        self._script: deque[Fault] = deque()
        self._burst_left = 0
        self._closing = threading.Event()
        self._hold: _Hold | None = None
        #: True once a request matched hold_nth() and is being held
        self.holding = False
        self._released = threading.Event()
        self._httpd = _HTTPServer(self)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._httpd.server_port}",
            daemon=True,
        )
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, cut open connections and release anything held in a simulated timeout."""
        self._closing.set()
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join()

    # ----- what tests ask -----

    def delivery_counts(self) -> Counter[str]:
        """How many times each recipient was delivered to."""
        with self._lock:
            return Counter(delivery.recipient for delivery in self.deliveries)

    def duplicates(self) -> dict[str, int]:
        """Recipients delivered to more than once, with their counts; {} when every message went once."""
        return {recipient: n for recipient, n in self.delivery_counts().items() if n > 1}

    def max_in_window(self, seconds: float = 1.0) -> int:
        """Most requests that arrived within any sliding window of ``seconds`` (all requests, answered or not)."""
        with self._lock:
            times = [request.time for request in self.requests]
        return max_in_window(times, seconds)

    def script(self, answers: Iterable[int | tuple[int, Mapping[str, str]] | str]) -> None:
        """Answer the next requests, in order, before normal service resumes.

        Each answer is a status (the provider's own error body and default headers, e.g. 429
        with Retry-After), a ``(status, headers)`` pair (exactly those headers), or a fault kind:
        "drop_before", "timeout_before", "drop_after", "timeout_after".
        """
        queued = []
        for answer in answers:
            if isinstance(answer, str):
                if answer not in BEFORE_ACCEPT | AFTER_ACCEPT:
                    raise ValueError(
                        f"unknown fault kind {answer!r}; use one of {sorted(BEFORE_ACCEPT | AFTER_ACCEPT)}"
                    )
                queued.append(Fault(answer))
                continue
            status, headers = (answer, None) if isinstance(answer, int) else answer
            if status < 400 or status not in {known.value for known in HTTPStatus}:
                raise ValueError(f"scripted answers are HTTP error statuses (>= 400), got {status}")
            queued.append(Fault(str(status), status, dict(headers) if headers is not None else None))
        with self._lock:
            self._script.extend(queued)

    def hold_nth(self, method: str, path_end: str, n: int) -> None:
        """Hold the ``n``-th ``method`` request whose path ends with ``path_end`` unanswered, creating nothing, until
        release(): a client killed while waiting for it (SIGKILL mid-thread) left exactly ``n - 1`` done before it."""
        with self._lock:
            self._hold = _Hold(method, path_end, n)
            self.holding = False
            self._released.clear()

    def release(self) -> None:
        """Let a held request go: its connection is dropped, and later requests are served as usual."""
        with self._lock:
            self._hold = None
        self._released.set()

    def reset(self) -> None:
        """Forget everything recorded and any scripted answers; keep configuration (keys, scripted recipients)."""
        with self._lock:
            self.requests.clear()
            self.deliveries.clear()
            self.invalid.clear()
            self.faults_injected.clear()
            self.max_concurrency = 0
            self._seen.clear()
            self._script.clear()
            self._burst_left = 0
            self._reset_state()

    # ----- what each provider supplies -----

    def _reset_state(self) -> None:
        """Clear provider state (stored messages, tweets); called by reset() under the lock."""

    def authorized(self, request: RecordedRequest) -> bool:
        raise NotImplementedError

    def unauthorized_reply(self) -> Reply:
        raise NotImplementedError

    def error_reply(self, status: int, message: str) -> Reply:
        """The provider's error body for a status; used for faults, scripted answers and unknown paths."""
        raise NotImplementedError

    def invalid_reply(self, errors: list[str]) -> Reply:
        """A 400 in the provider's shape for a request its OpenAPI document rejects."""
        return self.error_reply(400, "; ".join(errors))

    def rate_limit_headers(self, retry_after: int) -> dict[str, str]:
        return {"Retry-After": str(retry_after)}

    def route(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    # ----- serving -----

    def _serve(self, handler: _Handler) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_concurrency = max(self.max_concurrency, self._in_flight)
        try:
            reply = self._answer(handler)
        finally:
            with self._lock:
                self._in_flight -= 1
        # Written after the count falls: once the client reads the answer it may start its next request before
        # this thread runs again, and a count that fell only after the write would see the two overlap.
        if reply is not None:
            _write(handler, reply)

    def _answer(self, handler: _Handler) -> Reply | None:
        """The answer to write, or None when the connection was dropped instead."""
        request, query, headers = _read(handler)
        verdict = (
            check_request(self.provider, request.method, request.path, query, headers, request.raw)
            if self.validate and not request.path.startswith(self.outside_spec)
            else Verdict([], True)
        )
        with self._lock:
            self.requests.append(request)
            if verdict.errors:
                self.invalid.append(InvalidRequest(request.method, request.path, tuple(verdict.errors)))
            fault = self._next_fault(request)
            held = self._hold is not None and self._hold.takes(request)

        if held:
            # a process killed while this request waits: nothing is created, and the connection just ends
            self.holding = True
            self._released.wait()
            _drop(handler)
            return None

        if fault is not None and fault.kind in BEFORE_ACCEPT:
            self._count(fault.kind)
            if fault.kind == "timeout_before":
                self._closing.wait(self.faults.timeout_delay)
            _drop(handler)
            return None

        if fault is not None and fault.status is not None:
            self._count(fault.kind)
            reply = self.error_reply(fault.status, HTTPStatus(fault.status).phrase)
            if fault.headers is not None:
                reply.headers = dict(fault.headers)
            elif fault.status == 429:
                reply.headers.update(self.rate_limit_headers(self.faults.retry_after))
        else:
            reply = self._service(request, verdict)
            # A lost answer only matters when there was something to lose.
            if fault is not None and fault.kind in AFTER_ACCEPT and 200 <= reply.status < 300:
                self._count(fault.kind)
                if fault.kind == "drop_after":
                    _drop(handler)
                    return None
                self._closing.wait(self.faults.timeout_delay)

        if self.latency:
            time.sleep(self.latency)
        return reply

    def _service(self, request: RecordedRequest, verdict: Verdict) -> Reply:
        if not self.authorized(request):
            return self.unauthorized_reply()
        # A path or method the API does not have gets the provider's 404/405 from route(), not a 400.
        if verdict.errors and verdict.known:
            return self.invalid_reply(verdict.errors)
        with self._lock:
            return self.route(request)

    def _next_fault(self, request: RecordedRequest) -> Fault | None:
        """Called under the lock, once per request, in arrival order."""
        if self._script:
            return self._script.popleft()
        if self._burst_left:
            self._burst_left -= 1
            return Fault("429", 429)
        if not self.faults.active:
            return None
        key = request.key
        attempt = self._seen[key]
        self._seen[key] += 1
        kind = self.faults.draw(key, attempt)
        if kind is None:
            return None
        if kind == "429":
            self._burst_left = self.faults.burst - 1
        return Fault(kind, int(kind) if kind.isdigit() else None)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.faults_injected[kind] += 1


@dataclass
class _Hold:
    """Which request hold_nth() holds: the n-th with this method and path ending; counts as requests arrive."""

    method: str
    path_end: str
    n: int
    seen: int = 0

    def takes(self, request: RecordedRequest) -> bool:
        if request.method != self.method or not request.path.endswith(self.path_end):
            return False
        self.seen += 1
        return self.seen == self.n


def _read(handler: _Handler) -> tuple[RecordedRequest, list[tuple[str, str]], list[tuple[str, str]]]:
    """Read one request; also return the raw query pairs and headers, which validation needs in full."""
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    parts = urlsplit(handler.path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    headers = list(handler.headers.items())
    request = RecordedRequest(
        method=handler.command,
        path=parts.path,
        query=dict(query),
        headers={name.lower(): value for name, value in headers},
        body=_parse_body(handler.headers.get("Content-Type", ""), raw),
        raw=raw,
        time=time.time(),
    )
    return request, query, headers


def _parse_body(content_type: str, raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "x-www-form-urlencoded" in content_type:
        form: dict[str, Any] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            # Repeated fields (Twilio's MediaUrl) become lists; single ones stay plain strings.
            if name in form:
                previous = form[name]
                form[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                form[name] = value
        return form
    return text


def _write(handler: _Handler, reply: Reply) -> None:
    # One write for head and body: two small writes are what Nagle delays.
    if reply.body is None:
        body = b""
    elif isinstance(reply.body, bytes):
        body = reply.body
    else:
        body = json.dumps(reply.body).encode()
    lines = [
        f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
        f"Date: {handler.date_time_string()}",
        f"Content-Length: {len(body)}",
    ]
    if body:
        lines.append(f"Content-Type: {reply.content_type}")
    lines.extend(f"{name}: {value}" for name, value in reply.headers.items())
    if handler.close_connection:
        lines.append("Connection: close")
    try:
        handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    except OSError:
        handler.close_connection = True  # the client gave up (its timeout); nothing left to answer


def _drop(handler: _Handler) -> None:
    """Close the connection without a word, as a crashed proxy or a lost network path does."""
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def max_in_window(times: Iterable[float], seconds: float) -> int:
    """Most times within any half-open window (t - seconds, t]: how a provider counts requests against a limit."""
    times = sorted(times)
    best = start = 0
    for end, now in enumerate(times):
        while times[start] <= now - seconds:
            start += 1
        best = max(best, end - start + 1)
    return best
