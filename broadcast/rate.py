"""Per-channel rate limits and concurrency caps, taken before every request to a provider.

A rate counts *requests to the provider*, not messages: one SMS is one Twilio request, one SendGrid
``mail/send`` request carries up to 1,000 emails, one X post is one request. Retries and look-ups are
requests too, so they count.

How it is meant to be used: build one :class:`Gate` per channel from ``--rate`` and ``--concurrency``
(:func:`parse_rates`, :func:`parse_concurrency`, :func:`gates`), share it between all the threads of
that channel, and wrap every provider request in it, retries included::

    known = broadcast.channels.names()          # the registry lists the channels; this module reads no registry
    channel_gates = gates(parse_rates(["sms=50/s"], channels=known), parse_concurrency(["sms=4"], channels=known))
    gate = channel_gates.get("sms", Gate())      # Gate() limits nothing
    with gate.request(stop) as ok:
        if not ok:                               # stop was set (Ctrl-C): send nothing more
            return
        client.messages.create(...)              # the request starts at once: nothing in between

Do slow one-time work (building a client, an SDK's lazy imports on first use) before entering the gate:
time spent between the gate and the wire is lag the margin below has to absorb.

What counts is what the provider sees: no window of ``Rate.per`` seconds holds more than
``Rate.count`` request *arrivals*. Arrivals lag our starts by a few milliseconds that vary (thread
scheduling, the GIL, the network), so the limiter counts starts over a window :data:`MARGIN` longer
than ``per``; a limit of 100/s is therefore kept at about 100 requests per 1.05 s, 95% of it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from broadcast.errors import ConfigError

#: seconds added to every window, to absorb the varying lag between our start and the provider's clock.
#: Against the Twilio fake in another process, with a CPU-bound thread competing for the GIL, start→arrival
#: lag was p50 7-12 ms, p99 ~45 ms, max ~90 ms. No margin let 105 arrivals into one second (108-110 when the
#: SDK client was first built inside the gate); 30 ms held over 1,500 requests, 50 ms over 4,000 with room to
#: spare. It costs 1 - 1/1.05, about 5% of a per-second limit, and nothing worth counting of a per-minute one.
MARGIN = 0.05
#: longest a waiting thread sleeps before it looks at the stop event again
MAX_WAIT = 0.2
#: shortest sleep, so float rounding on a simulated clock can never make a zero-length wait loop forever
MIN_WAIT = 0.001
#: the most requests one channel may have in flight; more only queues at the provider. One thread waits per request
#: in flight (the SMS requests themselves run on one event loop), so 256 threads is the cost of the cap; at 50 ms a
#: request, 128 in flight carry about 2,500 SMS/s, past what a Twilio account's own concurrency limit lets through
#: (it answers 429/20429 beyond it, which is retried), so more would only queue
MAX_CONCURRENCY = 256

#: period suffix → seconds
UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_UNIT_NAMES = {1.0: "s", 60.0: "min", 3600.0: "h"}

RATE_HINT = "write channel=requests/period, e.g. --rate sms=50/s or --rate sms=50/s,email=2/s (periods: /s, /min, /h)"
CONCURRENCY_HINT = (
    f"write channel=number from 1 to {MAX_CONCURRENCY}, e.g. --concurrency sms=4 or --concurrency sms=4,email=2"
)


@dataclass(frozen=True)
class Rate:
    """At most ``count`` requests to the provider in any ``per`` seconds."""

    count: int
    per: float

    def __str__(self) -> str:
        unit = _UNIT_NAMES.get(self.per)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per:g}s"

    @property
    def per_second(self) -> float:
        return self.count / self.per


def _items(option: str, values: Sequence[str], hint: str, channels: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    """Split ``channel=value`` items (comma lists allowed) into (item, channel, value); one channel once, and only
    the ``channels`` there are (the registry's names, given by the caller: the registry reads this module)."""
    if isinstance(values, str):
        values = [values]
    seen: set[str] = set()
    for value in values:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not parts:
            raise ConfigError(f"{option} {value!r} is empty", hint=hint)
        for item in parts:
            channel, equals, rest = item.partition("=")
            channel = channel.strip().lower()
            if not equals or not channel:
                raise ConfigError(f"{option} {item!r} needs a channel and a value joined by '='", hint=hint)
            if channel not in channels:
                raise ConfigError(
                    f"{option} {item!r}: unknown channel {channel!r}; choose from {', '.join(channels)}", hint=hint
                )
            if channel in seen:
                raise ConfigError(f"{option} {item!r}: {channel} is given more than once; give each channel once",
                                  hint=hint)
            seen.add(channel)
            yield item, channel, rest.strip()


def parse_rates(values: Sequence[str], *, channels: Sequence[str]) -> dict[str, Rate]:
    """Parse ``--rate`` values such as ``sms=50/s`` or ``sms=50/s,email=2/s`` into channel → Rate.

    The count is provider requests per period (an SMS is one request, a SendGrid request carries up
    to 1,000 emails, an X post is one request); periods are /s, /sec, /m, /min and /h.
    """
    rates: dict[str, Rate] = {}
    for item, channel, rest in _items("--rate", values, RATE_HINT, channels):
        count, slash, unit = rest.partition("/")
        count, unit = count.strip(), unit.strip().lower()
        if not re.fullmatch(r"[0-9]+", count) or int(count) < 1:
            raise ConfigError(
                f"--rate {item!r}: {count!r} is not a whole number of requests of at least 1",
                hint=RATE_HINT + "; for less than one a second use /min or /h, e.g. sms=30/min",
            )
        if not slash:
            raise ConfigError(f"--rate {item!r} has no period; add one, e.g. {channel}={count}/s", hint=RATE_HINT)
        if unit not in UNITS:
            raise ConfigError(f"--rate {item!r}: unknown period '/{unit}'; use /s, /min or /h", hint=RATE_HINT)
        rates[channel] = Rate(int(count), UNITS[unit])
    return rates


def parse_concurrency(values: Sequence[str], *, channels: Sequence[str]) -> dict[str, int]:
    """Parse ``--concurrency`` values such as ``sms=4`` or ``sms=4,email=2``: requests in flight at once."""
    caps: dict[str, int] = {}
    for item, channel, rest in _items("--concurrency", values, CONCURRENCY_HINT, channels):
        if not re.fullmatch(r"[0-9]+", rest) or not 1 <= int(rest) <= MAX_CONCURRENCY:
            raise ConfigError(
                f"--concurrency {item!r}: {rest!r} is not a whole number from 1 to {MAX_CONCURRENCY}",
                hint=CONCURRENCY_HINT,
            )
        caps[channel] = int(rest)
    return caps


class RateLimiter:
    """Lets a request start only when no window of ``rate.per + margin`` seconds would then hold more
    than ``rate.count`` starts (a sliding-window log). Thread-safe; not first-come first-served.

    ``clock`` and ``sleep`` are for tests: a simulated clock and a sleep that advances it.
    """

    def __init__(
        self,
        rate: Rate,
        *,
        margin: float = MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if rate.count < 1 or rate.per <= 0 or margin < 0:
            raise ValueError(f"a rate needs count >= 1, per > 0 and margin >= 0, got {rate!r}, margin={margin}")
        self.rate = rate
        self.window = rate.per + margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # start times within the last window, oldest first; never longer than rate.count
        self._starts: deque[float] = deque()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until a request may start, and count it as started.

        Returns False, counting nothing, when ``stop`` is set before or while waiting; a waiting
        thread looks at ``stop`` at least every MAX_WAIT seconds (at once with the real clock).
        """
        while True:
            if stop is not None and stop.is_set():
                return False
            with self._lock:
                now = self._clock()
                horizon = now - self.window
                while self._starts and self._starts[0] <= horizon:
                    self._starts.popleft()
                if len(self._starts) < self.rate.count:
                    self._starts.append(now)
                    return True
                wait = self._starts[0] - horizon
            self._pause(min(max(wait, MIN_WAIT), MAX_WAIT), stop)

    def _pause(self, seconds: float, stop: threading.Event | None) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif stop is not None:
            stop.wait(seconds)  # wakes at once on Ctrl-C
        else:
            time.sleep(seconds)


class Gate:
    """One channel's limits together: a concurrency cap (requests in flight) and a rate limit (request starts).

    ``Gate()`` limits nothing, so callers need no special case for a channel without limits.
    """

    def __init__(
        self,
        rate: Rate | None = None,
        concurrency: int | None = None,
        *,
        margin: float = MARGIN,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.rate = rate
        self.concurrency = concurrency
        self._limiter = RateLimiter(rate, margin=margin, clock=clock, sleep=sleep) if rate is not None else None
        self._seats = threading.BoundedSemaphore(concurrency) if concurrency is not None else None

    @contextmanager
    def request(self, stop: threading.Event | None = None) -> Iterator[bool]:
        """Hold one request's place: yields True once it may start, False (holding nothing) once ``stop`` is set.

        Send the request straight away inside the block; the seat is given back when the block ends.
        """
        if self._seats is not None and not self._take_seat(stop):
            yield False
            return
        try:
            # The seat first, then the rate slot: a slot taken while still queuing for a seat would be
            # counted earlier than the request really starts, which eats into the margin.
            if self._limiter is not None:
                ok = self._limiter.acquire(stop)
            else:
                ok = stop is None or not stop.is_set()
            yield ok
        finally:
            if self._seats is not None:
                self._seats.release()

    def _take_seat(self, stop: threading.Event | None) -> bool:
        assert self._seats is not None
        while True:
            if stop is not None and stop.is_set():
                return False
            if self._seats.acquire(timeout=MAX_WAIT):
                if stop is not None and stop.is_set():
                    self._seats.release()
                    return False
                return True

    def __repr__(self) -> str:
        return f"Gate(rate={self.rate}, concurrency={self.concurrency})"


def gates(rates: Mapping[str, Rate], concurrency: Mapping[str, int], *, margin: float = MARGIN) -> dict[str, Gate]:
    """One Gate per channel named in either mapping, to be shared by all of that channel's threads."""
    channels = [*rates, *(channel for channel in concurrency if channel not in rates)]
    return {channel: Gate(rates.get(channel), concurrency.get(channel), margin=margin) for channel in channels}
