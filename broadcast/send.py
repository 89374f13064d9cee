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
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broadcast.approval import SendApproval
from broadcast.channels.base import Channel
from broadcast.channels.outbox import Outbox, OutboxChannel
from broadcast.check import Caution, long_sms_refusal
from broadcast.errors import Aborted, BroadcastError, ChannelError
from broadcast.message import INTERRUPTED, Decision, Message, Receipt
from broadcast.plan import Plan, PlanRequest, Triage, by_channel, over_limit, prepare
from broadcast.quiet import Held

if TYPE_CHECKING:
    from broadcast.ledger import Ledger
    from broadcast.rate import Gate


log = logging.getLogger(__name__)
#: messages claimed in the ledger per transaction before they are sent
CLAIM_CHUNK = 200
#: requests' worth of messages claimed per sender in one claim group, below CLAIM_CHUNK (claim_group_size)
CLAIM_PER_SENDER = 4
#: receipts recorded in the ledger per transaction after they are sent
SETTLE_CHUNK = 200
#: seconds at most between two such transactions, so a slow send's receipts are not held: a run killed mid-send
#: leaves in flight only what it sent in the last second (each is looked up at the provider by the next run)
SETTLE_EVERY = 1.0


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
    #: channel → messages held for the recipients' quiet hours: recorded as held, sent by the first run after them
    held: Counter[str] = field(default_factory=Counter)

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
#: marks messages in flight before the provider is called (the ledger), each with the triage decision that let it
#: through (a reminder, a retried unknown); returns the messages this run owns
Claim = Callable[[list[Decision]], list[Message]]


class Recorder:
    """Counts every receipt, shows progress, and records receipts in the ledger in chunks.

    A crash before a flush leaves those rows in flight, which the next run treats as unknown (reconciled where
    it can be); channels without a provider look-up record at once, so a crash never makes their sends unknown.
    """

    def __init__(self, outcome: Outcome, record: ReceiptSink | None, progress: ReceiptSink | None, at_once: set[str]) -> None:
        self.outcome, self.record, self.progress, self.at_once = outcome, record, progress, at_once
        self._lock = threading.Lock()
        self._buffer: list[Receipt] = []
        self._next_flush = time.monotonic() + SETTLE_EVERY

    def __call__(self, receipts: list[Receipt]) -> None:
        due: list[Receipt] = []
        with self._lock:
            self.outcome.add(receipts)
            if self.progress:
                self.progress(receipts)
            if self.record:
                self._buffer.extend(receipts)
                if (len(self._buffer) >= SETTLE_CHUNK or any(r.channel in self.at_once for r in receipts)
                        or time.monotonic() >= self._next_flush):
                    due, self._buffer = self._buffer, []
                    self._next_flush = time.monotonic() + SETTLE_EVERY
        if due and self.record:
            # outside the lock: each sender records its own receipts while the others go on sending
            self.record(due)

    def flush(self) -> None:
        with self._lock:
            due, self._buffer = self._buffer, []
        if due and self.record:
            self.record(due)


def deliver(
    messages: Iterable[Message | Decision] | Mapping[str, Iterable[Message | Decision]],
    channels: Mapping[str, Channel],
    *,
    policy: RetryPolicy | None = None,
    claim: Claim | None = None,
    on_receipts: ReceiptSink | None = None,
    progress: ReceiptSink | None = None,
) -> Outcome:
    """Send every message through its channel's adapter and return the counted receipts.

    ``messages`` is either one stream per channel (each consumed as it is sent, so nothing is held; a stream
    may carry the ledger's Decisions, which go straight to ``claim``) or a flat list, grouped here. Channels run
    side by side; a channel that raises ChannelError stops alone and its remaining messages are failed with that
    reason, so one bad credential never blocks the other channels. Each adapter was built with its own rate gate
    (--rate, --concurrency) and Ctrl-C event; on Ctrl-C every adapter's event is set, so no request starts after it.
    """
    policy = policy or RetryPolicy()
    outcome = Outcome()
    recorder = Recorder(outcome, on_receipts, progress, {n for n, c in channels.items() if not c.looks_up_lost_answers()})
    groups = dict(messages) if isinstance(messages, Mapping) else by_channel(messages)
    interrupted = threading.Event()
    senders = [ChannelSender(channels[name], stream, policy, claim, recorder, interrupted) for name, stream in groups.items()]
    threads = [threading.Thread(target=sender.run, name=f"send-{sender.channel.name}") for sender in senders]
    for thread in threads:
        thread.start()
    try:
        _wait(sender.done for sender in senders)
    except KeyboardInterrupt:
        # Ctrl-C: send no new batch, let requests already in flight finish and be recorded, then report
        interrupted.set()
        for channel in channels.values():
            channel.stop.set()
        outcome.interrupted = True
        _wait(sender.done for sender in senders)
    for thread in threads:
        thread.join()
    recorder.flush()
    errors = [sender.error for sender in senders if sender.error is not None]
    if errors:
        # what was sent is recorded above; the error (a ledger that went away, say) is reported as usual
        raise errors[0]
    return outcome


def _wait(events: Iterable[threading.Event]) -> None:
    # Events, not Thread.join: a KeyboardInterrupt inside join() can leave a live thread looking finished
    for event in events:
        while not event.wait(0.2):
            pass


def batches(channel: Channel, items: Iterable[Message | Decision]) -> Iterator[list[Decision]]:
    """Batches of at most ``max_batch`` decisions whose messages share one rendering, cut from a stream as they fill.

    One open batch per (language, variant) is all that is held, and each full one leaves at once.
    """
    decisions = (item if isinstance(item, Decision) else Decision(item, True) for item in items)
    if channel.max_batch <= 1:
        for decision in decisions:
            yield [decision]
        return
    open_batches: dict[tuple[str, str], list[Decision]] = {}
    for decision in decisions:
        message = decision.message
        key = (message.language, message.rendering.variant)
        batch = open_batches.setdefault(key, [])
        batch.append(decision)
        if len(batch) >= channel.max_batch:
            yield open_batches.pop(key)
    yield from open_batches.values()


class ChannelSender:
    """Sends one channel's stream: claims groups of batches, runs them on the channel's senders, and settles
    every receipt; a ChannelError stops this channel alone."""

    def __init__(
        self,
        channel: Channel,
        stream: Iterable[Message | Decision],
        policy: RetryPolicy,
        claim: Claim | None,
        recorder: Recorder,
        interrupted: threading.Event,
    ) -> None:
        self.channel, self.stream, self.policy, self.claim = channel, stream, policy, claim
        self.settle, self.outcome, self.interrupted = recorder, recorder.outcome, interrupted
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stopped: str | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - the stream reads the ledger: its errors belong to the caller
            self.error = exc
        finally:
            self.done.set()

    def _run(self) -> None:
        channel = self.channel
        try:
            channel.open()
        except ChannelError as exc:
            self.outcome.stopped[channel.name] = str(exc)
            for group in _claim_groups(batches(channel, self.stream), CLAIM_CHUNK):
                self.settle(_fail([d.message for batch in group for d in batch], f"{channel.name} stopped: {exc.message}"))
            return
        try:
            senders = max(1, getattr(channel.gate, "concurrency", None) or channel.max_concurrency)
            with ThreadPoolExecutor(max_workers=senders, thread_name_prefix=channel.name) as pool:
                in_flight: deque[list[Future[None]]] = deque()
                # a claim group fills every sender at once (SendGrid: 4 × 1,000), so claiming never starves the pool;
                # with few senders a group is a few requests each, so runners sharing a ledger split the work evenly
                # instead of one holding hundreds of SMS it will take minutes to send (claim_group_size)
                group_size = claim_group_size(channel.max_batch, senders)
                for group in _claim_groups(batches(channel, self.stream), group_size):
                    if self.interrupted.is_set():
                        # Ctrl-C: read no further; what was never taken from the stream is counted as not started
                        break
                    in_flight.append([pool.submit(self._work, batch) for batch in self._owned(group)])
                    # claim at most two groups ahead of what has been sent, so a crash leaves few rows in flight
                    if len(in_flight) > 2:
                        for future in in_flight.popleft():
                            future.result()
                for futures in in_flight:
                    for future in futures:
                        future.result()
        finally:
            channel.close()

    def _owned(self, group: list[list[Decision]]) -> list[list[Message]]:
        """The group's messages this run owns; the rest are held or settled by another run. A stopped channel
        claims nothing more: those rows stay as the next run expects them."""
        if self.claim is None or self._stopped is not None:
            return [[d.message for d in batch] for batch in group]
        owned = {m.id for m in self.claim([d for batch in group for d in batch])}
        others = [_skip(d.message, "being sent by another run") for batch in group for d in batch if d.message.id not in owned]
        if others:
            self.settle(others)
        kept = [[d.message for d in batch if d.message.id in owned] for batch in group]
        return [batch for batch in kept if batch]

    def _work(self, batch: list[Message]) -> None:
        channel = self.channel
        if self.interrupted.is_set():
            self.settle([Receipt(m.id, m.channel, m.recipient, "not_started", reason=INTERRUPTED) for m in batch])
            return
        if self._stopped is not None:
            self.settle(_fail(batch, self._stopped))
            return
        try:
            self.settle(_send_with_retries(channel, batch, self.policy, self.interrupted))
        except ChannelError as exc:
            with self._lock:
                if self._stopped is None:
                    self._stopped = f"{channel.name} stopped: {exc.message}"
                    self.outcome.stopped[channel.name] = str(exc)
            self.settle(_fail(batch, self._stopped))
        except Exception as exc:  # noqa: BLE001 - an adapter bug mid-request: the batch may or may not have left
            from broadcast.config import mask

            reason = mask(f"unexpected error in the {channel.name} adapter ({type(exc).__name__}: {exc}); may have been sent")
            self.settle([Receipt(m.id, m.channel, m.recipient, "unknown", reason=reason) for m in batch])


def claim_group_size(max_batch: int, senders: int) -> int:
    """Messages claimed in one ledger transaction: enough to fill every sender at once, at most CLAIM_CHUNK unless
    one round of batches is more, and CLAIM_PER_SENDER requests a sender below that. The claim loop holds at most
    three groups claimed and unsent: another runner on the same ledger cannot take them, and a SIGKILLed run leaves
    them in flight. At 4 SMS at once and 200 ms each, 3 × 16 is 2.4 s of sending, where 3 × 200 was 30 s."""
    return max(max_batch * senders, min(CLAIM_CHUNK, CLAIM_PER_SENDER * senders))


def _claim_groups(all_batches: Iterable[list[Decision]], size_limit: int) -> Iterator[list[list[Decision]]]:
    """Consecutive batches holding about ``size_limit`` messages: one ledger claim covers them all."""
    group: list[list[Decision]] = []
    size = 0
    for batch in all_batches:
        group.append(batch)
        size += len(batch)
        if size >= size_limit:
            yield group
            group, size = [], 0
    if group:
        yield group


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


def dry_run_channels(
    channels: Iterable[str], directory: str | Path, *, stop: threading.Event | None = None, outbox: Outbox | None = None
) -> dict[str, Channel]:
    """Dry-run is ordinary sending through the outbox channel: nothing that talks to a network is built."""
    outbox = outbox or Outbox(directory)
    return {name: OutboxChannel(name, outbox, stop=stop) for name in channels}


def live_channels(
    plan: Plan, settings: Mapping[str, Any], *, limits: Mapping[str, Gate] | None = None, stop: threading.Event | None = None
) -> dict[str, Channel]:
    """The real adapters for the planned channels, each with this run's rate gate (--rate, --concurrency) and the
    Ctrl-C event every adapter checks before a request."""
    from broadcast.channels import live_channel

    return {name: live_channel(name, settings[name], gate=(limits or {}).get(name), stop=stop) for name in plan.channels}


def execute(
    plan: Plan,
    channels: dict[str, Channel],
    *,
    ledger: Ledger | None = None,
    policy: RetryPolicy | None = None,
    progress: Callable[[list[Receipt]], None] | None = None,
    on_held: Callable[[list[Held]], None] | None = None,
) -> Outcome:
    """Send the plan through ``channels``, each batch claimed in the ledger before and settled after.

    The ledger's triage decides each message as it streams out, and the decision goes with it to the claim:
    a reminder or a retried unknown is claimed as one. Look-ups of earlier unknowns obey each channel's gate.
    A message held for quiet hours is not sent: it is recorded as held in the ledger (or given to ``on_held``:
    the dry-run's plan.csv) and counted.
    """
    decide = plan.decide or Triage(None, set())
    held: Counter[str] = Counter()
    lock = threading.Lock()

    def record_held(waiting: list[Held]) -> None:
        if waiting:
            if ledger is not None:
                ledger.hold([(d.message, d.until) for d in waiting])
            elif on_held is not None:
                on_held(waiting)
            with lock:
                held[waiting[0].message.channel] += len(waiting)

    def stream(channel: str) -> Iterator[Decision]:
        # a channel the ledger had no row for when the plan was counted needs no second look-up per message
        waiting: list[Held] = []
        for decision in decide(plan.messages(channel), recorded=plan.recorded[channel] > 0):
            if decision.send:
                yield decision
            elif isinstance(decision, Held):
                waiting.append(decision)
                if len(waiting) >= CLAIM_CHUNK:
                    record_held(waiting)
                    waiting = []
        record_held(waiting)

    if ledger is None:
        outcome = deliver({name: stream(name) for name in plan.channels}, channels, policy=policy, progress=progress)
        outcome.held.update(held)
        return _unread(plan, outcome)
    ledger.start_run(plan.notice.id)
    try:
        found = reconcile(plan, channels, ledger)
        outcome = deliver(
            {name: stream(name) for name in plan.channels}, channels,
            policy=policy, claim=ledger.claim, on_receipts=ledger.settle, progress=progress,
        )
        outcome.reconciled.update(found)
        outcome.held.update(held)
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
        # each asked about, claimed and settled as it was tried: its row may be another language's version
        group = [replace(d, message=_as_tried(plan, d)) for d in group]
        owned = ledger.claim(group) if channel is not None else []
        by_id = {d.message.id: d for d in group}
        receipts = (
            channel.reconcile([(m, by_id[m.id].since or ledger_now()) for m in owned]) if owned else None
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
    """The message as the earlier attempt wrote it: in the language and under the version the ledger recorded, if
    either has changed since (a corrected contact; see Message.equivalents)."""
    message, lang = decision.message, decision.language
    if decision.version and decision.version != message.version:
        message = replace(message, version=decision.version)
    key = (message.channel, lang, message.rendering.variant)
    if not lang or lang == message.language or key not in plan.renders.renderings:
        return message
    return replace(message, language=lang, rendering=plan.renders.renderings[key])



# -- the send command: one request in, one result out ------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    """What `broadcast send` (and `preview`, a dry-run) was asked, with the plan it sends."""

    plan: PlanRequest
    #: render and plan, write the outbox and the preview page, send nothing
    dry_run: bool = False
    out_dir: Path = Path("outbox")
    #: the person said to send without being asked (required when no one is there to ask)
    yes: bool = False
    #: the run's own settings, read by the channels they concern (config.channel_settings)
    sandbox: bool = False
    #: a folder, s3://BUCKET/FOLDER or git+URL#BRANCH[:FOLDER] (channels/publish.py)
    web_dir: str | Path | None = None
    #: --rate and --concurrency, as typed: "sms=50/s", "sms=4"
    rates: tuple[str, ...] = ()
    concurrency: tuple[str, ...] = ()
    brief_dir: Path | None = None
    trust_env_file: bool = False
    #: also write the CAP 1.2 alert of this release and the Atom feed here (--feed-dir / BROADCAST_FEED_DIR)
    feed_dir: Path | None = None
    #: who sends (--as), and --self-approve / --no-approval (approval.gate)
    approval: SendApproval = SendApproval()


@dataclass
class SendResult:
    """What a send or a dry-run did, for the report and the exit code."""

    #: None when the notice had expired: nothing was planned
    plan: Plan | None
    outcome: Outcome
    warnings: list[Caution]
    #: the ledger used, as it may be shown (password hidden); found: a dry-run read one
    ledger: str
    dry_run: bool
    ledger_found: bool = True
    #: the dry-run's preview page
    page: Path | None = None
    #: what a live send of the same input would refuse (a dry-run shows the preview first, then stops on it)
    refusal: BroadcastError | None = None
    #: provider addresses and credentials from different places, sent anyway because --trust-env-file said so
    trusted: list[str] = field(default_factory=list)
    #: when the notice expired, if it had: then nothing was planned or sent
    expired: Any = None
    #: the release this send recorded (number, phase, type), and the CAP files it wrote
    release: dict[str, Any] | None = None
    feed: list[Path] = field(default_factory=list)
    #: how the send got past approval: "" (not required), "approved", "self-approved", "override: REASON"
    approval: str = ""

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C; 1 when anyone was not reached (a failure, a stopped channel, a rejected contact row)."""
        if self.plan is None:
            return 1 if self.outcome.failures else 0  # expired: nothing to send; a banner that stayed up is a failure
        if self.outcome.interrupted:
            return 130
        if self.dry_run:
            return 1 if self.plan.book.rejected else 0  # what the live send would return for its contacts
        return 1 if self.outcome.failures or self.outcome.stopped or self.plan.book.rejected else 0


#: asks the person whether to send the plan now (shown with its cautions); None: no one is there to ask
Confirm = Callable[[Plan, "list[Caution]"], bool]
#: a context manager around the send that yields a progress callback (or None), given the plan
Progress = Callable[[Plan], Any]


def run(request: SendRequest, *, confirm: Confirm | None = None, progress: Progress | None = None) -> SendResult:
    """`broadcast send`: check the credentials, plan against the ledger, ask, send and record; or, with
    ``dry_run``, the same plan written to the outbox and the preview page, with nothing sent."""
    from broadcast import approval, lifecycle
    from broadcast.channels import REGISTRY, defaults, names
    from broadcast.config import channel_settings, trust_problems
    from broadcast.ledger import now, open_ledger, resolve_url, stray_ledger
    from broadcast.notice import load_notice
    from broadcast.rate import gates, parse_concurrency, parse_rates

    notice = load_notice(request.plan.notice)
    if notice.expired(now()):
        return _expired(request, notice)
    # a feed that could not be written must stop the send before it starts, not after it went out
    sender = lifecycle.feed_sender(notice, request.plan.notice) if request.feed_dir is not None else ""
    if request.dry_run:
        return _dry_run(request, notice)
    chosen = request.plan.channels or defaults()
    limits = gates(parse_rates(request.rates, channels=names()), parse_concurrency(request.concurrency, channels=names()))
    # credentials first: a send that cannot go out stops before it touches contacts or the ledger
    settings = channel_settings(
        [REGISTRY[c] for c in chosen], sandbox=request.sandbox, web_dir=request.web_dir,
        trust_env_file=request.trust_env_file,
    )
    trusted = trust_problems([REGISTRY[c] for c in chosen]) if request.trust_env_file else []
    where = resolve_url(request.plan.ledger, request.plan.notice)
    stray_ledger(request.plan.notice, where, live=True, chosen=request.plan.ledger)
    ledger = open_ledger(where, dry_run=False)
    try:
        result = _live(request, notice, ledger, settings, limits, trusted, sender, confirm, progress)
    except BroadcastError as exc:
        # a refusal is part of the story too: who tried to send what, and why it did not go; a ledger that cannot
        # take the entry must not hide the refusal itself
        with suppress(BroadcastError):
            approval.record(ledger, "send", notice.id, approval.identity(request.approval.who), exit_code=exc.exit_code,
                           detail=approval.refused(exc))
        raise
    except KeyboardInterrupt:
        with suppress(BroadcastError):
            approval.record(ledger, "stop", notice.id, approval.identity(request.approval.who), exit_code=130,
                           detail="interrupted before sending")
        raise
    return result


def _live(
    request: SendRequest, notice: Any, ledger: Ledger, settings: Any, limits: Any, trusted: list[str], sender: str,
    confirm: Confirm | None, progress: Progress | None,
) -> SendResult:
    from broadcast import approval, lifecycle
    from broadcast.ledger import masked_url, now, resolve_url

    where = resolve_url(request.plan.ledger, request.plan.notice)
    lifecycle.refuse_cancelled(ledger, notice, request.plan.notice)
    plan, warnings = prepare(request.plan, ledger)
    refusal = long_sms_refusal(over_limit(plan, request.plan.max_sms_segments), request.plan.max_sms_segments, force=request.plan.force)
    if refusal is not None:
        raise refusal
    # after the plan (the wording as it would go out) and before anyone is asked: unapproved content stops here
    gated = approval.gate(ledger, plan, request.approval, request.plan.notice)
    if gated.how.startswith("override"):
        warnings.append(Caution("approval", f"sent WITHOUT approval ({gated.how}); recorded in the audit log"))
    elif gated.how == "self-approved":
        warnings.append(Caution("approval", f"self-approved: the sender {gated.sender} approved this content (--self-approve)"))
    if request.brief_dir is not None:
        # written first, so the people who answer have it before the first customer reads the notice
        from broadcast.brief import for_renders

        for_renders(plan.renders, request.brief_dir, templates_dir=request.plan.templates_dir)
    if not request.yes and plan.total:
        if confirm is None:
            raise Aborted(
                "refusing a live send without --yes in a non-interactive shell; nothing was sent",
                hint="preview first with --dry-run, then add --yes to send",
            )
        if not confirm(plan, warnings):
            raise Aborted("cancelled; nothing was sent")
    stop = threading.Event()
    channels = live_channels(plan, settings, limits=limits, stop=stop)
    with (progress(plan) if progress else nullcontext()) as advance:
        outcome = execute(plan, channels, ledger=ledger, progress=advance)
    result = SendResult(plan, outcome, warnings, masked_url(where), dry_run=False, trusted=trusted, approval=gated.how)
    if any(counts["sent"] for counts in outcome.counts.values()):
        # this content went out: the timeline (`status`) and the CAP feed list it as a release
        result.release = lifecycle.record_release(ledger, plan.notice, sender=sender)
        if request.feed_dir is not None:
            result.feed = lifecycle.write_feed(ledger, plan.notice, request.feed_dir, request.plan.notice, now=now())
    counts = {name: dict(outcome.counts.get(name, {})) for name in plan.channels}
    approval.record(
        ledger, "stop" if outcome.interrupted else "send", notice.id, gated.sender,
        fp=approval.plan_fingerprint(plan, audience=False), counts=counts, exit_code=result.exit_code,
        detail=gated.how,
    )
    return result


def _expired(request: SendRequest, notice: Any) -> SendResult:
    """After ``expires``: nothing is sent; what shows the notice while it is current (the banner) is taken down."""
    from broadcast.channels import REGISTRY, defaults, live_channel
    from broadcast.config import channel_settings
    from broadcast.ledger import masked_url, resolve_url
    from broadcast.message import Rendering

    outcome = Outcome()
    standing = [c for c in (request.plan.channels or defaults()) if REGISTRY[c].standing]
    if standing and not request.dry_run:
        settings = channel_settings([REGISTRY[c] for c in standing], web_dir=request.web_dir, sandbox=request.sandbox,
                                    trust_env_file=request.trust_env_file)
        for name in standing:
            adapter = REGISTRY[name]
            messages = [
                Message(notice.id, name, "expired", adapter.recipient(lang), lang, Rendering(name, lang))
                for lang in adapter.languages(notice)
            ]
            with live_channel(name, settings[name]) as channel:
                outcome.add(channel.withdraw(messages, "expired") or [])
    where = resolve_url(request.plan.ledger, request.plan.notice)
    return SendResult(None, outcome, [], masked_url(where), dry_run=request.dry_run, expired=notice.expires)


def _dry_run(request: SendRequest, notice: Any) -> SendResult:
    from broadcast import approval, lifecycle
    from broadcast.channels import REGISTRY
    from broadcast.config import trust_problems
    from broadcast.ledger import masked_url, open_ledger, resolve_url, stray_ledger
    from broadcast.page import write_preview

    # a dry-run reads the ledger, if there is one, so it shows what a live run would skip; it never writes it
    where = resolve_url(request.plan.ledger, request.plan.notice)
    stray = stray_ledger(request.plan.notice, where, live=False, chosen=request.plan.ledger)
    ledger = open_ledger(where, dry_run=True)
    lifecycle.refuse_cancelled(ledger, notice, request.plan.notice)
    plan, warnings = prepare(request.plan, ledger)
    warnings += [Caution(*stray)] if stray else []
    # what a live send would refuse (config.channel_settings), shown first
    warnings += [
        Caution("env file", f"{p}; a live send refuses this without --trust-env-file")
        for p in trust_problems([REGISTRY[c] for c in plan.channels])
    ]
    # each rendering's approval, as the live send would judge it (approval.gate), shown on the page
    approved = approval.preview_state(ledger, plan, request.approval)
    page = write_preview(
        plan, request.out_dir, warnings, sms_segment_price=request.plan.sms_segment_price,
        max_sms_segments=request.plan.max_sms_segments, templates_dir=request.plan.templates_dir, approval=approved,
    )
    if request.brief_dir is not None:
        from broadcast.brief import for_renders

        for_renders(plan.renders, request.brief_dir, templates_dir=request.plan.templates_dir)
    outbox = Outbox(request.out_dir)
    # held messages are listed in plan.csv with their release time, not "sent" to the outbox
    outcome = execute(plan, dry_run_channels(plan.channels, request.out_dir, outbox=outbox), on_held=outbox.hold)
    # the preview is written either way; its exit code is the one a live send of the same input would have
    refusal = long_sms_refusal(
        over_limit(plan, request.plan.max_sms_segments), request.plan.max_sms_segments,
        force=request.plan.force, sent="the preview shows it",
    )
    approval.record_beside(
        where, "preview", plan.notice.id, fp=approved.state.fingerprint if approved.state else None,
        counts={name: plan.to_send[name] for name in plan.channels},
        exit_code=refusal.exit_code if refusal else (1 if plan.book.rejected else 0),
    )
    return SendResult(
        plan, outcome, warnings, masked_url(where), dry_run=True, ledger_found=ledger is not None, page=page,
        refusal=refusal,
    )
