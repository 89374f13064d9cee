"""What the CLI prints: short, scannable reports for people under pressure, or one JSON object for machines."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broadcast.pipeline import Caution, Checked
    from broadcast.plan import Plan
    from broadcast.send import Outcome

#: show at most this many contact problems in the report; the rest are counted (plan.csv has every row)
MAX_PROBLEMS = 20


def _console(stderr: bool = False):  # noqa: ANN202 - rich is imported lazily to keep start-up fast
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _json(data: dict[str, Any]) -> None:
    from broadcast.config import mask

    sys.stdout.write(mask(json.dumps(data, ensure_ascii=False, indent=2)) + "\n")


def checked(result: Checked, *, as_json: bool) -> None:
    from broadcast.pipeline import rendering_stats

    notice = result.notice
    rows = rendering_stats(result.renders, list(dict.fromkeys(c for c, _, _ in result.renders.renderings)))
    if as_json:
        _json(
            {
                "notice": notice.id,
                "ok": True,
                "languages": notice.languages,
                "renderings": rows,
                "warnings": [str(w) for w in result.warnings],
            }
        )
        return
    console = _console()
    console.print(f"[bold]{notice.id}[/] ({notice.severity}) is valid: {len(notice.channels)} support channels, "
                  f"languages {', '.join(notice.languages)}")
    for row in rows:
        console.print("  " + _describe(row))
    _cautions(console, result.warnings)
    console.print("[green]OK[/]: every channel renders in every language and names every support channel.")


def _describe(row: dict[str, Any]) -> str:
    text = f"{row['channel']:<7} {row['language']:<6}"
    if "segments" in row:
        text += f" {row['characters']} chars, {row['encoding']}, {row['segments']} segment(s)"
        if row.get("cost"):
            text += f", {row['billed_segments']} segments billed ≈ {row['cost']:.4f}"
    if "posts" in row:
        text += f" {row['posts']} post(s), weighted {', '.join(map(str, row['weighted']))} of 280"
    if "subject" in row:
        text += f" subject: {row['subject']}"
    if "recipients" in row:
        text = f"{text}  → {row['recipients']} recipient(s)"
    return text


def _cautions(console: Any, cautions: list[Caution]) -> None:
    for caution in cautions:
        console.print(f"[yellow]Warning[/]: {caution}")


def plan(plan: Plan, cautions: list[Caution], *, as_json: bool, sms_segment_price: float = 0.0) -> None:
    """The plan a person confirms before a live send."""
    from broadcast.pipeline import rendering_stats

    console = _console(stderr=as_json)
    notice = plan.notice
    book = plan.book
    console.print(f"[bold]{notice.id}[/] ({notice.severity}), languages {', '.join(notice.languages)}")
    console.print(
        f"Contacts: {book.read} read, {book.valid} valid, {book.rejected} rejected, {book.merged} merged as duplicates"
    )
    if book.lost_channel:
        console.print(f"  [yellow]{book.lost_channel} contact(s) lost a channel[/]: reached on fewer channels, see below")
    for problem in book.problems[:MAX_PROBLEMS]:
        colour = "red" if problem.rejected else "yellow"
        console.print(f"  [{colour}]{'rejected' if problem.rejected else 'warning'}[/] {problem}")
    if len(book.problems) > MAX_PROBLEMS:
        console.print(f"  … and {len(book.problems) - MAX_PROBLEMS} more contact problems")
    for (tag, lang, how), n in sorted(plan.fallbacks.items()):
        shown = tag or "(no language)"
        console.print(f"  {n} contact(s) with {shown} get {lang} ({'base language' if how == 'base' else 'default language'})")
    console.print("Plan:")
    for row in rendering_stats(
        plan.renders, plan.channels, plan.counts, billed=plan.billed, sms_segment_price=sms_segment_price
    ):
        console.print("  " + _describe(row))
    for lang, (before, after) in sorted(plan.sms_saved.items()):
        console.print(f"  sms {lang}: --sms-transliterate saves {before - after} segment(s) per message ({before} → {after})")
    for name in plan.channels:
        for reason, n in sorted(plan.skipped.get(name, {}).items()):
            console.print(f"  {name}: {n} skipped: {reason}")
    unknown = Counter(d.message.channel for d in plan.unknowns)
    for name, n in sorted(unknown.items()):
        console.print(f"  [red]{name}: {n} unknown[/]: an earlier run may have sent them; --retry-unknown sends them again")
    _cautions(console, cautions)


def previewed(
    plan_: Plan, outcome: Outcome, cautions: list[Caution], out_dir: Path, *, as_json: bool, sms_segment_price: float = 0.0
) -> None:
    from broadcast.pipeline import summary

    if as_json:
        data = summary(plan_, outcome, dry_run=True, sms_segment_price=sms_segment_price)
        data["out"] = str(out_dir)
        data["warnings"] = [str(c) for c in cautions]
        _json(data)
        return
    plan(plan_, cautions, as_json=False, sms_segment_price=sms_segment_price)
    console = _console()
    total = sum(c["previewed"] for c in outcome.counts.values())
    console.print(
        f"[bold]Dry-run[/]: nothing was sent. {total} message(s) planned; renderings and plan.csv are in {out_dir}/"
    )


def sent(plan_: Plan, outcome: Outcome, cautions: list[Caution], *, as_json: bool, sms_segment_price: float = 0.0) -> None:
    from broadcast.pipeline import summary

    data = summary(plan_, outcome, dry_run=False, sms_segment_price=sms_segment_price)
    if as_json:
        data["warnings"] = [str(c) for c in cautions]
        _json(data)
        return
    console = _console()
    for name, counts in data["channels"].items():
        console.print(
            f"{name:<7} planned {counts['planned']}, sent {counts['sent']}, skipped {counts['skipped']}, "
            f"failed {counts['failed']}" + (f", unknown {counts['unknown']}" if counts["unknown"] else "")
        )
    for name, reason in outcome.stopped.items():
        console.print(f"[red]{name} stopped[/]: {reason}")
    rejected = [problem for problem in plan_.book.problems if problem.rejected]
    if rejected:
        console.print(f"[red]{len(rejected)} contact row(s) rejected[/]: these people were not reached")
    for problem in rejected[:MAX_PROBLEMS]:
        console.print(f"  [red]rejected[/] {problem}")
    if len(rejected) > MAX_PROBLEMS:
        console.print(f"  … and {len(rejected) - MAX_PROBLEMS} more rejected rows")
    if outcome.interrupted:
        left = sum(outcome.not_started.values()) + sum(outcome.unread.values())
        console.print(
            f"[yellow]Interrupted[/]: requests already under way were finished and recorded; {left} message(s) were "
            "not sent. Run the same command again to send them (nothing is sent twice)."
        )
    for receipt in outcome.failures[:MAX_PROBLEMS]:
        console.print(f"  [red]failed[/] {receipt.channel} {receipt.recipient}: {receipt.reason}")
    if outcome.failed_total > MAX_PROBLEMS:
        console.print(f"  … and {outcome.failed_total - MAX_PROBLEMS} more failures")
    _cautions(console, cautions)


def status(data: dict[str, Any], *, as_json: bool) -> None:
    """The ledger table: per channel and version, what happened and when."""
    if as_json:
        _json(data)
        return
    from rich.table import Table

    console = _console()
    if not data["rows"]:
        console.print(f"The ledger has nothing for {data['notice']} yet.")
        return
    table = Table(title=f"{data['notice']}: last run {data['last_run'] or 'never'}", title_justify="left")
    for column in ("channel", "version", "sent", "failed", "skipped", "unknown", "in flight", "last activity"):
        table.add_column(column, justify="right" if column not in ("channel", "version", "last activity") else "left")
    for row in data["rows"]:
        table.add_row(
            row["channel"], row["version"], str(row["sent"]), str(row["failed"] + row["retry"]), str(row["skipped"]),
            str(row["unknown"]), str(row["in_flight"]), row["last_at"] or "",
        )
    console.print(table)
    for row in data["rows"]:
        for reason, n in row["failed_reasons"].items():
            console.print(f"  {row['channel']} {row['version']}: {n} failed: {reason}")
        if row["retry"]:
            console.print(f"  {row['channel']} {row['version']}: {row['retry']} failed for now (transient); a re-run sends them again")
    if data["suppressions"]:
        console.print(f"{data['suppressions']} address(es) suppressed (STOP replies and suppression files).")


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
        name: bars.add_task(name, total=plan.to_send[name], sent=0, failed=0)
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
