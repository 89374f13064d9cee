"""Drive the channel adapters: batches, bounded concurrency, retries of transient failures, receipts out."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broadcast.channels.base import Channel
from broadcast.channels.outbox import Outbox, OutboxChannel
from broadcast.errors import ChannelError
from broadcast.message import INTERRUPTED, Decision, Message, Receipt
from broadcast.plan import Plan, Triage, by_channel

if TYPE_CHECKING:
    from broadcast.ledger import Ledger
    from broadcast.rate import Gate


log = logging.getLogger(__name__)
#: messages claimed in the ledger per transaction before they are sent
CLAIM_CHUNK = 200
#: receipts recorded in the ledger per transaction after they are sent
SETTLE_CHUNK = 200


class Clock:
    """Real time for retries: monotonic seconds, and waits that Ctrl-C cuts short. Tests pass a fake one."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Wait ``seconds``; False as soon as ``stop`` is set (Ctrl-C), and then nothing more may start."""
        return not stop.wait(seconds) if seconds > 0 else not stop.is_set()


@dataclass(frozen=True)
class RetryPolicy:
    """Retry only transient failures (stamina's model): bounded attempts, jittered exponential backoff, and a
    deadline per message, counted from its first attempt; a provider's Retry-After is honoured up to it."""

    attempts: int = 5
    base_delay: float = 1.0
    #: the longest of our own backoffs; a provider's Retry-After may ask for longer, up to the deadline
    max_delay: float = 60.0
    #: seconds from a message's first attempt after which it is left for the next run
    deadline: float = 900.0
    #: the testing switch: BROADCAST_NO_WAIT=1 makes retries immediate so tests never sleep
    wait: bool = field(default_factory=lambda: os.environ.get("BROADCAST_NO_WAIT", "") != "1")
    clock: Clock = field(default_factory=Clock)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """How long to wait before attempt ``attempt + 1``; a provider's Retry-After wins when longer."""
        if not self.wait:
            return 0.0
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        jittered = random.uniform(backoff / 2, backoff)
        return max(jittered, retry_after or 0.0)


#: failed receipts kept for the report; beyond this only their number is kept, so a million failures cost no memory
MAX_FAILURES_KEPT = 1000


@dataclass
class Outcome:
    """What the send step did, counted from receipts only."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    #: the first MAX_FAILURES_KEPT failed, retry and unknown receipts (failed_total counts them all)
    failures: list[Receipt] = field(default_factory=list)
    failed_total: int = 0
    #: channel → messages Ctrl-C left unsent: taken from the plan, their receipts say so (status "not_started") ...
    not_started: Counter[str] = field(default_factory=Counter)
    #: ... and never read from the plan at all, counted from the plan by execute()
    unread: Counter[str] = field(default_factory=Counter)
    #: channel → the message of the error that stopped it
    stopped: dict[str, str] = field(default_factory=dict)
    #: channel → unknowns from an earlier run that the provider confirmed as delivered
    reconciled: Counter[str] = field(default_factory=Counter)
    #: the person pressed Ctrl-C: what had not started was left for the next run
    interrupted: bool = False

    def add(self, receipts: Iterable[Receipt]) -> None:
        for receipt in receipts:
            self.counts.setdefault(receipt.channel, Counter())[receipt.status] += 1
            if receipt.status == "not_started":
                self.not_started[receipt.channel] += 1
            elif receipt.status in ("failed", "retry", "unknown"):
                self.failed_total += 1
                if len(self.failures) < MAX_FAILURES_KEPT:
                    self.failures.append(receipt)


ReceiptSink = Callable[[list[Receipt]], None]
#: marks messages in flight before the provider is called (the ledger); returns the ones this run owns
Claim = Callable[[list[Message]], list[Message]]


def deliver(
    messages: Iterable[Message] | Mapping[str, Iterable[Message]],
    channels: Mapping[str, Channel],
    *,
    policy: RetryPolicy | None = None,
    claim: Claim | None = None,
    on_receipts: ReceiptSink | None = None,
    progress: ReceiptSink | None = None,
    limits: Mapping[str, Gate] | None = None,
) -> Outcome:
    """Send every message through its channel's adapter and return the counted receipts.

    ``messages`` is either one stream per channel (the pipeline: each is consumed as it is sent, so
    nothing is held) or a flat list, grouped here. Channels run side by side; a channel that raises
    ChannelError stops alone and its remaining messages are failed with that reason, so one bad
    credential never blocks the other channels. ``limits`` holds a rate.Gate per channel (--rate,
    --concurrency): each adapter waits on it before every request, and its concurrency sets the senders.
    """
    policy = policy or RetryPolicy()
    outcome = Outcome()
    lock = threading.Lock()

    buffer: list[Receipt] = []
    settle_now = {name for name, c in channels.items() if type(c).reconcile is Channel.reconcile}

    def settle(receipts: list[Receipt]) -> None:
        # receipts are recorded in chunks, never one transaction per message; a crash before a flush
        # leaves those rows in flight, which the next run treats as unknown (reconciled where it can be)
        due: list[Receipt] = []
        with lock:
            outcome.add(receipts)
            if progress:
                progress(receipts)
            if on_receipts:
                buffer.extend(receipts)
                # channels without a provider look-up record at once: a crash must not turn their sends into unknowns
                if len(buffer) >= SETTLE_CHUNK or any(r.channel in settle_now for r in receipts):
                    due = buffer[:]
                    buffer.clear()
        if due:
            # outside the lock: each sender records its own receipts while the others go on sending
            on_receipts(due)

    groups = dict(messages) if isinstance(messages, Mapping) else by_channel(messages)
    interrupted = threading.Event()
    for name in groups:
        channels[name].gate = (limits or {}).get(name)
        channels[name].stop = interrupted
    done = {name: threading.Event() for name in groups}

    errors: list[BaseException] = []

    def run(name: str, stream: Iterable[Message]) -> None:
        try:
            _run_channel(channels[name], stream, policy, claim, settle, outcome, interrupted)
        except BaseException as exc:  # noqa: BLE001 - the stream reads the ledger: its errors belong to the caller
            errors.append(exc)
        finally:
            done[name].set()

    threads = [threading.Thread(target=run, args=item, name=f"send-{item[0]}") for item in groups.items()]
    for thread in threads:
        thread.start()
    try:
        _wait(done.values())
    except KeyboardInterrupt:
        # Ctrl-C: send no new batch, let requests already in flight finish and be recorded, then report
        interrupted.set()
        outcome.interrupted = True
        _wait(done.values())
    for thread in threads:
        thread.join()
    if on_receipts and buffer:
        on_receipts(buffer[:])
    if errors:
        # what was sent is recorded above; the error (a ledger that went away, say) is reported as usual
        raise errors[0]
    return outcome


def _wait(events: Iterable[threading.Event]) -> None:
    # Events, not Thread.join: a KeyboardInterrupt inside join() can leave a live thread looking finished
    for event in events:
        while not event.wait(0.2):
            pass


def batches(channel: Channel, messages: Iterable[Message]) -> Iterator[list[Message]]:
    """Batches of at most ``max_batch`` messages that share one rendering, cut from a stream as they fill.

    One open batch per (language, variant) is all that is held, and each full one leaves at once.
    """
    if channel.max_batch <= 1:
        for message in messages:
            yield [message]
        return
    open_batches: dict[tuple[str, str], list[Message]] = {}
    for message in messages:
        key = (message.language, message.rendering.variant)
        batch = open_batches.setdefault(key, [])
        batch.append(message)
        if len(batch) >= channel.max_batch:
            yield open_batches.pop(key)
    yield from open_batches.values()


def _run_channel(
    channel: Channel,
    messages: Iterable[Message],
    policy: RetryPolicy,
    claim: Claim | None,
    settle: ReceiptSink,
    outcome: Outcome,
    interrupted: threading.Event,
) -> None:
    stop = threading.Event()
    stop_reason: list[str] = []

    def work(batch: list[Message]) -> None:
        if interrupted.is_set():
            settle([Receipt(m.id, m.channel, m.recipient, "not_started", reason=INTERRUPTED) for m in batch])
            return
        if stop.is_set():
            settle(_fail(batch, stop_reason[0] if stop_reason else "channel stopped"))
            return
        try:
            settle(_send_with_retries(channel, batch, policy, interrupted))
        except ChannelError as exc:
            if not stop.is_set():
                stop_reason.append(f"{channel.name} stopped: {exc.message}")
                outcome.stopped[channel.name] = str(exc)
                stop.set()
            settle(_fail(batch, stop_reason[0]))
        except Exception as exc:  # noqa: BLE001 - an adapter bug mid-request: the batch may or may not have left
            from broadcast.config import mask

            reason = mask(f"unexpected error in the {channel.name} adapter ({type(exc).__name__}: {exc}); may have been sent")
            settle([Receipt(m.id, m.channel, m.recipient, "unknown", reason=reason) for m in batch])

    try:
        channel.open()
    except ChannelError as exc:
        outcome.stopped[channel.name] = str(exc)
        for group in _claim_groups(batches(channel, messages), CLAIM_CHUNK):
            settle(_fail([m for batch in group for m in batch], f"{channel.name} stopped: {exc.message}"))
        return
    try:
        senders = max(1, getattr(channel.gate, "concurrency", None) or channel.max_concurrency)
        with ThreadPoolExecutor(max_workers=senders, thread_name_prefix=channel.name) as pool:
            in_flight: deque[list[Future[None]]] = deque()
            # a claim group fills every sender at once (SendGrid: 4 × 1,000), so claiming never starves the pool
            group_size = max(CLAIM_CHUNK, channel.max_batch * senders)
            for group in _claim_groups(batches(channel, messages), group_size):
                if interrupted.is_set():
                    # Ctrl-C: read no further; what was never taken from the stream is counted as not started
                    break
                # a stopped channel claims nothing more: those rows stay as the next run expects them
                if claim is not None and not stop.is_set():
                    group = _claimed(group, claim, settle)
                in_flight.append([pool.submit(work, batch) for batch in group])
                # claim at most two groups ahead of what has been sent, so a crash leaves few rows in flight
                if len(in_flight) > 2:
                    for future in in_flight.popleft():
                        future.result()
            for futures in in_flight:
                for future in futures:
                    future.result()
    finally:
        channel.close()


def _claim_groups(all_batches: Iterable[list[Message]], size_limit: int) -> Iterator[list[list[Message]]]:
    """Consecutive batches holding about ``size_limit`` messages: one ledger claim covers them all."""
    group: list[list[Message]] = []
    size = 0
    for batch in all_batches:
        group.append(batch)
        size += len(batch)
        if size >= size_limit:
            yield group
            group, size = [], 0
    if group:
        yield group


def _claimed(group: list[list[Message]], claim: Claim, settle: ReceiptSink) -> list[list[Message]]:
    """Keep only the messages this run owns; the rest are held or settled by another run."""
    owned = {m.id for m in claim([m for batch in group for m in batch])}
    others = [_skip(m, "being sent by another run") for batch in group for m in batch if m.id not in owned]
    if others:
        settle(others)
    kept = [[m for m in batch if m.id in owned] for batch in group]
    return [batch for batch in kept if batch]


def _send_with_retries(
    channel: Channel, batch: list[Message], policy: RetryPolicy, interrupted: threading.Event
) -> list[Receipt]:
    final: dict[str, Receipt] = {}
    pending = batch
    # the deadline is each message's own, from its first attempt: a 429 late in a long send is still retried
    first_attempt = policy.clock.now()
    for attempt in range(1, policy.attempts + 1):
        receipts = channel.send(pending)
        if len(receipts) != len(pending):
            raise ChannelError(
                f"adapter returned {len(receipts)} receipts for {len(pending)} messages",
                hint="this is a bug in the channel adapter; please report it",
            )
        retry = [r for r in receipts if r.status == "retry"]
        log.debug(
            "%s: attempt %d, %d message(s) → %s", channel.name, attempt, len(pending),
            dict(Counter(r.status for r in receipts)),
        )
        for receipt in receipts:
            if receipt.status != "retry":
                final[receipt.message_id] = receipt
        if not retry:
            break
        retry_ids = {r.message_id for r in retry}
        pending = [m for m in pending if m.id in retry_ids]
        wait = policy.delay(attempt, max((r.retry_after or 0.0) for r in retry))
        out_of_time = policy.clock.now() + wait - first_attempt > policy.deadline
        if attempt == policy.attempts or out_of_time:
            # still "retry": the failure was transient, so the next run sends these again
            if out_of_time:
                why = f"deadline reached ({policy.deadline:g} s from the first attempt; the wait asked was {wait:g} s)"
            else:
                why = f"gave up after {attempt} attempts"
            for receipt in retry:
                final[receipt.message_id] = replace(receipt, reason=f"{why}: {receipt.reason}")
            break
        if not policy.clock.sleep(wait, interrupted):
            # Ctrl-C during the backoff: the retry never starts; the next run sends these
            for receipt in retry:
                final[receipt.message_id] = replace(receipt, status="not_started", reason=INTERRUPTED)
            break
    return [final[m.id] for m in batch]


def _fail(batch: Sequence[Message], reason: str) -> list[Receipt]:
    # a stopped channel is a transient state for its recipients: fix the credentials and re-run
    return [Receipt(m.id, m.channel, m.recipient, "retry", reason=reason) for m in batch]


def _skip(message: Message, reason: str) -> Receipt:
    return Receipt(message.id, message.channel, message.recipient, "skipped", reason=reason)


def dry_run_channels(plan: Plan, directory: str | Path) -> dict[str, Channel]:
    """Dry-run is ordinary sending through the outbox channel: nothing that talks to a network is built."""
    outbox = Outbox(directory)
    return {name: OutboxChannel(name, outbox) for name in plan.channels}


def live_channels(plan: Plan, settings: dict[str, Any]) -> dict[str, Channel]:
    """The real adapters for the planned channels, imported only now so --help and dry-runs stay fast."""
    from broadcast.channels import live_channel

    return {name: live_channel(name, settings[name]) for name in plan.channels}


def execute(
    plan: Plan,
    channels: dict[str, Channel],
    *,
    ledger: Ledger | None = None,
    policy: RetryPolicy | None = None,
    progress: Callable[[list[Receipt]], None] | None = None,
    limits: dict[str, Gate] | None = None,
) -> Outcome:
    """Send the plan through ``channels``, each batch claimed in the ledger before and settled after.

    ``limits`` holds a rate.Gate per channel (--rate, --concurrency); look-ups of earlier unknowns obey it too.
    """
    # triage decisions that claim needs (reminders, retried unknowns), from when a message streams out until it is claimed
    pending: dict[str, Decision] = {}

    decide = plan.decide or Triage(None, set())

    def stream(channel: str) -> Iterator[Message]:
        # a channel the ledger had no row for when the plan was counted needs no second look-up per message
        for decision in decide(plan.messages(channel), recorded=plan.recorded[channel] > 0):
            if decision.send:
                if decision.reason:
                    pending[decision.message.id] = decision
                yield decision.message

    for name, channel in channels.items():
        channel.gate = (limits or {}).get(name)
    if ledger is None:
        return _unread(plan, deliver(
            {name: stream(name) for name in plan.channels}, channels, policy=policy, progress=progress, limits=limits
        ))

    def claim(batch: list[Message]) -> list[Message]:
        return ledger.claim([pending.pop(m.id, None) or Decision(m, True) for m in batch])

    ledger.start_run(plan.notice.id)
    try:
        found = reconcile(plan, channels, ledger)
        outcome = deliver(
            {name: stream(name) for name in plan.channels}, channels,
            policy=policy, claim=claim, on_receipts=ledger.settle, progress=progress, limits=limits,
        )
        outcome.reconciled.update(found)
        return _unread(plan, outcome)
    finally:
        ledger.finish_run()


def _unread(plan: Plan, outcome: Outcome) -> Outcome:
    """After Ctrl-C: messages the senders never read from the plan were not started either; count them."""
    if outcome.interrupted:
        for name in plan.channels:
            settled = sum(n for status, n in outcome.counts.get(name, Counter()).items() if status != "skipped")
            outcome.unread[name] = max(0, plan.to_send[name] - settled)
    return outcome


def reconcile(plan: Plan, channels: dict[str, Channel], ledger: Ledger) -> Counter[str]:
    """Settle unknowns from an earlier run by asking providers that offer a look-up (Twilio).

    Found → recorded as sent; provably never arrived → recorded as a transient failure, so the send
    that follows picks it up; otherwise they stay unknown. Returns channel → messages found delivered.
    """
    from broadcast.ledger import now as ledger_now

    found: Counter[str] = Counter()
    remaining = []
    groups: dict[str, list[Decision]] = {}
    for decision in plan.unknowns:
        groups.setdefault(decision.message.channel, []).append(decision)
    for channel_name, group in groups.items():
        channel = channels.get(channel_name)
        owned = ledger.claim(group) if channel is not None else []
        by_id = {d.message.id: d for d in group}
        receipts = (
            channel.reconcile([(_as_tried(plan, by_id[m.id]), by_id[m.id].since or ledger_now()) for m in owned])
            if owned
            else None
        )
        if receipts is None:
            if owned:  # no look-up here: hand the rows back exactly as they were
                ledger.settle([Receipt(m.id, m.channel, m.recipient, "unknown", reason=by_id[m.id].reason) for m in owned])
            remaining.extend(group)
            continue
        ledger.settle(receipts)
        for receipt in receipts:
            if receipt.status == "sent":
                found[channel_name] += 1
            elif receipt.status == "retry":
                plan.to_send[channel_name] += 1
            else:
                remaining.append(by_id[receipt.message_id])
        owned_ids = {m.id for m in owned}
        remaining.extend(d for d in group if d.message.id not in owned_ids)
    plan.unknowns = remaining
    return found


def _as_tried(plan: Plan, decision: Decision) -> Message:
    """The message as the earlier attempt wrote it: in the language the ledger recorded, if that has changed since."""
    message, lang = decision.message, decision.language
    key = (message.channel, lang, message.rendering.variant)
    if not lang or lang == message.language or key not in plan.renders.renderings:
        return message
    return replace(message, language=lang, rendering=plan.renders.renderings[key])
