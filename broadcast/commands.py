"""The commands of the command line, each loaded only when it runs or shows its own help (see cli.py): each builds
one typed request from its options, calls one function, and reports."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from broadcast.errors import BroadcastError


def _channels(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from broadcast.channels import names as registered

    known = registered()
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not names:
        # an empty value is a mistake (an unset shell variable, a stray comma), never "every channel":
        # reading it as "all" once sent email, SMS, X posts and the banner when one channel was meant
        raise click.BadParameter(
            f"no channel named in {value!r}; nothing was sent. Name one or more of {','.join(known)}, "
            "or leave --channel out to use every channel"
        )
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(f"unknown channel {', '.join(unknown)}; choose from {','.join(known)}")
    return tuple(dict.fromkeys(names))


def _duration(ctx: click.Context, param: click.Parameter, value: str | None):  # noqa: ANN202
    if value is None:
        return None
    from broadcast.ledger import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    except OverflowError:  # 99999999999d: more than timedelta holds
        raise click.BadParameter(f"{value!r} is longer than any reminder could wait; write it like 24h or 7d") from None


class _Price(click.FloatRange):
    """A price of zero or more: nan and inf would make every cost estimate meaningless (or a crash), so they are refused."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a price; give a number such as 0.0079", param, ctx)
        return number


def _max_rejected(ctx: click.Context, param: click.Parameter, value: str):  # noqa: ANN202
    from broadcast.contacts import parse_max_rejected
    from broadcast.errors import ConfigError

    try:
        return parse_max_rejected(value)
    except ConfigError as exc:
        raise click.BadParameter(f"{exc.message}; {exc.hint}") from None


def _number_types(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    from broadcast.contacts import parse_number_types
    from broadcast.errors import ConfigError

    try:
        return parse_number_types([value] if value else [])
    except ConfigError as exc:
        raise click.BadParameter(f"{exc.message}; {exc.hint}") from None


def _reports_errors(command: Callable[..., int | None]) -> Callable[..., None]:
    """Turn BroadcastError into a short message and its exit code; never a traceback for user error."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from broadcast.config import mask

        verbose = click.get_current_context().find_root().params.get("verbose", False)
        try:
            code = command(*args, **kwargs) or 0
        except BroadcastError as exc:
            click.echo(mask(capped_lines(f"Error: {exc}")), err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - last resort: a bug must still not leak secrets
            if verbose:
                import traceback

                click.echo(mask(traceback.format_exc()), err=True)
            click.echo(mask(f"Internal error: {type(exc).__name__}: {exc}"), err=True)
            click.echo("  Hint: this is a bug in broadcast; re-run with --verbose and report the output.", err=True)
            sys.exit(3)
        sys.exit(code)

    return wrapper


#: the longest line an error prints: room for a list (every known label) yet not a runaway value's megabytes
ERROR_LINE_LIMIT = 4000


def capped_lines(text: str) -> str:
    """Each line of an error at most ERROR_LINE_LIMIT characters: an error may quote a runaway value (a megabyte
    header cell) and must still fit on a screen; a list of rows keeps every row."""
    from broadcast.display import clip

    return "\n".join(clip(line, ERROR_LINE_LIMIT) for line in text.split("\n"))


notice_argument = click.argument("notice", type=click.Path(path_type=Path))
templates_option = click.option(
    "--templates", "templates_dir", type=click.Path(file_okay=False, path_type=Path), help="Use templates from DIR."
)
max_segments_option = click.option(
    "--max-sms-segments",
    default=3,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Warn when an SMS is longer; a live send refuses unless --force.",
)
transliterate_option = click.option(
    "--sms-transliterate", is_flag=True, help="Fold SMS text to GSM-7 (č→c, curly quotes → straight) to pay for fewer segments."
)
open_option = click.option("--open", "open_page", is_flag=True, help="Open the preview page (OUT/index.html) in a browser.")
strict_option = click.option("--strict", is_flag=True, help="Any translation fallback (missing text or label), or a notice without triage questions, reassurance or outside help, is an error.")
force_option = click.option(
    "--force", is_flag=True, help="Accept an SMS longer than --max-sms-segments (a live send refuses it otherwise)."
)
ledger_option = click.option(
    "--ledger",
    envvar="BROADCAST_LEDGER",
    help="Delivery ledger URL [env: BROADCAST_LEDGER; default: .broadcast/ledger.db beside the notice file].",
)


feed_dir_option = click.option(
    "--feed-dir", type=click.Path(file_okay=False, path_type=Path), envvar="BROADCAST_FEED_DIR",
    help="Also write this release as a CAP 1.2 alert (DIR/cap/) and the Atom feed (DIR/feed.atom) [env: BROADCAST_FEED_DIR].",
)


as_option = click.option(
    "--as", "who", metavar='"NAME <EMAIL>"',
    help="Who runs this, for approvals and the audit log [default: env BROADCAST_USER, else git user.email].",
)


# options `send` and `cancel` share: where and how the live channels go out
sandbox_option = click.option(
    "--sandbox", is_flag=True, help="SendGrid sandbox mode: validated by SendGrid, not delivered."
)
web_dir_option = click.option(
    "--web-dir", envvar="BROADCAST_WEB_DIR", metavar="DIR|s3://BUCKET/FOLDER|git+URL#BRANCH[:FOLDER]",
    help="Where the web banner is published: a folder, an S3 bucket, or a folder on a git branch "
    "[env: BROADCAST_WEB_DIR; default ./web].",
)
trust_env_file_option = click.option(
    "--trust-env-file", is_flag=True,
    help="Accept a provider address and its credentials from different places (.env and the environment).",
)


def _plan_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--contacts",
                "contact_paths",
                multiple=True,
                required=True,
                type=click.Path(path_type=Path),
                help="Contacts CSV file (repeat for more files).",
            ),
            click.option("--channel", "channel_list", callback=_channels, help="Only these channels, comma-separated: email,sms,social,web."),
            click.option(
                "--region",
                envvar="BROADCAST_DEFAULT_REGION",
                help="Country for phone numbers written without +code, e.g. SI, KE, GB [env: BROADCAST_DEFAULT_REGION].",
            ),
            click.option(
                "--suppressions",
                "suppression_paths",
                multiple=True,
                type=click.Path(path_type=Path),
                help="CSV of addresses never to contact (repeatable); contacts/suppressions.csv beside a contacts file is always read.",
            ),
            ledger_option,
            click.option(
                "--resend-after",
                callback=_duration,
                help="Send a reminder to recipients whose last send is older than this (90m, 24h, 7d).",
            ),
            click.option("--retry-unknown", is_flag=True, help="Send again to recipients whose earlier outcome is unknown."),
            click.option(
                "--allow-number-types", envvar="BROADCAST_ALLOW_NUMBER_TYPES", callback=_number_types, metavar="TYPES",
                help="Send SMS to these phone number types too, comma-separated: fixed_line, premium_rate, shared_cost, "
                "pager, satellite (by default they get no SMS, with a warning) [env: BROADCAST_ALLOW_NUMBER_TYPES].",
            ),
            click.option(
                "--max-rejected", default="10%", show_default=True, envvar="BROADCAST_MAX_REJECTED", callback=_max_rejected,
                help="Refuse to send when more contact rows are rejected: a share (10%) or a number of rows (25); "
                "100% accepts any [env: BROADCAST_MAX_REJECTED].",
            ),
            templates_option,
            max_segments_option,
            transliterate_option,
            click.option(
                "--sms-segment-price", default=0.0, show_default=True, type=_Price(0),
                help="Price of one SMS segment, for the cost estimate.",
            ),
            strict_option,
            force_option,
            click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report."),
        ]
    ):
        command = option(command)
    return command


@click.command("check")
@notice_argument
@templates_option
@max_segments_option
@transliterate_option
@strict_option
@force_option
@ledger_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@_reports_errors
def check_command(
    notice: Path, templates_dir: Path | None, max_sms_segments: int, sms_transliterate: bool, strict: bool,
    force: bool, ledger: str | None, as_json: bool,
) -> int:
    """Validate NOTICE and render every channel in every language, worded as a live send would word it now."""
    from broadcast import check, report

    request = check.CheckRequest(notice, templates_dir, max_sms_segments, sms_transliterate, strict, force, ledger)
    result = check.run(request)
    report.checked(result, as_json=as_json)
    if result.refusal is not None:
        raise result.refusal
    return 0


@click.command("preview")
@notice_argument
@_plan_options
@click.option("--out", "out_dir", default="preview", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@open_option
@_reports_errors
def preview_command(notice: Path, out_dir: Path, open_page: bool, as_json: bool, **options: Any) -> int:
    """Render everything for NOTICE and the contacts, write it to --out, send nothing."""
    from broadcast.send import SendRequest

    return _send(SendRequest(_plan_request(notice, options), dry_run=True, out_dir=out_dir), as_json, open_page)


@click.command("send")
@notice_argument
@_plan_options
@click.option("--dry-run", is_flag=True, help="Render and plan, write to --out, send nothing (same as preview).")
@click.option("--out", "out_dir", default="outbox", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Where --dry-run writes.")
@open_option
@click.option("--yes", is_flag=True, help="Send without asking; required when not in a terminal.")
@sandbox_option
@web_dir_option
@click.option("--rate", "rates", multiple=True, envvar="BROADCAST_RATE", metavar="CHANNEL=N/s", help="Most requests per second (or /min, /h) to a provider, e.g. sms=50/s; repeat or comma-separate [env: BROADCAST_RATE].")
@click.option("--concurrency", multiple=True, envvar="BROADCAST_CONCURRENCY", metavar="CHANNEL=N", help="Most requests in flight at once on a channel, e.g. sms=4 (defaults: sms 10, email 4, social 1) [env: BROADCAST_CONCURRENCY].")
@click.option("--brief-dir", type=click.Path(file_okay=False, path_type=Path), envvar="BROADCAST_BRIEF_DIR", help="Also write the staff brief (brief.html, brief.md) here, before anything is sent [env: BROADCAST_BRIEF_DIR].")
@trust_env_file_option
@feed_dir_option
@as_option
@click.option("--self-approve", is_flag=True, help="Count the sender's own approval (a one-person team); the report says so.")
@click.option("--no-approval", metavar="REASON", help="Send an emergency notice without approval, for this reason (recorded in the audit log).")
@_reports_errors
def send_command(
    notice: Path, dry_run: bool, out_dir: Path, open_page: bool, as_json: bool, yes: bool, sandbox: bool,
    web_dir: str | None, rates: tuple[str, ...], concurrency: tuple[str, ...], brief_dir: Path | None,
    trust_env_file: bool, feed_dir: Path | None, who: str | None, self_approve: bool, no_approval: str | None,
    **options: Any,
) -> int:
    """Send NOTICE to the contacts on every channel (or preview it with --dry-run)."""
    from broadcast.approval import SendApproval
    from broadcast.send import SendRequest

    if open_page and not dry_run:
        raise click.UsageError("--open shows the dry-run preview page; add --dry-run")
    request = SendRequest(
        _plan_request(notice, options), dry_run=dry_run, out_dir=out_dir, yes=yes, sandbox=sandbox, web_dir=web_dir,
        rates=tuple(rates), concurrency=tuple(concurrency), brief_dir=brief_dir, trust_env_file=trust_env_file,
        feed_dir=feed_dir, approval=SendApproval(who, self_approve, no_approval),
    )
    return _send(request, as_json, open_page)


def _plan_request(notice: Path, options: dict[str, Any]) -> Any:
    from broadcast.plan import PlanRequest

    return PlanRequest(
        notice=notice,
        contacts=tuple(options["contact_paths"]),
        channels=options["channel_list"],
        templates_dir=options["templates_dir"],
        region=options["region"],
        suppressions=tuple(options["suppression_paths"]),
        ledger=options["ledger"],
        resend_after=options["resend_after"],
        retry_unknown=options["retry_unknown"],
        max_sms_segments=options["max_sms_segments"],
        sms_transliterate=options["sms_transliterate"],
        sms_segment_price=options["sms_segment_price"],
        strict=options["strict"],
        force=options["force"],
        max_rejected=options["max_rejected"],
        allow_number_types=tuple(options["allow_number_types"]),
    )


def _send(request: Any, as_json: bool, open_page: bool) -> int:
    from broadcast import report, send

    price = request.plan.sms_segment_price

    def confirm(plan: Any, warnings: list[Any]) -> bool:
        report.plan(plan, warnings, as_json=False, sms_segment_price=price)
        return click.confirm(f"Send {plan.total} messages on {', '.join(plan.channels)} now?", err=True)

    # progress bars only for a person watching: never in CI logs or with --json
    watching = not as_json and sys.stderr.isatty()
    result = send.run(
        request, confirm=confirm if sys.stdin.isatty() else None,
        progress=lambda plan: report.progress(plan, enabled=watching),
    )
    report.send_result(result, as_json=as_json, sms_segment_price=price, out_dir=request.out_dir)
    if result.approval.startswith("override"):
        # an emergency sent without a second person's look stands out wherever it is reported
        click.secho(f"SENT WITHOUT APPROVAL ({result.approval}); recorded in the audit log", fg="red", bold=True, err=True)
    if result.page is not None and not as_json:
        click.echo(f"Preview page: {result.page}", err=True)
    if result.page is not None and open_page:
        click.launch(str(result.page))
    if result.refusal is not None:
        raise result.refusal
    return result.exit_code


@click.command("approve")
@notice_argument
@_plan_options
@as_option
@click.option("--yes", is_flag=True, help="Approve without asking; required when not in a terminal.")
@click.option("--revoke", is_flag=True, help="Revoke every approval of NOTICE: send refuses until it is approved again.")
@_reports_errors
def approve_command(notice: Path, as_json: bool, who: str | None, yes: bool, revoke: bool, **options: Any) -> int:
    """Approve exactly what `send` with the same options would send (or --revoke), recorded in the ledger."""
    from broadcast import approve

    request = approve.ApproveRequest(_plan_request(notice, options), who=who, yes=yes, revoke=revoke)

    def confirm(result: Any) -> bool:
        click.echo("\n".join(result.summary()), err=True)
        return click.confirm("Record this approval?" if not result.revoked else "Revoke?", err=True)

    result = approve.run(request, confirm=confirm if sys.stdin.isatty() else None)
    if as_json:
        import json

        fp = result.fingerprint
        click.echo(json.dumps({
            "notice": result.notice, "approver": result.approver.name, "source": result.approver.source,
            "number": result.number, "revoked": result.revoked, "ledger": result.ledger,
            "fingerprint": fp.digest if fp else "", "renderings": fp.renderings if fp else {},
            "counts": result.counts, "segments": result.segments, "headlines": result.headlines,
        }, ensure_ascii=False))
    else:
        click.echo("\n".join(result.summary()))
        click.echo(f"{'Revoked' if result.revoked else 'Approved'}: #{result.number} by {result.approver}")
    return 0


@click.command("log")
@click.argument("notice_id")
@click.option("--ledger", envvar="BROADCAST_LEDGER", help="Delivery ledger URL [env: BROADCAST_LEDGER; default: beside NOTICE_ID when it is the notice file, else ./.broadcast/ledger.db].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the lines.")
@_reports_errors
def log_command(notice_id: str, ledger: str | None, as_json: bool) -> int:
    """The audit log of NOTICE_ID (a notice id, or the notice file): who checked, approved, sent, when, with what result."""
    from broadcast import approval

    found = approval.log(notice_id, ledger)
    if as_json:
        import json

        click.echo(json.dumps(found, ensure_ascii=False))
    else:
        for line in approval.log_lines(found):
            # an emergency sent without approval is shown in red, as in the send's own report
            click.secho(line, fg="red" if "override:" in line else None)
    return 0


@click.command("brief")
@notice_argument
@click.option("--out", "out_dir", default="brief", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Where brief.html and brief.md are written.")
@click.option("--language", "languages", multiple=True, metavar="xx", help="Only this notice language (repeatable; default: every notice language).")
@click.option("--since", type=click.Path(dir_okay=False, path_type=Path), metavar="OLD_NOTICE", help="The earlier version of this notice file: the brief lists what changed, per field and language.")
@templates_option
@strict_option
@_reports_errors
def brief_command(
    notice: Path, out_dir: Path, languages: tuple[str, ...], since: Path | None, templates_dir: Path | None, strict: bool
) -> int:
    """Write the staff brief for the people who answer the support channels: NOTICE in every language."""
    from broadcast import brief, report

    result = brief.make(
        notice, out_dir=out_dir, languages=list(languages), since=since, templates_dir=templates_dir, strict=strict
    )
    report.brief(result, since)
    return 0


@click.command("cancel")
@notice_argument
@click.option("--reason", default="", metavar="TEXT", help="Why the notice is withdrawn; added to every correction and to the CAP Cancel.")
@click.option("--dry-run", is_flag=True, help="Write the corrections to --out and send nothing.")
@click.option("--out", "out_dir", default="outbox", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Where --dry-run writes.")
@click.option("--yes", is_flag=True, help="Send without asking; required when not in a terminal.")
@click.option("--delete-posts", is_flag=True, help="Delete the notice's X posts instead of replying to them with the correction.")
@click.option("--channel", "channel_list", callback=_channels, help="Only these channels, comma-separated: email,sms,social,web.")
@ledger_option
@templates_option
@sandbox_option
@web_dir_option
@trust_env_file_option
@feed_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@_reports_errors
def cancel_command(notice: Path, reason: str, dry_run: bool, out_dir: Path, yes: bool, delete_posts: bool,
                   channel_list: tuple[str, ...] | None, ledger: str | None, templates_dir: Path | None, sandbox: bool,
                   web_dir: str | None, trust_env_file: bool, feed_dir: Path | None, as_json: bool) -> int:
    """Retract NOTICE, sent in error: a short correction to everyone it reached; the banner is taken down."""
    from broadcast import cancel, report

    request = cancel.CancelRequest(
        notice, reason, dry_run, out_dir, yes, delete_posts, channel_list, ledger, templates_dir, web_dir, sandbox,
        trust_env_file, feed_dir,
    )

    def confirm(result: Any) -> bool:
        report.cancel(result, as_json=False)
        return click.confirm(f"Send {sum(result.planned.values())} corrections now?", err=True)

    from broadcast import approval

    result = approval.audited(
        "cancel", notice, ledger, lambda: cancel.run(request, confirm=confirm if sys.stdin.isatty() else None),
        lambda done: {f"{c} × {lang}": n for (c, lang), n in done.planned.items()},
    )
    report.cancel(result, as_json=as_json)
    return result.exit_code


@click.command("feed")
@notice_argument
@click.option("--out", "out_dir", default="feed", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Where cap/ and feed.atom are written.")
@ledger_option
@_reports_errors
def feed_command(notice: Path, out_dir: Path, ledger: str | None) -> int:
    """Write NOTICE's latest release as a CAP 1.2 alert and the folder's Atom feed, from the ledger."""
    from broadcast import lifecycle, report

    report.paths("CAP feed", lifecycle.publish(lifecycle.FeedRequest(notice, out_dir, ledger)))
    return 0


@click.command("status")
@click.argument("notice_id")
@click.option("--ledger", envvar="BROADCAST_LEDGER", help="Delivery ledger URL [env: BROADCAST_LEDGER; default: beside NOTICE_ID when it is the notice file, else ./.broadcast/ledger.db].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--recipients", "recipients_csv", type=click.Path(dir_okay=False, path_type=Path), metavar="OUT.csv", help="Also write one row per contact and channel with their latest state, the unreached first, for the team who will phone them. It holds real addresses and phone numbers: keep it private. Cells that start with = + - @ get a leading ' so spreadsheets keep them text.")
@_reports_errors
def status_command(notice_id: str, ledger: str | None, as_json: bool, recipients_csv: Path | None) -> int:
    """What the ledger knows about NOTICE_ID (a notice id, or the notice file): per channel and version, and what
    reached whom (run `broadcast sync` first): delivered, undelivered, bounced, replies per keyword, held, suppressed."""
    from broadcast import reach, report

    data = reach.status(notice_id, ledger)
    if recipients_csv is not None:
        data["recipients_file"] = str(reach.write_recipients(reach.recipients(notice_id, ledger), recipients_csv))
    report.status(data, as_json=as_json)
    return 0


@click.command("sync")
@notice_argument
@click.option("--channel", "channel_list", callback=_channels, help="Only these channels, comma-separated: email,sms.")
@ledger_option
@trust_env_file_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@_reports_errors
def sync_command(notice: Path, channel_list: tuple[str, ...] | None, ledger: str | None, trust_env_file: bool,
                 as_json: bool) -> int:
    """Ask the providers what became of NOTICE's messages, and what people replied, and record it in the ledger.

    Run it before `status` and before the next `send`. Run again after a failure: it goes on where it stopped."""
    from broadcast import report, sync

    result = sync.run(sync.SyncRequest(notice, channel_list, ledger, trust_env_file))
    report.synced(result, as_json=as_json)
    return result.exit_code


@click.command("replies")
@click.argument("notice_id")
@click.option("--ledger", envvar="BROADCAST_LEDGER", help="Delivery ledger URL [env: BROADCAST_LEDGER; default: beside NOTICE_ID when it is the notice file, else ./.broadcast/ledger.db].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the lines.")
@_reports_errors
def replies_command(notice_id: str, ledger: str | None, as_json: bool) -> int:
    """The replies to NOTICE_ID that match none of its reply keywords, for a person to read: when, from whom, what.

    Give the notice file, so its `reply: keywords` are known (with only the id, every reply is listed)."""
    from broadcast import reach, report

    report.replies(reach.unmatched(notice_id, ledger), as_json=as_json)
    return 0


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen on this address (a proxy in front of serve gives it the public address, BROADCAST_PUBLIC_URL).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Listen on this port (0: any free port, printed at start).")
@click.option("--ledger", envvar="BROADCAST_LEDGER", help="Delivery ledger URL the results are recorded in: the one `send` writes [env: BROADCAST_LEDGER; default: ./.broadcast/ledger.db].")
@_reports_errors
def serve_command(host: str, port: int, ledger: str | None) -> int:
    """Take the providers' webhooks (Twilio status and inbound SMS, keys pressed in calls, SendGrid events) and
    record them in the ledger."""
    from broadcast import serve

    return serve.run(serve.ServeRequest(host, port, ledger), announce=lambda line: click.echo(line, err=True))
