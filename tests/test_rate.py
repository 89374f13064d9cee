"""Tests for --rate / --concurrency parsing, the sliding-window rate limiter and the per-channel Gate."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast.channels import names
from broadcast.errors import ConfigError
from broadcast.rate import (
    MARGIN,
    MAX_WAIT,
    MIN_WAIT,
    Gate,
    Rate,
    RateLimiter,
    gates,
    parse_concurrency,
    parse_rates,
)
from tests.fakes.server import max_in_window

#: the registry's channel names, which --rate and --concurrency accept
CHANNELS = names()

EPS = 1e-9


class SimClock:
    """A simulated monotonic clock that only moves when someone sleeps on it; thread-safe.

    The limiter counts a start at the clock reading it took under its lock, which is the last reading
    that thread made before acquire() returned; ``last()`` gives it back per thread.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()
        self._local = threading.local()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            self._local.last = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
        time.sleep(0)  # let other threads in, so they interleave as real ones would

    def last(self) -> float:
        return self._local.last


def assert_spaced(starts: list[float], rate: Rate, window: float) -> None:
    """No window of ``window`` seconds holds more than rate.count starts: start i and i+count are a window apart."""
    starts = sorted(starts)
    for i in range(rate.count, len(starts)):
        assert starts[i] - starts[i - rate.count] >= window - EPS, (i, starts[i - rate.count], starts[i])


# ---------------------------------------------------------------- Rate and parsing


def test_rate_reads_like_the_option() -> None:
    assert str(Rate(50, 1.0)) == "50/s"
    assert str(Rate(30, 60.0)) == "30/min"
    assert str(Rate(2, 3600.0)) == "2/h"
    assert str(Rate(3, 2.5)) == "3/2.5s"
    assert Rate(30, 60.0).per_second == 0.5


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {}),
        (["sms=50/s"], {"sms": Rate(50, 1.0)}),
        (["sms=50/sec"], {"sms": Rate(50, 1.0)}),
        (["email=120/m"], {"email": Rate(120, 60.0)}),
        (["email=120/min"], {"email": Rate(120, 60.0)}),
        (["social=10/h"], {"social": Rate(10, 3600.0)}),
        (["sms=50/s,email=2/s"], {"sms": Rate(50, 1.0), "email": Rate(2, 1.0)}),
        (["sms=50/s", "email=2/s,web=1/min"], {"sms": Rate(50, 1.0), "email": Rate(2, 1.0), "web": Rate(1, 60.0)}),
        ([" SMS = 50 / S ,"], {"sms": Rate(50, 1.0)}),
    ],
)
def test_parse_rates(values: list[str], expected: dict[str, Rate]) -> None:
    assert parse_rates(values, channels=CHANNELS) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("sms=50", "has no period"),
        ("sms=fifty/s", "'fifty' is not a whole number"),
        ("sms=0/s", "'0' is not a whole number"),
        ("sms=-5/s", "'-5' is not a whole number"),
        ("sms=1.5/s", "'1.5' is not a whole number"),
        ("sms=/s", "'' is not a whole number"),
        ("sms=5/d", "unknown period '/d'"),
        ("sms=5/", "unknown period '/'"),
        ("fax=5/s", "unknown channel 'fax'"),
        ("50/s", "needs a channel and a value"),
        ("=50/s", "needs a channel and a value"),
        ("", "is empty"),
        (" , ", "is empty"),
        ("sms=5/s,sms=6/s", "sms is given more than once"),
    ],
)
def test_parse_rates_refuses_with_a_hint(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rates([value], channels=CHANNELS)
    error = caught.value
    assert says in error.message
    assert "--rate" in error.message
    assert error.hint and "--rate sms=50/s" in error.hint
    assert "Hint: " in str(error)


def test_parse_rates_refuses_a_channel_repeated_across_options() -> None:
    with pytest.raises(ConfigError, match="sms is given more than once"):
        parse_rates(["sms=50/s", "email=2/s,sms=10/s"], channels=CHANNELS)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {}),
        (["sms=4"], {"sms": 4}),
        (["sms=1,email=100"], {"sms": 1, "email": 100}),
        (["sms=4", "social=1"], {"sms": 4, "social": 1}),
        ([" SMS = 4 "], {"sms": 4}),
        # 128 SMS in flight: what the async Twilio path carries (bench/scale.py)
        (["sms=128"], {"sms": 128}),
        (["sms=256"], {"sms": 256}),
    ],
)
def test_parse_concurrency(values: list[str], expected: dict[str, int]) -> None:
    assert parse_concurrency(values, channels=CHANNELS) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("sms=0", "'0' is not a whole number from 1 to 256"),
        ("sms=257", "'257' is not a whole number from 1 to 256"),
        ("sms=four", "'four' is not a whole number"),
        ("sms=2.5", "'2.5' is not a whole number"),
        ("sms", "needs a channel and a value"),
        ("pigeon=3", "unknown channel 'pigeon'"),
        ("sms=4,sms=5", "sms is given more than once"),
        ("", "is empty"),
    ],
)
def test_parse_concurrency_refuses_with_a_hint(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_concurrency([value], channels=CHANNELS)
    assert says in caught.value.message
    assert "--concurrency" in caught.value.message
    assert caught.value.hint and "--concurrency sms=4" in caught.value.hint


def test_importing_the_module_stays_light() -> None:
    # cli.py may import this to parse options; `broadcast --help` must not pay for pydantic or Jinja2.
    code = "import sys, broadcast.rate; print(sorted(m for m in ('pydantic', 'jinja2', 'broadcast.plan') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- RateLimiter, simulated clock


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(1, 10),
    per=st.sampled_from([1.0, 60.0]),
    margin=st.sampled_from([0.0, MARGIN, 0.2]),
    gaps=st.lists(st.floats(0, 2.5), max_size=60),
)
def test_each_start_is_the_earliest_the_window_allows(count: int, per: float, margin: float, gaps: list[float]) -> None:
    """One caller, random arrivals: never more than count in any window, and never later than needed."""
    rate, clock = Rate(count, per), SimClock()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.sleep(seconds)

    limiter = RateLimiter(rate, margin=margin, clock=clock, sleep=sleep)
    window = per + margin
    starts: list[float] = []
    for gap in gaps:
        if gap:
            clock.sleep(gap * per)
        asked = clock.now
        assert limiter.acquire()
        start = clock.last()
        earliest = max(asked, starts[-count] + window) if len(starts) >= count else asked
        assert earliest - EPS <= start <= earliest + MIN_WAIT + EPS
        starts.append(start)
    assert_spaced(starts, rate, window)
    assert all(MIN_WAIT <= wait <= MAX_WAIT for wait in waits)  # wakes often enough to see a stop


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 6),
    threads=st.integers(2, 8),
    plans=st.lists(st.lists(st.floats(0, 0.5), min_size=1, max_size=15), min_size=8, max_size=8),
)
def test_many_threads_never_exceed_the_rate(count: int, threads: int, plans: list[list[float]]) -> None:
    """Threads with random pauses between requests share one limiter on a simulated clock."""
    rate, clock = Rate(count, 1.0), SimClock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    starts: list[float] = []
    record = threading.Lock()

    def caller(pauses: list[float]) -> None:
        for pause in pauses:
            if pause:
                clock.sleep(pause)
            assert limiter.acquire()
            with record:
                starts.append(clock.last())

    workers = [threading.Thread(target=caller, args=(plan,)) for plan in plans[:threads]]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(starts) == sum(len(plan) for plan in plans[:threads])
    assert_spaced(starts, rate, 1.0 + MARGIN)
    assert max_in_window(starts, 1.0) <= count


def test_stop_while_waiting_returns_false_and_takes_no_slot() -> None:
    clock = SimClock()
    stop = threading.Event()
    limiter = RateLimiter(Rate(1, 60.0), clock=clock, sleep=lambda s: (clock.sleep(s), stop.set()))
    assert limiter.acquire(stop)
    assert limiter.acquire(stop) is False
    assert clock.sleeps == [MAX_WAIT]  # it woke within MAX_WAIT to look at stop
    stop.clear()
    clock.now += 60.0 + MARGIN
    assert limiter.acquire(stop)  # the stopped caller held nothing
    assert len(clock.sleeps) == 1


def test_a_set_stop_refuses_at_once() -> None:
    stop = threading.Event()
    stop.set()
    assert RateLimiter(Rate(5, 1.0)).acquire(stop) is False


def test_bad_limiter_settings_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        RateLimiter(Rate(0, 1.0))
    with pytest.raises(ValueError):
        RateLimiter(Rate(1, 1.0), margin=-0.1)


# ---------------------------------------------------------------- real clock


def test_eight_threads_at_forty_a_second_on_the_real_clock() -> None:
    """8 threads asking as fast as they can for 1.3 s: at most 40 in any 1 s, and at least 90% of 40/s."""
    rate = Rate(40, 1.0)
    gate = Gate(rate)
    starts: list[float] = []
    record = threading.Lock()
    stop = threading.Event()

    def caller() -> None:
        while True:
            with gate.request(stop) as ok:
                if not ok:
                    return
                with record:
                    starts.append(time.monotonic())
                time.sleep(0.002)  # the request itself

    workers = [threading.Thread(target=caller) for _ in range(8)]
    timer = threading.Timer(1.3, stop.set)
    timer.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert max_in_window(starts, 1.0) <= 40
    starts.sort()
    assert len(starts) == 80  # two windows' worth: 40 at once, then 40 more a window later
    # Asking without pause, the 41st start comes one window (1 s + margin) after the first: 40 per window
    # is the achieved rate, and it must be at least 90% of the limit.
    achieved = rate.count / (starts[rate.count] - starts[0])
    assert achieved >= 0.9 * rate.per_second, achieved


def test_stop_wakes_a_waiting_caller_promptly() -> None:
    limiter = RateLimiter(Rate(1, 10.0))
    stop = threading.Event()
    assert limiter.acquire(stop)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limiter.acquire(stop)))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive()  # really waiting
    stop.set()
    set_at = time.monotonic()
    waiter.join(1.0)
    assert result == [False]
    assert time.monotonic() - set_at < 0.3


# ---------------------------------------------------------------- Gate


def test_gate_caps_requests_in_flight() -> None:
    gate = Gate(concurrency=3)
    in_flight = most = 0
    count = threading.Lock()

    def caller() -> None:
        nonlocal in_flight, most
        for _ in range(5):
            with gate.request() as ok:
                assert ok
                with count:
                    in_flight += 1
                    most = max(most, in_flight)
                time.sleep(0.005)
                with count:
                    in_flight -= 1

    workers = [threading.Thread(target=caller) for _ in range(10)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert most == 3


def test_gate_stop_while_waiting_for_a_seat() -> None:
    gate = Gate(Rate(100, 1.0), concurrency=1)
    stop = threading.Event()
    held, release = threading.Event(), threading.Event()
    result: list[bool] = []

    def holder() -> None:
        with gate.request(stop) as ok:
            assert ok
            held.set()
            release.wait(2)

    def waiter() -> None:
        with gate.request(stop) as ok:
            result.append(ok)

    first = threading.Thread(target=holder)
    first.start()
    held.wait(1)
    second = threading.Thread(target=waiter)
    second.start()
    time.sleep(0.05)
    stop.set()
    set_at = time.monotonic()
    second.join(1)
    assert result == [False]
    assert time.monotonic() - set_at < 0.3
    release.set()
    first.join(1)
    stop.clear()
    with gate.request(stop) as ok:  # the one seat came back; the stopped waiter held none
        assert ok


def test_gate_gives_the_seat_back_when_the_request_fails() -> None:
    gate = Gate(concurrency=1)
    with pytest.raises(RuntimeError), gate.request() as ok:
        assert ok
        raise RuntimeError("provider said no")
    stop = threading.Event()
    leaked = threading.Timer(0.5, stop.set)  # a leaked seat would wait until this, then yield False
    leaked.start()
    with gate.request(stop) as ok:
        assert ok
    leaked.cancel()


def test_gate_without_limits_only_listens_to_stop() -> None:
    gate = Gate()
    stop = threading.Event()
    with gate.request(stop) as ok:
        assert ok
    stop.set()
    with gate.request(stop) as ok:
        assert not ok


def test_gates_one_per_channel_named() -> None:
    built = gates(
        parse_rates(["sms=50/s,email=2/s"], channels=CHANNELS), parse_concurrency(["sms=4,social=1"], channels=CHANNELS)
    )
    assert sorted(built) == ["email", "sms", "social"]
    assert (built["sms"].rate, built["sms"].concurrency) == (Rate(50, 1.0), 4)
    assert (built["email"].rate, built["email"].concurrency) == (Rate(2, 1.0), None)
    assert (built["social"].rate, built["social"].concurrency) == (None, 1)
