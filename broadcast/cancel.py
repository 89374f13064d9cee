"""Retract a notice sent in error: a short correction to everyone it reached, in their language, on each channel."""

from __future__ import annotations

import html
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broadcast import lifecycle
from broadcast.channels import REGISTRY, live_channel
from broadcast.channels.base import Channel, RenderOptions
from broadcast.channels.outbox import claim_folder
from broadcast.errors import Aborted, InputError
from broadcast.ledger import Ledger, masked_url, now, open_ledger, resolve_url
from broadcast.message import Message, Rendering
from broadcast.notice import Notice, load_notice, localize
from broadcast.render import Templates
from broadcast.send import Outcome, RetryPolicy, deliver, dry_run_channels

#: label keys of the correction; every catalog has them (templates/labels/*.yaml)
LABELS = ("cancel_subject", "cancel_text", "cancel_reason")


@dataclass(frozen=True)
class CancelRequest:
    """What `broadcast cancel` was asked."""

    notice: Path
    reason: str = ""
    dry_run: bool = False
    out_dir: Path = Path("outbox")
    yes: bool = False
    #: delete the notice's posts (X) instead of replying to them with the correction
    delete_posts: bool = False
    #: None: every channel the notice reached
    channels: tuple[str, ...] | None = None
    ledger: str | None = None
    templates_dir: Path | None = None
    #: a folder, s3://BUCKET/FOLDER or git+URL#BRANCH[:FOLDER] (channels/publish.py)
    web_dir: str | Path | None = None
    sandbox: bool = False
    trust_env_file: bool = False
    feed_dir: Path | None = None


@dataclass
class CancelResult:
    """What a cancellation did: corrections per channel and language, what was taken down, and the release."""

    notice: Notice
    outcome: Outcome
    dry_run: bool
    ledger: str
    #: (channel, language) → corrections planned
    planned: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: channel → languages or posts taken down (banner, deleted posts)
    withdrawn: Counter[str] = field(default_factory=Counter)
    release: dict[str, Any] | None = None
    feed: list[Path] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.outcome.failures or self.outcome.stopped else 0


def run(request: CancelRequest, *, confirm: Callable[[CancelResult], bool] | None = None) -> CancelResult:
    """Send the correction to everyone the ledger says the notice reached, take down what shows it, and record the
    cancellation, so a later `send` of the same notice refuses. A dry-run writes the corrections to the outbox."""
    from broadcast.config import channel_settings

    notice = load_notice(request.notice)
    sender = lifecycle.feed_sender(notice, request.notice) if request.feed_dir is not None else ""
    where = resolve_url(request.ledger, request.notice)
    ledger = open_ledger(where, dry_run=request.dry_run)
    reached = ledger.reached_rows(notice.id) if ledger is not None else []
    chosen = set(request.channels or REGISTRY)
    reached = [row for row in reached if row[0] in chosen and row[0] in REGISTRY]
    if not reached:
        raise InputError(
            f"{notice.id} reached no one on {', '.join(sorted(chosen))} according to the ledger "
            f"{masked_url(where)}, so there is nothing to correct; nothing was sent",
            file=request.notice,
            hint="point --ledger at the ledger the notice was sent with (`broadcast status` shows what it knows)",
        )
    corrections, withdrawals = _plan(notice, reached, ledger, request)
    result = CancelResult(notice, Outcome(), request.dry_run, masked_url(where))
    for message in corrections:
        result.planned[(message.channel, message.language)] += 1
    if request.dry_run:
        claim_folder(request.out_dir)
        outbox = dry_run_channels(sorted({m.channel for m in corrections}), request.out_dir)
        result.outcome = deliver(corrections, outbox, policy=RetryPolicy(wait=False))
        result.withdrawn.update({c: len(ms) for c, ms in withdrawals.items()})
        return result
    assert ledger is not None  # a live run opens (and if need be creates) its ledger
    names = sorted({m.channel for m in corrections} | set(withdrawals))
    settings = channel_settings(
        [REGISTRY[c] for c in names], sandbox=request.sandbox, web_dir=request.web_dir, trust_env_file=request.trust_env_file
    )
    if not request.yes:
        if confirm is None:
            raise Aborted(
                "refusing to cancel without --yes in a non-interactive shell; nothing was sent",
                hint="see what goes out with --dry-run, then add --yes",
            )
        if not confirm(result):
            raise Aborted("not cancelled; nothing was sent")
    stop = threading.Event()
    channels = {name: live_channel(name, settings[name], stop=stop) for name in names}
    triaged = [d.message for d in ledger.triage(corrections) if d.send]
    ledger.start_run(notice.id)
    try:
        result.outcome = deliver(triaged, channels, claim=ledger.claim, on_receipts=ledger.settle)
    finally:
        ledger.finish_run()
    for name, messages in withdrawals.items():
        with channels[name] as adapter:
            receipts = adapter.withdraw(messages, "cancelled") or []
        result.outcome.add(r for r in receipts if r.status != "sent")
        result.withdrawn[name] += sum(1 for r in receipts if r.status == "sent")
    result.release = lifecycle.record_cancel(ledger, notice, request.reason, sender=sender)
    if request.feed_dir is not None:
        result.feed = lifecycle.write_feed(ledger, notice, request.feed_dir, request.notice, now=now())
    return result


def _plan(
    notice: Notice, reached: list[tuple[str, str, str, str]], ledger: Ledger | None, request: CancelRequest
) -> tuple[list[Message], dict[str, list[Message]]]:
    """The corrections (one per channel and recipient reached) and what is taken down instead, per channel."""
    templates = Templates(request.templates_dir)
    version = f"cancel-{lifecycle.digest(notice)[:8]}"
    renderings: dict[tuple[str, str], Rendering] = {}
    replies = ledger.thread_ends(notice.id) if ledger is not None else {}
    posts: dict[str, list[str]] = {}
    for channel, ids in (ledger.all_threads(notice.id) if ledger is not None else []):
        posts.setdefault(channel, []).extend(ids)
    corrections: list[Message] = []
    withdrawals: dict[str, list[Message]] = {}
    for channel, recipient, contact, language in reached:
        adapter = REGISTRY[channel]
        language = language if language in notice.languages else notice.default_language
        if adapter.standing or (request.delete_posts and not adapter.personal and posts.get(channel)):
            # a banner is taken down, and (when asked) posts deleted, rather than corrected
            taken = withdrawals.setdefault(channel, [])
            if not any(m.language == language for m in taken):
                taken.append(Message(
                    notice.id, channel, version, recipient, language, Rendering(channel, language), contact_key=contact,
                    posted=tuple(posts.get(channel, ())) if not adapter.standing else (),
                ))
            continue
        if (channel, language) not in renderings:
            renderings[(channel, language)] = correction(notice, templates, adapter, language, request.reason)
        corrections.append(Message(
            notice.id, channel, version, recipient, language, renderings[(channel, language)], contact_key=contact,
            key=adapter.ledger_key(recipient) if adapter.personal else "", reply_to=replies.get((channel, language)),
        ))
    # posts are deleted once, whatever language they were in
    for channel, taken in withdrawals.items():
        if not REGISTRY[channel].standing:
            withdrawals[channel] = taken[:1]
    return corrections, withdrawals


def correction(notice: Notice, templates: Templates, adapter: type[Channel], language: str, reason: str) -> Rendering:
    """The correction in one language, shaped by the channel as it shapes a notice (subject, text, thread)."""
    catalog = templates.catalog(language)
    labels = {**catalog.labels, **notice.labels.get(language, {})}
    missing = [key for key in LABELS if key not in labels]
    if missing:
        raise InputError(
            f"the label catalog for {language} has no {', '.join(missing)}, so the correction cannot be worded",
            file=templates.directory / "labels" / f"{language}.yaml",
            hint="add the keys (templates/labels/en.yaml has them); nothing was sent",
        )
    local = localize(notice, language)
    # slots filled by plain replacement: a label is text, never a format string that could reach an attribute
    values = {"{headline}": local.headline, "{org}": local.organization.name, "{reason}": reason}

    def fill(label: str) -> str:
        text = str(labels[label])
        for slot, value in values.items():
            text = text.replace(slot, value)
        return text

    subject = fill("cancel_subject")
    text = fill("cancel_text") + (f"\n{fill('cancel_reason')}" if reason else "")
    body = "".join(f"<p>{html.escape(line)}</p>" for line in text.split("\n"))
    parts = {"subject": subject, "text": text, "html": f'<div lang="{html.escape(language)}" dir="{catalog.direction}">{body}</div>'}
    return adapter.shape(Rendering(adapter.name, language), parts, RenderOptions(), local)
