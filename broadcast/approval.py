"""What an approval covers (the fingerprint), who may send what, and the append-only audit log, all in the ledger."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from broadcast.errors import BroadcastError, InputError, LedgerError

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Iterator

    from broadcast.ledger import Ledger
    from broadcast.message import Message
    from broadcast.notice import Notice
    from broadcast.render import RenderSet


class Plan(Protocol):
    """What an approval reads of a plan (plan.Plan): a Protocol, since plan imports check, which imports this."""

    channels: list[str]
    renders: RenderSet
    counts: dict[str, Counter[str]]

    @property
    def notice(self) -> Notice: ...

    def messages(self, channel: str | None = None) -> Iterator[Message]: ...


#: the variable that makes every notice need approval, whatever its file says
REQUIRE_VARIABLE = "BROADCAST_REQUIRE_APPROVAL"
#: the key approval rows are signed with; a row whose signature does not match is refused
KEY_VARIABLE = "BROADCAST_APPROVAL_KEY"
#: who runs broadcast, when --as is not given
USER_VARIABLE = "BROADCAST_USER"


def rendering_key(channel: str, language: str) -> str:
    """How a rendering is named to people and in the ledger: ``sms × sl``."""
    return f"{channel} × {language}"


# -- what an approval covers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What would go out: a digest per channel × language rendering, the audience and the chosen channels."""

    #: "channel × language" → digest of every form and variant of that rendering, in the wording it would go out in
    renderings: dict[str, str]
    #: a digest of who would get what ("" when no contacts were read, as in `check`)
    audience: str
    channels: tuple[str, ...]

    @property
    def digest(self) -> str:
        """One short hash of all of it, to show and to compare by eye."""
        body = json.dumps([sorted(self.renderings.items()), self.audience, list(self.channels)], ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def fingerprint(renders: RenderSet, channels: Iterable[str], audience: str = "") -> Fingerprint:
    """The one fingerprint `check`, `preview`, `approve` and `send` compute: each channel × language rendering,
    every form (an SMS that is shortened to fit is still what was approved) and variant, update wording included."""
    from broadcast.render import rendering_digest

    chosen = tuple(c for c in channels if c in renders.versions)
    parts: dict[str, list[str]] = defaultdict(list)
    for channel in chosen:
        forms = renders.forms.get(channel)
        if forms:
            for lang, each in forms.items():
                parts[rendering_key(channel, lang)].extend(
                    rendering_digest(r) for variants in each.values() for r in variants.values()
                )
        else:
            for (c, lang, _), rendering in renders.renderings.items():
                if c == channel:
                    parts[rendering_key(channel, lang)].append(rendering_digest(rendering))
    renderings = {key: hashlib.sha256("\n".join(sorted(d)).encode()).hexdigest()[:32] for key, d in parts.items()}
    return Fingerprint(renderings, audience, chosen)


def audience_digest(plan: Plan) -> str:
    """Who would get what, as one digest: every (channel, recipient, language) of the plan, in any order.

    Added up rather than sorted, so a million contacts cost no memory; nothing of it can be read back."""
    total, count = 0, 0
    for message in plan.messages():
        one = hashlib.sha256(f"{message.channel}\0{message.recipient}\0{message.language}".encode()).digest()
        total = (total + int.from_bytes(one, "big")) % (1 << 256)
        count += 1
    return hashlib.sha256(f"{total:064x}:{count}:{','.join(plan.channels)}".encode()).hexdigest()[:32]


# -- who --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A person, and where broadcast learned who they are (--as, BROADCAST_USER, git user.email)."""

    name: str
    source: str

    @property
    def key(self) -> str:
        """What two identities are compared by: the email address when there is one, else the name."""
        found = re.search(r"<([^<>@\s]+@[^<>\s]+)>", self.name) or re.fullmatch(r"\s*(\S+@\S+)\s*", self.name)
        return (found.group(1) if found else self.name).strip().casefold()

    @property
    def short(self) -> str:
        """The name without the address, as messages show it: "Ana Novak"."""
        name = re.sub(r"\s*<[^>]*>\s*", "", self.name).strip()
        return name or self.name

    def __str__(self) -> str:
        return f"{self.name} (from {self.source})"


def identity(given: str | None = None) -> Identity | None:
    """Who runs this command: --as, else BROADCAST_USER, else git's user.email; None when none says."""
    if given and given.strip():
        return Identity(given.strip(), "--as")
    user = os.environ.get(USER_VARIABLE, "").strip()
    if user:
        return Identity(user, USER_VARIABLE)
    try:
        found = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    email = found.stdout.strip() if found.returncode == 0 else ""
    return Identity(email, "git user.email") if email else None


def needs_identity(who: Identity | None, role: str) -> Identity:
    if who is None:
        raise InputError(
            f"broadcast cannot tell who is {role}: no --as, no {USER_VARIABLE} and no git user.email; nothing was "
            "recorded or sent",
            field="--as",
            hint=f'add --as "Your Name <you@example.org>", or set {USER_VARIABLE}',
        )
    return who


# -- the policy -------------------------------------------------------------------------------------------------


def required(notice: Notice) -> bool:
    """Whether `send` may send only approved content: the notice says so, or BROADCAST_REQUIRE_APPROVAL=1."""
    return notice.approval.policy == "required" or os.environ.get(REQUIRE_VARIABLE, "").strip().lower() in (
        "1", "true", "yes", "on",
    )


def sign(row: dict[str, Any], key: str) -> str:
    signed = {k: row[k] for k in sorted(row) if k != "mac"}
    # the same instant whatever the database session's time zone (PostgreSQL hands back its own)
    signed["approved_at"] = signed["approved_at"].astimezone(UTC).isoformat(timespec="seconds")
    body = json.dumps(signed, ensure_ascii=False, sort_keys=True).encode()
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


# -- the state of each rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderingApproval:
    """One channel × language rendering: approved, changed since an approval, revoked, or never approved."""

    key: str
    #: approved | changed | revoked | unapproved | audience
    state: str
    approver: str = ""
    at: datetime | None = None
    #: the approval was by the person now sending (allowed only with --self-approve)
    by_sender: bool = False

    def describe(self) -> str:
        """For messages and the preview page: "sms × sl changed since Ana Novak approved at 10:02 UTC"."""
        at = f"{self.at:%Y-%m-%d %H:%M} UTC" if self.at else ""
        if self.state == "approved":
            return f"{self.key} approved by {self.approver} at {at}" + (" (by the sender)" if self.by_sender else "")
        if self.state == "changed":
            return f"{self.key} changed since {self.approver} approved at {at}"
        if self.state == "audience":
            return f"{self.key}: the contacts or channels changed since {self.approver} approved at {at} (approval.audience: fixed)"
        if self.state == "revoked":
            return f"{self.key}: the approval was revoked by {self.approver} at {at}"
        return f"{self.key} is not approved"


@dataclass
class ApprovalState:
    """Each rendering's approval, from the ledger's approval rows, and any row that cannot be trusted."""

    fingerprint: Fingerprint
    renderings: dict[str, RenderingApproval] = field(default_factory=dict)
    #: rows refused: tampered with, or made for another ledger
    problems: list[str] = field(default_factory=list)

    def missing(self, keys: Iterable[str], *, self_approve: bool) -> list[RenderingApproval]:
        """Of ``keys``, the renderings a send may not send: not approved, or approved only by the sender."""
        out = []
        for key in keys:
            found = self.renderings[key]
            if found.state != "approved" or (found.by_sender and not self_approve):
                out.append(found)
        return out


def evaluate(ledger: Ledger, notice: Notice, fp: Fingerprint, *, sender: Identity | None = None) -> ApprovalState:
    """Each rendering of ``fp`` against the notice's approvals in ``ledger``; an approval by someone else wins over
    one by ``sender``. A revocation voids every approval before it."""
    state = ApprovalState(fp)
    key = os.environ.get(KEY_VARIABLE, "")
    this_ledger = ledger.ledger_id()
    standing: list[dict[str, Any]] = []
    revoked: dict[str, Any] | None = None
    for row in ledger.approvals(notice.id):
        name = f"approval #{row['number']} of {notice.id} (by {row['approver']} at {row['approved_at']:%Y-%m-%d %H:%M} UTC)"
        if row["ledger_id"] != this_ledger:
            state.problems.append(f"{name} was made for another ledger")
            continue
        if key and not hmac.compare_digest(row["mac"] or "", sign(row, key)):
            state.problems.append(f"{name} does not match its signature ({KEY_VARIABLE}): it was changed after it was made")
            continue
        if not key and row["mac"]:
            state.problems.append(f"{name} is signed, and {KEY_VARIABLE} is not set to check it")
            continue
        if row["kind"] == "revoke":
            standing, revoked = [], row
        else:
            standing.append({**row, "renderings": json.loads(row["renderings"])})
    fixed = notice.approval.audience == "fixed"
    for rkey, digest in fp.renderings.items():
        covering = [r for r in standing if rkey in r["renderings"]]
        if fixed:
            covering_audience = [r for r in covering if r["audience"] == fp.audience and r["channels"] == ",".join(fp.channels)]
            if covering and not covering_audience:
                last = covering[-1]
                state.renderings[rkey] = RenderingApproval(rkey, "audience", short_name(last["approver"]), last["approved_at"])
                continue
            covering = covering_audience
        matching = [r for r in covering if r["renderings"][rkey] == digest]
        others = [r for r in matching if sender is None or Identity(r["approver"], r["source"]).key != sender.key]
        if others or matching:
            last = (others or matching)[-1]
            state.renderings[rkey] = RenderingApproval(
                rkey, "approved", short_name(last["approver"]), last["approved_at"], by_sender=not others
            )
        elif covering:
            last = covering[-1]
            state.renderings[rkey] = RenderingApproval(rkey, "changed", short_name(last["approver"]), last["approved_at"])
        elif revoked is not None:
            state.renderings[rkey] = RenderingApproval(rkey, "revoked", short_name(revoked["approver"]), revoked["approved_at"])
        else:
            state.renderings[rkey] = RenderingApproval(rkey, "unapproved")
    return state


def short_name(name: str) -> str:
    return Identity(name, "").short


def planned_keys(plan: Plan) -> list[str]:
    """The renderings this plan would send to anyone: channel × language with a planned message."""
    return [rendering_key(c, lang) for c in plan.channels for lang, n in plan.counts.get(c, {}).items() if n]


def plan_fingerprint(plan: Plan, *, audience: bool) -> Fingerprint:
    """The plan's fingerprint; the audience digest (one pass over the contacts) only when it is compared."""
    return fingerprint(plan.renders, plan.channels, audience_digest(plan) if audience else "")


@dataclass(frozen=True)
class SendApproval:
    """What `send` was told about approval: who sends, and the two ways past a missing approval."""

    who: str | None = None
    #: a one-person team: the sender's own approval counts, and the report says so
    self_approve: bool = False
    #: an emergency sent without approval, and why (recorded in the audit log, shown in red)
    no_approval: str | None = None


@dataclass
class Gate:
    """What the approval check let through: the state shown to people, and how (approved, self, override)."""

    sender: Identity | None
    state: ApprovalState | None
    #: "" (not required), "approved", "self-approved", "override: REASON"
    how: str = ""


def gate(ledger: Ledger, plan: Plan, asked: SendApproval, notice_path: str | Path) -> Gate:
    """Refuse a live send whose content is not approved, when the notice or the environment requires approval.

    Raises InputError (exit 2, nothing sent) naming each rendering that changed and who approved what."""
    notice = plan.notice
    sender = identity(asked.who)
    if asked.no_approval is not None:
        if notice.severity != "emergency":
            raise InputError(
                f"--no-approval is only for a notice with severity: emergency (this one is {notice.severity}); "
                "nothing was sent",
                file=notice_path, field="--no-approval",
                hint="have another person run `broadcast approve`, or set `severity: emergency` if lives are at stake",
            )
        if not asked.no_approval.strip():
            raise InputError(
                "--no-approval needs a reason; nothing was sent", field="--no-approval",
                hint='say why, e.g. --no-approval "gas leak, approver unreachable"',
            )
        return Gate(sender, None, f"override: {asked.no_approval.strip()}")
    if not required(notice):
        return Gate(sender, None)
    sender = needs_identity(sender, "sending")
    fp = plan_fingerprint(plan, audience=notice.approval.audience == "fixed")
    state = evaluate(ledger, notice, fp, sender=sender)
    if state.problems:
        raise LedgerError(
            "; ".join(state.problems) + "; nothing was sent",
            hint="revoke it (`broadcast approve NOTICE --contacts … --revoke`) and have the content approved again "
            "against this ledger",
        )
    missing = state.missing(planned_keys(plan), self_approve=asked.self_approve)
    if missing:
        # approved, yet missing: the only approval is the sender's own
        own = any(f.state == "approved" for f in missing)
        lines = []
        for found in missing:
            if found.state == "approved":
                lines.append(f"{found.key} was approved only by you, the sender ({sender})")
            else:
                lines.append(found.describe())
        raise InputError(
            "; ".join(lines) + "; run approve again. Nothing was sent",
            file=notice_path, field="approval",
            hint=f"another person runs `broadcast approve {notice_path} --contacts …` with the same options, then "
            "send again" + (" (or add --self-approve when you are the only one)" if own else ""),
        )
    by_sender = any(state.renderings[k].by_sender for k in planned_keys(plan))
    return Gate(sender, state, "self-approved" if by_sender else "approved")


@dataclass
class PreviewApproval:
    """What the preview page shows about approval: whether it is required, and each rendering's state."""

    required: bool
    state: ApprovalState | None
    sender: Identity | None = None

    def of(self, channel: str, language: str) -> RenderingApproval | None:
        return self.state.renderings.get(rendering_key(channel, language)) if self.state else None


def preview_state(ledger: Ledger | None, plan: Plan, asked: SendApproval | None = None) -> PreviewApproval:
    """Each rendering's approval as a live send of this plan would find it, read from ``ledger`` (None: no ledger
    yet, so nothing is approved)."""
    notice = plan.notice
    sender = identity(asked.who if asked else None)
    fp = plan_fingerprint(plan, audience=notice.approval.audience == "fixed")
    if ledger is None:
        state = ApprovalState(fp, {k: RenderingApproval(k, "unapproved") for k in fp.renderings})
    else:
        state = evaluate(ledger, notice, fp, sender=sender)
    return PreviewApproval(required(notice), state, sender)


# -- the audit log ----------------------------------------------------------------------------------------------

_ADDRESS = re.compile(r"[^\s<>\"',;:]+@[^\s<>\"',;]+|\+?\d[\d ().-]{6,}\d")


def refused(exc: BroadcastError) -> str:
    """An error as the audit log keeps it: its first line, with anything like an address or phone number removed."""
    from broadcast.config import mask

    return _ADDRESS.sub("<address>", mask(exc.message.split("\n", 1)[0]))[:500]


def record(
    ledger: Ledger | None, event: str, notice: str, who: Identity | None, *, fp: Fingerprint | None = None,
    counts: dict[str, Any] | None = None, exit_code: int = 0, detail: str = "",
) -> None:
    """Append one event to the ledger's audit log. Counts only: never an address, a message or a secret."""
    from broadcast import __version__
    from broadcast.ledger import now

    if ledger is None or ledger.read_only:
        return
    ledger.append_audit(dict(
        at=now(), notice=notice, event=event, who=who.name if who else "", source=who.source if who else "",
        host=socket.gethostname(), version=__version__, fingerprint=fp.digest if fp else "",
        counts=json.dumps(counts or {}, sort_keys=True), exit_code=exit_code, detail=detail,
    ))


def record_beside(url: str, event: str, notice: str, *, fp: Fingerprint | None, counts: dict[str, Any], exit_code: int,
                  detail: str = "") -> None:
    """For `check` and `preview`, which never create a ledger: append to the ledger only if it already exists and
    can be written."""
    from broadcast.ledger import Ledger, ledger_exists

    if not ledger_exists(url):
        return
    try:
        ledger = Ledger(url)
    except LedgerError:
        return  # a read-only ledger: looking is still allowed
    try:
        record(ledger, event, notice, identity(None), fp=fp, counts=counts, exit_code=exit_code, detail=detail)
    except LedgerError:
        pass
    finally:
        ledger.engine.dispose()


def audited(event: str, notice_path: str | Path, url: str | None, work: Callable[[], Any],
            counts: Callable[[Any], dict[str, Any]]) -> Any:
    """Run a command another module owns (``cancel``) and append its event to the audit log, refused or not."""
    from broadcast.ledger import resolve_url
    from broadcast.notice import load_notice

    where = resolve_url(url, notice_path)
    try:
        result = work()
    except BroadcastError as exc:
        with suppress(BroadcastError):  # a notice that cannot be read has no id to log under
            record_beside(where, event, load_notice(notice_path).id, fp=None, counts={}, exit_code=exc.exit_code,
                          detail=refused(exc))
        raise
    record_beside(where, event, load_notice(notice_path).id, fp=None, counts=counts(result), exit_code=result.exit_code,
                  detail="dry-run" if getattr(result, "dry_run", False) else "")
    return result


def log(notice: str, url: str | None) -> dict[str, Any]:
    """`broadcast log`: the notice's audit events, oldest first; ``notice`` may be its id or the notice file."""
    from broadcast.ledger import reading

    with reading(
        notice, url, nothing="nothing has been recorded with it",
        hint="give `log` the notice file to read the ledger beside it, or point --ledger / BROADCAST_LEDGER at "
        "the shared ledger",
    ) as (ledger, notice_id, shown):
        events = [
            {**row, "at": row["at"].isoformat(timespec="seconds"), "counts": json.loads(row["counts"] or "{}")}
            for row in ledger.audit_log(notice_id)
        ]
        return {"notice": notice_id, "ledger": shown, "events": events}


def log_lines(found: dict[str, Any]) -> list[str]:
    """The audit log as a person reads it: one line per event."""
    lines = [f"{found['notice']}: {len(found['events'])} event(s) in {found['ledger']}"]
    for e in found["events"]:
        counts = " ".join(f"{k}={v}" for k, v in e["counts"].items())
        who = f"{e['who']} ({e['source']})" if e["who"] else "unknown"
        detail = f" — {e['detail']}" if e["detail"] else ""
        lines.append(
            f"{e['at']}  {e['event']:<8} exit {e['exit_code']}  {who} on {e['host']}, broadcast {e['version']}"
            + (f", fingerprint {e['fingerprint']}" if e["fingerprint"] else "") + (f"  [{counts}]" if counts else "")
            + detail
        )
    return lines
