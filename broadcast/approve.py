"""`broadcast approve`: plan exactly as `send` would, show the approver a summary, and record the approval."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broadcast.approval import (
    KEY_VARIABLE,
    Fingerprint,
    Identity,
    identity,
    needs_identity,
    plan_fingerprint,
    record,
    refused,
    short_name,
    sign,
)
from broadcast.errors import Aborted, BroadcastError, InputError

if TYPE_CHECKING:
    from broadcast.plan import Plan, PlanRequest


@dataclass(frozen=True)
class ApproveRequest:
    """What `broadcast approve` was asked: the same audience and rendering options as `send`, and who approves."""

    plan: PlanRequest
    who: str | None = None
    yes: bool = False
    revoke: bool = False


@dataclass
class ApproveResult:
    """An approval (or revocation) as recorded, with the summary the approver saw."""

    notice: str
    approver: Identity
    fingerprint: Fingerprint | None
    ledger: str
    number: int = 0
    revoked: bool = False
    #: language → headline
    headlines: dict[str, str] = field(default_factory=dict)
    #: channel → planned messages
    counts: dict[str, int] = field(default_factory=dict)
    #: language → SMS segments
    segments: dict[str, int] = field(default_factory=dict)
    warnings: list[Any] = field(default_factory=list)

    def summary(self) -> list[str]:
        """What the approver reads before saying yes."""
        if self.revoked:
            return [f"Revoke every approval of {self.notice}, as {self.approver}"]
        lines = [f"Approve {self.notice} as {self.approver}"]
        lines += [f"  headline [{lang}]: {text}" for lang, text in self.headlines.items()]
        lines += [f"  {channel}: {n} message(s)" for channel, n in self.counts.items()]
        lines += [f"  sms [{lang}]: {n} segment(s)" for lang, n in self.segments.items()]
        if self.fingerprint is not None:
            lines += [f"  {key}: {digest[:12]}" for key, digest in sorted(self.fingerprint.renderings.items())]
            lines.append(f"  fingerprint: {self.fingerprint.digest}")
        lines.append(f"  ledger: {self.ledger}")
        return lines


def run(request: ApproveRequest, *, confirm: Callable[[ApproveResult], bool] | None = None) -> ApproveResult:
    """`broadcast approve`: plan as `send` would, show the summary, and record the approval in the ledger.

    Refuses (exit 2, nothing recorded) a notice that fails check, no contacts, and a race with another approver."""
    from broadcast.check import long_sms_refusal
    from broadcast.ledger import Ledger, masked_url, resolve_url
    from broadcast.notice import load_notice
    from broadcast.plan import over_limit, prepare

    who = needs_identity(identity(request.who), "approving")
    notice = load_notice(request.plan.notice)
    where = resolve_url(request.plan.ledger, request.plan.notice)
    ledger = Ledger(where)
    event = "revoke" if request.revoke else "approve"
    result = ApproveResult(notice.id, who, None, masked_url(where), revoked=request.revoke)
    try:
        if not request.revoke:
            plan, result.warnings = prepare(request.plan, ledger)
            refusal = long_sms_refusal(
                over_limit(plan, request.plan.max_sms_segments), request.plan.max_sms_segments,
                force=request.plan.force, sent="nothing was approved",
            )
            if refusal is not None:
                raise refusal
            if not len(plan.book):
                raise InputError(
                    "no contacts: the contacts files hold no valid row, so there is no audience to approve; "
                    "nothing was approved",
                    file=", ".join(str(p) for p in request.plan.contacts), field="--contacts",
                    hint="approve with the contacts files the send will use",
                )
            result.fingerprint = plan_fingerprint(plan, audience=True)
            result.headlines = {lang: str(notice.headline.get(lang, "")) for lang in notice.languages}
            result.counts = {c: plan.planned(c) for c in plan.channels}
            result.segments = _segments(plan)
        history = ledger.approvals(notice.id)
        result.number = (history[-1]["number"] + 1) if history else 1
        if not request.yes:
            if confirm is None:
                raise Aborted(
                    f"refusing to {event} without --yes in a non-interactive shell; nothing was recorded",
                    hint="look at the preview first, then add --yes",
                )
            if not confirm(result):
                raise Aborted("cancelled; nothing was recorded")
        row = _row(notice.id, result, ledger.ledger_id(), event)
        if not ledger.add_approval(row):
            latest = ledger.approvals(notice.id)[-1]
            raise InputError(
                f"another approval of {notice.id} was recorded while you were looking (#{latest['number']}, "
                f"{latest['kind']} by {short_name(latest['approver'])} at {latest['approved_at']:%H:%M} UTC); "
                "yours was not recorded",
                field="approval",
                hint="run approve again to see what is approved now",
            )
        record(ledger, event, notice.id, who, fp=result.fingerprint, counts=result.counts, exit_code=0,
               detail=f"#{result.number}")
        return result
    except BroadcastError as exc:
        # the refusal is logged too; a ledger that cannot take the entry must not hide the refusal itself
        with suppress(BroadcastError):
            record(ledger, event, notice.id, who, fp=result.fingerprint, counts=result.counts,
                   exit_code=exc.exit_code, detail=refused(exc))
        raise
    finally:
        ledger.close()


def _segments(plan: Plan) -> dict[str, int]:
    from broadcast.channels import REGISTRY

    out = {}
    for (channel, lang, variant), rendering in plan.renders.renderings.items():
        adapter = REGISTRY[channel]
        if channel in plan.channels and adapter.billed and not variant:
            out[lang] = adapter.cost(rendering).units
    return out


def _row(notice: str, result: ApproveResult, ledger_id: str, kind: str) -> dict[str, Any]:
    from broadcast.ledger import now

    fp = result.fingerprint
    row = dict(
        notice=notice, number=result.number, kind=kind, ledger_id=ledger_id, approver=result.approver.name,
        source=result.approver.source, host=socket.gethostname(), approved_at=now().replace(microsecond=0),
        renderings=json.dumps(fp.renderings if fp else {}, sort_keys=True, ensure_ascii=False),
        audience=fp.audience if fp else "", channels=",".join(fp.channels) if fp else "",
        fingerprint=fp.digest if fp else "",
    )
    key = os.environ.get(KEY_VARIABLE, "")
    row["mac"] = sign(row, key) if key else ""
    return row


