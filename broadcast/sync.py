"""`broadcast sync`: ask the providers what became of a notice's messages and what people replied, into the ledger.

For CI and laptops, which have no public URL for webhooks (`broadcast serve`). Each channel that can say
(Channel.reports_results) is asked about the notice's messages not yet in a final state, and for the replies since
its last sync; results.record writes the answers. What is read is recorded as it comes, in chunks, and record() is
idempotent, so a sync that stopped half-way (a crash, Ctrl-C, a provider error) is simply run again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from broadcast.channels import REGISTRY, live_channel
from broadcast.errors import BroadcastError, ConfigError, LedgerError
from broadcast.ledger import Ledger, ledger_exists, masked_url, now, resolve_url
from broadcast.notice import load_notice
from broadcast.results import FINAL, Applied, Event, ResultsUnavailable, Sent, record

#: events recorded per transaction while a channel is read: what a crash can lose and the next sync reads again
CHUNK = 200
#: the next sync asks for replies from this long before this one started: a reply on its way into the provider's
#: list while we read it is not missed (record() drops what was already recorded)
OVERLAP = timedelta(minutes=10)


@dataclass(frozen=True)
class SyncRequest:
    """What `broadcast sync` was asked."""

    notice: Path
    #: None: every channel of the notice whose provider reports results
    channels: tuple[str, ...] | None = None
    ledger: str | None = None
    trust_env_file: bool = False


@dataclass
class ChannelSync:
    """What one channel's sync did."""

    channel: str
    #: messages the provider was asked about (accepted, not yet in a final state)
    asked: int = 0
    applied: Applied = field(default_factory=Applied)
    #: why the channel said nothing, or stopped: said in the report
    note: str = ""
    hint: str = ""
    #: True when it stopped on an error (exit 1); a provider without results for this key is a fact, not a failure
    failed: bool = False


@dataclass
class SyncResult:
    """What `broadcast sync` did, per channel."""

    notice: str
    ledger: str
    channels: list[ChannelSync] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(c.failed for c in self.channels) else 0

    @property
    def applied(self) -> Applied:
        total = Applied()
        for channel in self.channels:
            total += channel.applied
        return total


def run(request: SyncRequest) -> SyncResult:
    """Sync each channel of the notice in turn; a channel that fails is reported and the others still run."""
    from broadcast.config import channel_settings

    notice = load_notice(request.notice)
    where = resolve_url(request.ledger, request.notice)
    if not ledger_exists(where):
        raise LedgerError(
            f"no ledger yet at {masked_url(where)}: {notice.id} has not been sent, so there is nothing to ask about",
            file=request.notice, hint="run `broadcast send … --yes` first, or point --ledger at the ledger it used",
        )
    ledger = Ledger(where)
    result = SyncResult(notice.id, masked_url(where))
    try:
        sent_on = {row["channel"] for row in ledger.status(notice.id)["rows"]}
        names = list(request.channels) if request.channels else [
            name for name, adapter in REGISTRY.items() if adapter.personal and name in sent_on]
        stop = threading.Event()
        for name in names:
            adapter = REGISTRY[name]
            if not adapter.reports_results():
                result.channels.append(ChannelSync(name, note=f"{adapter.title or name} reports no delivery results"))
                continue
            try:
                settings = channel_settings([adapter], trust_env_file=request.trust_env_file)[name]
            except ConfigError as exc:
                result.channels.append(ChannelSync(name, note=exc.message, hint=exc.hint or "", failed=True))
                continue
            result.channels.append(_sync(ledger, notice.id, live_channel(name, settings, stop=stop)))
    finally:
        ledger.close()
    return result


def _sync(ledger: Ledger, notice: str, adapter: object) -> ChannelSync:
    """Ask one channel, record what it says chunk by chunk, then move its cursor."""
    from broadcast.channels.base import Channel

    assert isinstance(adapter, Channel)
    name = adapter.name
    cursor = ledger.cursor(notice, name)
    pending = [Sent(m, p, r, at) for m, p, r, at in ledger.unsettled(notice, name, FINAL)]
    since = datetime.fromisoformat(cursor) if cursor else None
    if since is None and any(s.sent_at for s in pending):
        # the first sync: replies from before the notice went out are not about it (and need not all be listed)
        since = min(s.sent_at for s in pending if s.sent_at) - OVERLAP
    done = ChannelSync(name, asked=len(pending))
    started = now()
    batch: list[Event] = []
    try:
        with adapter:
            for event in adapter.results(since, pending):
                batch.append(event)
                if len(batch) >= CHUNK:
                    done.applied += record(ledger, batch)
                    batch = []
    except ResultsUnavailable as exc:
        done.note = exc.message
        return done
    except BroadcastError as exc:
        done.note, done.hint, done.failed = exc.message, exc.hint or "", True
        return done
    finally:
        # what was read before a failure is kept; the cursor stays, so the next sync reads those replies again
        if batch:
            done.applied += record(ledger, batch)
    ledger.move_cursor(notice, name, (started - OVERLAP).isoformat())
    return done
