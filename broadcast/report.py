"""What the CLI prints: short, scannable reports for people under pressure, or one JSON object for machines."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broadcast.channels import REGISTRY
from broadcast.plan import rendering_stats

if TYPE_CHECKING:
    from broadcast.check import Caution, Checked
    from broadcast.plan import Plan
    from broadcast.send import Outcome, SendResult

#: --json lists at most this many contact problems (problems_total counts them all)
MAX_JSON_PROBLEMS = 1000
#: show at most this many contact problems in the report; the rest are counted (plan.csv has every row)
MAX_PROBLEMS = 20


def _console(stderr: bool = False):  # noqa: ANN202 - rich is imported lazily to keep start-up fast
    from rich.console import Console

    # emoji=False: a notice or contact value such as ":fire:" is printed as written, not as an emoji
    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


def _plain(value: object, limit: int | None = None) -> str:
    """User text (notice, contacts, file names, provider reasons) made literal for Rich, and capped (display.clip).

    Every such value goes through here before it is put in a markup string, a table cell or a bar's
    description: `Outage [/north]` must print as written, not stop the run with a MarkupError.
    """
    from rich.markup import escape

    from broadcast.display import VALUE_LIMIT, clip

    return escape(clip(value, limit or VALUE_LIMIT))


def _message(value: object) -> str:
    """A whole message that quotes user values (a warning, a contact problem), made literal and capped.

    A Caution or a contact Problem is capped field by field, so a runaway value never cuts off its hint.
    """
    from dataclasses import fields, is_dataclass, replace

    from rich.markup import escape

    from broadcast.display import MESSAGE_LIMIT, clip

    if is_dataclass(value) and not isinstance(value, type):
        texts = {f.name: getattr(value, f.name) for f in fields(value)}
        value = replace(value, **{k: clip(v, MESSAGE_LIMIT) for k, v in texts.items() if isinstance(v, str)})
        return escape(str(value))
    return _plain(value, MESSAGE_LIMIT)


def _json(data: dict[str, Any]) -> None:
    from broadcast.config import mask

    sys.stdout.write(mask(json.dumps(_capped(data), ensure_ascii=False, indent=2)) + "\n")


def _capped(data: Any) -> Any:
    """``data`` with every string capped (display.clip), keys included: a runaway contact cell must not flood --json."""
    from broadcast.display import MESSAGE_LIMIT, clip

    if isinstance(data, str):
        return clip(data, MESSAGE_LIMIT)
    if isinstance(data, dict):
        return {_capped(k): _capped(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_capped(v) for v in data]
    return data


def checked(result: Checked, *, as_json: bool) -> None:
    """What `check` found; what a live send would refuse (result.refusal) is not OK (the caller then exits 2)."""

    from broadcast.quiet import setting_for

    notice, ledger = result.notice, result.ledger
    rows = rendering_stats(result.renders, list(dict.fromkeys(c for c, _, _ in result.renders.renderings)))
    ok = result.refusal is None
    # the window a send applies to this notice (None: urgent and emergency go at any hour); who it holds needs the
    # contacts, so `preview` lists them
    quiet = setting.model_dump() if (setting := setting_for(notice)) is not None else None
    if as_json:
        _json(
            {
                "notice": notice.id,
                "ok": ok,
                "languages": notice.languages,
                # channel → the languages a send now words as an update (their content changed since it was sent)
                "updated": _by_channel(result.updated),
                "ledger": ledger,
                "renderings": rows,
                "sms_over_limit": result.sms_too_long,
                # what `approve` records and `send` checks, for a send without --channel (approval.fingerprint)
                "fingerprint": result.fingerprint,
                "quiet_hours": quiet,
                "warnings": [str(w) for w in result.warnings],
            }
        )
        return
    console = _console()
    console.print(f"[bold]{_plain(notice.id)}[/] ({_plain(notice.severity)}) is valid: {len(notice.channels)} support channels, "
                  f"languages {_plain(', '.join(notice.languages))}")
    if ledger:
        console.print(f"Ledger: {_plain(ledger)}")
    if result.updated:
        listed = ", ".join(f"{c} ({', '.join(langs)})" for c, langs in _by_channel(result.updated).items())
        console.print(f"A send now is an [bold]update[/] on {_plain(listed)}: the ledger has an earlier "
                      "version; the counts below are for the update's wording.")
    for row in rows:
        console.print("  " + _describe(row))
    if quiet is not None:
        zone = f"; {quiet['timezone']} where a contact's own zone is not known" if quiet["timezone"] else ""
        console.print(f"Quiet hours: SMS and calls wait from {quiet['start']} to {quiet['end']} in each recipient's own time{_plain(zone)}; "
                      "`preview` lists who would be held now")
    _cautions(console, result.warnings)
    if ok:
        console.print("[green]OK[/]: every channel renders in every language and names every support channel.")
    if result.fingerprint:
        console.print(f"Fingerprint {_plain(result.fingerprint)} (what `broadcast approve` records and `send` checks)")


def _by_channel(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for channel, lang in pairs:
        out.setdefault(channel, []).append(lang)
    return out


def _describe(row: dict[str, Any]) -> str:
    text = f"{_plain(row['channel']):<7} {_plain(row['language']):<6}"
    if "segments" in row:
        text += f" {row['characters']} chars, {row['encoding']}, {row['segments']} segment(s)"
        if row.get("form", 1) > 1:
            text += f", shortened to form {row['form']} (templates/sms.txt.j2)"
        if row.get("cost"):
            text += f", {row['billed_segments']} segments billed ≈ {row['cost']:.4f}"
    if "posts" in row:
        limit = REGISTRY[row["channel"]].max_post_weight
        text += f" {row['posts']} post(s), weighted {', '.join(map(str, row['weighted']))}" + (f" of {limit}" if limit else "")
    if "subject" in row:
        text += f" subject: {_plain(row['subject'])}"
    if "recipients" in row:
        text = f"{text}  → {row['recipients']} recipient(s)"
    return text


def _cautions(console: Any, cautions: list[Caution]) -> None:
    for caution in cautions:
        console.print(f"[yellow]Warning[/]: {_message(caution)}")


def plan(plan: Plan, cautions: list[Caution], *, as_json: bool, sms_segment_price: float = 0.0) -> None:
    """The plan a person confirms before a live send."""

    console = _console(stderr=as_json)
    notice = plan.notice
    console.print(f"[bold]{_plain(notice.id)}[/] ({_plain(notice.severity)}), languages {_plain(', '.join(notice.languages))}")
    _contacts(console, plan)
    console.print("Plan:")
    for row in rendering_stats(
        plan.renders, plan.channels, plan.counts, billed=plan.billed, unit_price=sms_segment_price
    ):
        console.print("  " + _describe(row))
    for lang, (before, after) in sorted(plan.sms_saved.items()):
        console.print(f"  sms {lang}: --sms-transliterate saves {before - after} segment(s) per message ({before} → {after})")
    _skipped(console, plan)
    if plan.follow is not None and plan.follow.done:
        counts = plan.follow.counts
        console.print(f"  follow-ups (the notice's follow_up rules): {counts['other_channel']} on their other channel "
                      f"(not delivered), {counts['resend']} reminder(s) (no reply)")
    _cautions(console, cautions)


def _contacts(console: Any, plan: Plan) -> None:
    """Contact counts, every problem row (rejected first in the file's order), and who fell back to which language."""
    book = plan.book
    console.print(
        f"Contacts: {book.read} read, {book.valid} valid, {book.rejected} rejected, {book.merged} merged as duplicates"
    )
    if book.lost_channel:
        console.print(f"  [yellow]{book.lost_channel} contact(s) lost a channel[/]: reached on fewer channels, see below")
    for problem in book.problems[:MAX_PROBLEMS]:
        colour = "red" if problem.rejected else "yellow"
        console.print(f"  [{colour}]{'rejected' if problem.rejected else 'warning'}[/] {_message(problem)}")
    if len(book.problems) > MAX_PROBLEMS:
        console.print(f"  … and {len(book.problems) - MAX_PROBLEMS} more contact problems")
    for (tag, lang, how), n in sorted(plan.fallbacks.items()):
        shown = _plain(tag) if tag else "(no language)"
        console.print(f"  {n} contact(s) with {shown} get {_plain(lang)} ({'base language' if how == 'base' else 'default language'})")


def _skipped(console: Any, plan: Plan) -> None:
    """Why planned messages were not sent: already sent, suppressed, failed before; and earlier unknowns."""
    for name in plan.channels:
        for reason, n in sorted(plan.skipped.get(name, {}).items()):
            console.print(f"  {name}: {n} skipped: {_message(reason)}")
    unknown = Counter(d.message.channel for d in plan.unknowns)
    for name, n in sorted(unknown.items()):
        console.print(f"  [red]{name}: {n} unknown[/]: an earlier run may have sent them; --retry-unknown sends them again")
    for name, n in sorted(plan.held.items()):
        window = plan.quiet.window if plan.quiet is not None else None
        hours = f" ({window.start:%H:%M}–{window.end:%H:%M} local time)" if window else ""
        console.print(f"  [yellow]{name}: {n} held for quiet hours[/]{hours}: the first run after them sends them")


def previewed(
    plan_: Plan, outcome: Outcome, cautions: list[Caution], out_dir: Path, *, as_json: bool, sms_segment_price: float = 0.0,
    ledger: str | None = None, ledger_found: bool = True,
) -> None:

    if as_json:
        data = summary(plan_, outcome, dry_run=True, sms_segment_price=sms_segment_price)
        data["ledger"], data["ledger_found"] = ledger, ledger_found
        data["out"] = str(out_dir)
        data["warnings"] = [str(c) for c in cautions]
        _json(data)
        return
    plan(plan_, cautions, as_json=False, sms_segment_price=sms_segment_price)
    console = _console()
    total = sum(c["previewed"] for c in outcome.counts.values())
    console.print(
        f"[bold]Dry-run[/]: nothing was sent. {total} message(s) planned; renderings and plan.csv are in {_plain(out_dir)}/"
    )
    if ledger:
        console.print(f"Ledger: {ledger}" + ("" if ledger_found else " (not there yet: everyone is planned as a first send)"))


def send_result(result: SendResult, *, as_json: bool, sms_segment_price: float = 0.0, out_dir: Path | None = None) -> None:
    """What `send` or `preview` did: the dry-run's preview, or the live send's counts."""
    for problem in result.trusted:
        print(f"Warning: {problem} (sending anyway: --trust-env-file)", file=sys.stderr)
    if result.plan is None:
        _expired(result, as_json=as_json)
        return
    if result.dry_run:
        previewed(
            result.plan, result.outcome, result.warnings, out_dir or Path("outbox"), as_json=as_json,
            sms_segment_price=sms_segment_price, ledger=result.ledger, ledger_found=result.ledger_found,
        )
    else:
        extra = {
            "release": {k: result.release[k] for k in ("number", "phase", "msg_type")} if result.release else None,
            "feed": [str(p) for p in result.feed],
        }
        sent(result.plan, result.outcome, result.warnings, as_json=as_json, sms_segment_price=sms_segment_price,
             ledger=result.ledger, extra=extra)
        if not as_json:
            release(result)


def _expired(result: SendResult, *, as_json: bool) -> None:
    """A notice past its ``expires``: nothing was sent, and what was taken down."""
    taken = {name: counts["sent"] for name, counts in result.outcome.counts.items()}
    if as_json:
        _json({
            "expired": result.expired.isoformat(), "dry_run": result.dry_run, "sent": 0, "withdrawn": taken,
            "failures": [{"channel": r.channel, "recipient": r.recipient, "reason": r.reason} for r in result.outcome.failures],
            "ledger": result.ledger,
        })
        return
    console = _console()
    console.print(f"[bold]Expired[/] at {_plain(result.expired.isoformat())}: nothing was sent"
                  + (" (dry-run)." if result.dry_run else "."))
    for name, n in taken.items():
        console.print(f"  {name}: taken down in {n} language(s)")
    for receipt in result.outcome.failures[:MAX_PROBLEMS]:
        console.print(f"  [red]not taken down[/] {receipt.channel} {_plain(receipt.recipient)}: {_message(receipt.reason)}")
    console.print("To send it again, move `expires:` later (or remove it) in the notice file.")


def release(result: SendResult) -> None:
    """One line on what went out as the notice's timeline sees it, and the CAP files written."""
    if result.release is None:
        return
    r = result.release
    print(f"Release {r['number']}: {r['msg_type']} ({r['phase']})", file=sys.stderr)
    for path in result.feed:
        print(f"Feed: {path}", file=sys.stderr)


def paths(what: str, written: list[Path]) -> None:
    """The files a command wrote, one per line."""
    for path in written:
        print(f"{what}: {path}")


def cancel(result: Any, *, as_json: bool) -> None:
    """What `cancel` did (or, in a dry-run or before asking, would do): corrections per channel and language."""
    sent = {name: dict(counts) for name, counts in result.outcome.counts.items()}
    if as_json:
        _json({
            "notice": result.notice.id, "dry_run": result.dry_run, "ledger": result.ledger,
            "corrections": {f"{c}:{lang}": n for (c, lang), n in sorted(result.planned.items())},
            "outcome": sent, "withdrawn": dict(result.withdrawn),
            "release": {k: result.release[k] for k in ("number", "msg_type")} if result.release else None,
            "feed": [str(p) for p in result.feed],
            "failures": [{"channel": r.channel, "recipient": r.recipient, "reason": r.reason} for r in result.outcome.failures],
        })
        return
    console = _console(stderr=True)
    console.print(f"[bold]Cancel {_plain(result.notice.id)}[/]" + (" (dry-run: nothing sent)" if result.dry_run else ""))
    for (channel, lang), n in sorted(result.planned.items()):
        console.print(f"  {channel:<7} {_plain(lang):<6} {n} correction(s)")
    for channel, n in result.withdrawn.items():
        console.print(f"  {channel:<7} taken down: {n}")
    for name, counts in sent.items():
        console.print(f"  {name}: " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())))
    for receipt in result.outcome.failures[:MAX_PROBLEMS]:
        console.print(f"  [red]failed[/] {receipt.channel} {_plain(receipt.recipient)}: {_message(receipt.reason)}")
    if result.release:
        console.print(f"Recorded as cancelled (release {result.release['number']}); `send` refuses it until its file sets `phase:` again.")
    for path in result.feed:
        console.print(f"Feed: {_plain(path)}")


def brief(result: Any, since: Path | None) -> None:
    """What `brief` wrote, with what changed since the earlier notice when asked."""
    for warning in result.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if result.changes is not None:
        changed: dict[str, list[str]] = {}
        for change in result.changes:
            changed.setdefault(change.field, []).append(change.language)
        listed = "; ".join(f"{name} ({', '.join(langs)})" for name, langs in changed.items())
        print(f"Changed since {since}: {listed or 'nothing'}")
    print(f"Staff brief ({', '.join(result.languages)}): {' and '.join(str(p) for p in result.paths)}")


def sent(
    plan_: Plan, outcome: Outcome, cautions: list[Caution], *, as_json: bool, sms_segment_price: float = 0.0,
    ledger: str | None = None, extra: dict[str, Any] | None = None,
) -> None:

    data = summary(plan_, outcome, dry_run=False, sms_segment_price=sms_segment_price)
    data["ledger"] = ledger
    data.update(extra or {})
    if as_json:
        data["warnings"] = [str(c) for c in cautions]
        _json(data)
        return
    console = _console()
    # the same account of contacts and skips as the dry-run's, so a live report alone says who was not reached
    console.print(f"[bold]{_plain(plan_.notice.id)}[/] ({_plain(plan_.notice.severity)}): sent")
    _contacts(console, plan_)
    for name, counts in data["channels"].items():
        console.print(
            f"{name:<7} planned {counts['planned']}, sent {counts['sent']}, skipped {counts['skipped']}, "
            f"failed {counts['failed']}" + (f", unknown {counts['unknown']}" if counts["unknown"] else "")
            + (f", held {counts['held']}" if counts["held"] else "")
        )
    _skipped(console, plan_)
    for name, reason in outcome.stopped.items():
        console.print(f"[red]{name} stopped[/]: {_message(reason)}")
    rejected = plan_.book.rejected
    if rejected:
        # listed with the contact problems above; said again here because these people were not reached at all
        console.print(f"[red]{rejected} contact row(s) rejected[/]: these people were not reached (rows listed above)")
    if outcome.interrupted:
        left = sum(outcome.not_started.values()) + sum(outcome.unread.values())
        console.print(
            f"[yellow]Interrupted[/]: requests already under way were finished and recorded; {left} message(s) were "
            "not sent. Run the same command again to send them (nothing is sent twice)."
        )
    for receipt in outcome.failures[:MAX_PROBLEMS]:
        console.print(f"  [red]failed[/] {receipt.channel} {_plain(receipt.recipient)}: {_message(receipt.reason)}")
    if outcome.failed_total > MAX_PROBLEMS:
        console.print(f"  … and {outcome.failed_total - MAX_PROBLEMS} more failures")
    _cautions(console, cautions)
    if ledger:
        console.print(f"Ledger: {ledger}")


def status(data: dict[str, Any], *, as_json: bool) -> None:
    """The ledger table: per channel and version, what happened and when."""
    if as_json:
        _json(data)
        return
    from rich.table import Table

    console = _console()
    if data.get("ledger"):
        console.print(f"Ledger: {data['ledger']}")
    if not data["rows"]:
        console.print(f"The ledger has nothing for {_plain(data['notice'])} yet.")
        return
    for release in data.get("timeline", []):
        note = f": {_plain(release['note'])}" if release["note"] else ""
        console.print(f"  version {release['number']}  {release['type']:<6} {release['phase']:<9} {_plain(release['sent_at'])}{note}")
    if data.get("cancelled"):
        console.print("[red]Cancelled[/]: `send` refuses this notice until its file sets `phase:` again.")
    table = Table(title=f"{_plain(data['notice'])}: last run {_plain(data['last_run'] or 'never')}", title_justify="left")
    for column in ("channel", "language", "version", "sent", "failed", "skipped", "unknown", "in flight", "held", "last activity"):
        table.add_column(column, justify="left" if column in ("channel", "language", "version", "last activity") else "right")
    for row in data["rows"]:
        table.add_row(
            _plain(row["channel"]), _plain(row["language"]), _plain(row["version"]), str(row["sent"]),
            str(row["failed"] + row["retry"]), str(row["skipped"]), str(row["unknown"]), str(row["in_flight"]),
            str(row.get("held", 0)), _plain(row["last_at"] or ""),
        )
    console.print(table)
    for row in data["rows"]:
        for reason, n in row["failed_reasons"].items():
            console.print(f"  {_plain(row['channel'])} {_plain(row['version'])}: {n} failed: {_message(reason)}")
        if row["retry"]:
            console.print(f"  {_plain(row['channel'])} {_plain(row['version'])}: {row['retry']} failed for now (transient); a re-run sends them again")
        if row.get("held"):
            console.print(
                f"  {_plain(row['channel'])} {_plain(row['version'])}: {row['held']} held for quiet hours; the first run "
                f"after {_plain(row['held_until'] or '')} (UTC) sends them"
            )
    if data["suppressions"]:
        console.print(f"{data['suppressions']} address(es) suppressed (STOP replies, bounces, spam reports and suppression files).")
    _results(console, data)


def _results(console: Any, data: dict[str, Any]) -> None:
    """What reached whom, per channel and language (reach.tally): what `sync` and `serve` recorded."""
    from rich.table import Table

    rows = [r for r in data.get("results", []) if r["channel"] in REGISTRY and REGISTRY[r["channel"]].personal]
    if rows:
        keywords = [*data.get("keywords", []), "other"]
        table = Table(title="Delivery results (as of the last `broadcast sync`)", title_justify="left",
                      caption=f"replies per keyword: {', '.join(keywords)} (other: free text, `broadcast replies`)",
                      caption_justify="left")
        for column in ("channel", "language", "accepted", "delivered", "undelivered", "bounced", *keywords, "held",
                       "suppressed"):
            table.add_column(_plain(column), justify="left" if column in ("channel", "language") else "right")
        for row in rows:
            table.add_row(
                _plain(row["channel"]), _plain(row["language"]), *(str(row[k]) for k in ("accepted", "delivered", "undelivered", "bounced")),
                *(str(row["replied"].get(k, 0)) for k in keywords), str(row["held"]), str(row["suppressed"]),
            )
        console.print(table)
        if not data.get("keywords") and any(r["replied"]["other"] for r in rows):
            console.print("Replies are counted per keyword when `status` is given the notice file (its `reply: keywords`).")
    if data.get("recipients_file"):
        console.print(f"Recipients: {_plain(data['recipients_file'])} (real addresses: keep it private)")


def synced(result: Any, *, as_json: bool) -> None:
    """What `broadcast sync` recorded, per channel, and why a channel said nothing."""
    from dataclasses import asdict

    if as_json:
        _json({"notice": result.notice, "ledger": result.ledger, "exit_code": result.exit_code,
               "channels": [{**asdict(c), "applied": asdict(c.applied)} for c in result.channels]})
        return
    console = _console()
    console.print(f"Ledger: {_plain(result.ledger)}")
    for channel in result.channels:
        applied = channel.applied
        if channel.failed:
            console.print(f"  [red]{_plain(channel.channel)}[/]: {_message(channel.note)}")
            if channel.hint:
                console.print(f"    hint: {_message(channel.hint)}")
        elif channel.note:
            console.print(f"  [yellow]{_plain(channel.channel)}[/]: {_message(channel.note)}")
        if channel.asked or applied.recorded or applied.duplicates or not channel.note:
            console.print(
                f"  {_plain(channel.channel)}: asked about {channel.asked} message(s); {applied.recorded} new event(s), "
                f"{applied.advanced} state change(s), {applied.replies} repl(ies), {applied.suppressed} suppressed, "
                f"{applied.unsuppressed} unsuppressed, {applied.duplicates} already known"
                + (f", {applied.unmatched} about messages this ledger did not send" if applied.unmatched else "")
            )


def replies(data: dict[str, Any], *, as_json: bool) -> None:
    """The replies no keyword matched, oldest first, for a person to read."""
    if as_json:
        _json(data)
        return
    console = _console()
    if not data["replies"]:
        console.print(f"No unmatched replies to {_plain(data['notice'])} (run `broadcast sync` to fetch new ones).")
        return
    console.print(f"{len(data['replies'])} repl(ies) to {_plain(data['notice'])} matched no keyword:")
    for reply in data["replies"]:
        who = f"{_plain(reply['sender'])}" + (f" ({_plain(reply['contact'])})" if reply["contact"] else "")
        console.print(f"  {_plain(reply['at'])}  {_plain(reply['channel'])}  {who}: {_message(reply['text'])}")


@contextmanager
def progress(plan: Plan, *, enabled: bool) -> Iterator[Callable[[list[Any]], None] | None]:
    """A live bar per channel on stderr: sent / failed, rate and time left. Yields the callback, or None."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.0f}/s" if task.speed else "–/s")

    bars = Progress(
        TextColumn("{task.description:<7}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("sent {task.fields[sent]} · failed {task.fields[failed]}"),
        Rate(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=False,
    )
    tasks = {
        name: bars.add_task(_plain(name), total=plan.to_send[name], sent=0, failed=0)
        for name in plan.channels
    }
    counts: dict[str, Counter[str]] = {name: Counter() for name in plan.channels}

    def advance(receipts: list[Any]) -> None:
        for receipt in receipts:
            counts[receipt.channel][receipt.status] += 1
        for name in {r.channel for r in receipts}:
            c = counts[name]
            bars.update(
                tasks[name],
                completed=sum(c.values()),
                sent=c["sent"],
                failed=c["failed"] + c["retry"] + c["unknown"],
            )

    with bars:
        yield advance


def summary(plan: Plan, outcome: Outcome, *, dry_run: bool, sms_segment_price: float = 0.0) -> dict[str, Any]:
    """The --json object: counts from receipts only, never from what was planned."""
    book = plan.book
    channels: dict[str, Any] = {}
    for name in plan.channels:
        counts = outcome.counts.get(name, Counter())
        channels[name] = {
            "planned": plan.planned(name),
            "sent": counts["sent"],
            "skipped": counts["skipped"] + sum(plan.skipped.get(name, Counter()).values()),
            "failed": counts["failed"] + counts["retry"],
            # Ctrl-C: not sent, and sent by the next run
            "not_started": outcome.not_started[name] + outcome.unread[name],
            "unknown": counts["unknown"] + sum(1 for d in plan.unknowns if d.message.channel == name),
            "reconciled": outcome.reconciled[name],
            "overridden_suppressions": plan.overridden[name],
            "skipped_reasons": dict(plan.skipped.get(name, Counter())),
            "previewed": counts["previewed"],
            # quiet hours: not sent in this run; recorded as held, and sent by the first run after them
            "held": outcome.held[name],
            "languages": dict(plan.counts.get(name, Counter())),
        }
    return {
        "notice": plan.notice.id,
        "dry_run": dry_run,
        "versions": {name: plan.renders.versions[name] for name in plan.channels},
        "contacts": {
            "read": book.read, "valid": book.valid, "rejected": book.rejected, "merged": book.merged,
            "lost_channel": book.lost_channel,
        },
        "fallbacks": [
            {"tag": tag, "language": lang, "how": how, "contacts": n} for (tag, lang, how), n in sorted(plan.fallbacks.items())
        ],
        "channels": channels,
        "stopped": outcome.stopped,
        "interrupted": outcome.interrupted,
        "problems": [
            {"file": p.file, "row": p.row, "field": p.field, "message": p.message, "rejected": p.rejected}
            for p in book.problems[:MAX_JSON_PROBLEMS]
        ],
        "problems_total": len(book.problems),
        "renderings": rendering_stats(
            plan.renders, plan.channels, plan.counts, billed=plan.billed, unit_price=sms_segment_price
        ),
        "sms_transliterated": {lang: {"before": b, "after": a} for lang, (b, a) in plan.sms_saved.items()},
        "follow_ups": dict(plan.follow.counts) if plan.follow is not None else {},
    }
