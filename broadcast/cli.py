"""The command line: parse options, call one pipeline function, report. No loops over contacts here."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from broadcast import __version__
from broadcast.errors import Aborted, BroadcastError

CHANNEL_NAMES = ("email", "sms", "social", "web")


def _channels(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not names:
        # an empty value is a mistake (an unset shell variable, a stray comma), never "every channel":
        # reading it as "all" once sent email, SMS, X posts and the banner when one channel was meant
        raise click.BadParameter(
            f"no channel named in {value!r}; nothing was sent. Name one or more of {','.join(CHANNEL_NAMES)}, "
            "or leave --channel out to use every channel"
        )
    unknown = [n for n in names if n not in CHANNEL_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown channel {', '.join(unknown)}; choose from {','.join(CHANNEL_NAMES)}")
    return names


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
            click.echo(mask(_capped_lines(f"Error: {exc}")), err=True)
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


def _capped_lines(text: str) -> str:
    """Each line of an error at most ERROR_LINE_LIMIT characters: an error may quote a runaway value (a megabyte
    header cell) and must still fit on a screen; a list of rows keeps every row."""
    from broadcast.display import clip

    return "\n".join(clip(line, ERROR_LINE_LIMIT) for line in text.split("\n"))


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from broadcast.config import mask

        return mask(super().format(record))


class _Broadcast(click.Group):
    """The command group; its own options (-v, --env-file) may also come after the command's name.

    People type `broadcast check x.yaml -v` as often as `broadcast -v check x.yaml`; both must work. The group's
    options are moved in front of the command before parsing, so they are read in one place, in one order.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist(self, args))


def _hoist(group: click.Group, args: list[str]) -> list[str]:
    """``args`` with the group's own options, wherever they stand before a ``--``, moved to the front."""
    takes_value: dict[str, bool] = {}
    for param in group.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                takes_value[name] = not (param.is_flag or param.count)
    command_at, i = None, 0
    while i < len(args) and command_at is None:
        if args[i] in group.commands:
            command_at = i
        elif takes_value.get(args[i]):
            i += 1  # an option's value (`--env-file send`) is not the command
        i += 1
    if command_at is None:
        return args
    front, rest, i = list(args[:command_at]), [], command_at
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in takes_value and not (name.startswith("--version") or name in ("-h", "--help")):
            front.append(arg)
            if takes_value[name] and "=" not in arg and i + 1 < len(args):
                front.append(args[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


@click.group(cls=_Broadcast, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="broadcast")
@click.option("--env-file", type=click.Path(dir_okay=False), help="Read variables from this file instead of ./.env.")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (secrets are always masked).")
@click.pass_context
def main(ctx: click.Context, env_file: str | None, verbose: bool) -> None:
    """Send one crisis notice on every channel, each contact in their own language.

    \b
    Start with a dry-run, which renders everything and sends nothing:
      broadcast send examples/boil-water.yaml --contacts contacts/example.csv --dry-run
    Then send for real (credentials from the environment or .env):
      broadcast send examples/boil-water.yaml --contacts contacts/example.csv --yes
    """
    from broadcast.config import load_dotenv_file, mask

    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_MaskingFormatter("%(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
        # our own steps in detail; the SDKs' debug logs would print every recipient's address and payload
        logging.getLogger("broadcast").setLevel(logging.DEBUG)
    try:
        load_dotenv_file(env_file)
    except BroadcastError as exc:
        click.echo(mask(_capped_lines(f"Error: {exc}")), err=True)
        ctx.exit(exc.exit_code)


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


@main.command("check")
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
    from broadcast import pipeline, report

    where = pipeline.ledger_url(ledger, notice)
    stray = pipeline.stray_ledger(notice, where, live=False, chosen=ledger)
    checked = pipeline.check(
        notice, templates_dir=templates_dir, max_sms_segments=max_sms_segments,
        sms_transliterate=sms_transliterate, strict=strict, ledger=pipeline.open_ledger(where, dry_run=True),
    )
    if stray:
        checked.warnings.append(stray)
    from broadcast.ledger import masked_url

    report.checked(checked, as_json=as_json, force=force, ledger=masked_url(where))
    pipeline.refuse_long_sms(checked.sms_too_long, max_sms_segments, force=force, sent="check found it")
    return 0


@main.command("preview")
@notice_argument
@_plan_options
@click.option("--out", "out_dir", default="preview", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@open_option
@_reports_errors
def preview_command(notice: Path, out_dir: Path, **options: Any) -> int:
    """Render everything for NOTICE and the contacts, write it to --out, send nothing."""
    return _dry_run(notice, out_dir, **options)


@main.command("send")
@notice_argument
@_plan_options
@click.option("--dry-run", is_flag=True, help="Render and plan, write to --out, send nothing (same as preview).")
@click.option("--out", "out_dir", default="outbox", show_default=True, type=click.Path(file_okay=False, path_type=Path), help="Where --dry-run writes.")
@open_option
@click.option("--yes", is_flag=True, help="Send without asking; required when not in a terminal.")
@click.option("--sandbox", is_flag=True, help="SendGrid sandbox mode: validated by SendGrid, not delivered.")
@click.option("--web-dir", type=click.Path(file_okay=False, path_type=Path), envvar="BROADCAST_WEB_DIR", help="Where the web banner files go [env: BROADCAST_WEB_DIR; default ./web].")
@click.option("--rate", "rates", multiple=True, envvar="BROADCAST_RATE", metavar="CHANNEL=N/s", help="Most requests per second (or /min, /h) to a provider, e.g. sms=50/s; repeat or comma-separate [env: BROADCAST_RATE].")
@click.option("--concurrency", multiple=True, envvar="BROADCAST_CONCURRENCY", metavar="CHANNEL=N", help="Most requests in flight at once on a channel, e.g. sms=4 (defaults: sms 10, email 4, social 1) [env: BROADCAST_CONCURRENCY].")
@click.option("--brief-dir", type=click.Path(file_okay=False, path_type=Path), envvar="BROADCAST_BRIEF_DIR", help="Also write the staff brief (brief.html, brief.md) here, before anything is sent [env: BROADCAST_BRIEF_DIR].")
@click.option("--trust-env-file", is_flag=True, help="Accept a provider address and its credentials from different places (.env and the environment).")
@_reports_errors
def send_command(
    notice: Path, dry_run: bool, out_dir: Path, yes: bool, sandbox: bool, web_dir: Path | None,
    rates: tuple[str, ...], concurrency: tuple[str, ...], trust_env_file: bool = False, brief_dir: Path | None = None, **options: Any,
) -> int:
    """Send NOTICE to the contacts on every channel (or preview it with --dry-run)."""
    if options.get("open_page") and not dry_run:
        raise click.UsageError("--open shows the dry-run preview page; add --dry-run")
    if dry_run:
        return _dry_run(notice, out_dir, brief_dir=brief_dir, **options)
    from broadcast import pipeline, report
    from broadcast.config import channel_settings
    from broadcast.ledger import masked_url
    from broadcast.plan import sms_over_limit
    from broadcast.rate import gates, parse_concurrency, parse_rates
    from broadcast.send import execute, live_channels

    as_json = options.pop("as_json")
    limits = gates(parse_rates(rates), parse_concurrency(concurrency))
    # credentials first: a send that cannot go out stops before it touches contacts or the ledger
    settings = channel_settings(
        options.get("channel_list") or CHANNEL_NAMES, sandbox=sandbox, web_dir=web_dir, trust_env_file=trust_env_file
    )
    if trust_env_file:
        from broadcast.config import trust_problems

        for problem in trust_problems(settings):
            click.echo(f"Warning: {problem} (sending anyway: --trust-env-file)", err=True)
    where = pipeline.ledger_url(options.get("ledger"), notice)
    pipeline.stray_ledger(notice, where, live=True, chosen=options.get("ledger"))
    ledger = pipeline.open_ledger(where, dry_run=False)
    plan, warnings = pipeline.prepare(notice, ledger=ledger, **_prepare_args(options))
    pipeline.refuse_long_sms(
        sms_over_limit(plan, options["max_sms_segments"]), options["max_sms_segments"], force=options["force"]
    )
    if brief_dir is not None:
        # written first, so the people who answer have it before the first customer reads the notice
        pipeline.write_brief(plan, brief_dir, templates_dir=options.get("templates_dir"))
    if not yes and plan.total:
        if not sys.stdin.isatty():
            raise Aborted(
                "refusing a live send without --yes in a non-interactive shell; nothing was sent",
                hint="preview first with --dry-run, then add --yes to send",
            )
        report.plan(plan, warnings, as_json=False, sms_segment_price=options["sms_segment_price"])
        if not click.confirm(f"Send {plan.total} messages on {', '.join(plan.channels)} now?", err=True):
            raise Aborted("cancelled; nothing was sent")
    channels = live_channels(plan, settings)
    # progress bars only for a person watching: never in CI logs or with --json
    with report.progress(plan, enabled=not as_json and sys.stderr.isatty()) as advance:
        outcome = execute(plan, channels, ledger=ledger, progress=advance, limits=limits)
    report.sent(
        plan, outcome, warnings, as_json=as_json, sms_segment_price=options["sms_segment_price"], ledger=masked_url(where)
    )
    if outcome.interrupted:
        return 130
    # rejected contact rows were not reached: listed in the report, and the run is not a clean success
    return 1 if outcome.failures or outcome.stopped or plan.book.rejected else 0


def _prepare_args(options: dict[str, Any]) -> dict[str, Any]:
    contacts = list(options["contact_paths"])
    suppressions = list(options.get("suppression_paths") or ())
    for path in contacts:
        beside = Path(path).parent / "suppressions.csv"
        if beside.is_file() and beside not in suppressions and beside != Path(path):
            suppressions.append(beside)
    return {
        "contact_paths": contacts,
        "suppression_paths": suppressions,
        "resend_after": options.get("resend_after"),
        "retry_unknown": options.get("retry_unknown", False),
        "sms_transliterate": options.get("sms_transliterate", False),
        "strict": options.get("strict", False),
        "channels": options.get("channel_list"),
        "templates_dir": options.get("templates_dir"),
        "region": options.get("region"),
        "max_sms_segments": options.get("max_sms_segments", 3),
        "max_rejected": options.get("max_rejected"),
        "allow_number_types": options.get("allow_number_types"),
    }


def _dry_run(notice: Path, out_dir: Path, brief_dir: Path | None = None, **options: Any) -> int:
    from broadcast import pipeline, report
    from broadcast.ledger import masked_url
    from broadcast.plan import sms_over_limit
    from broadcast.send import dry_run_channels, execute

    as_json = options.pop("as_json")
    open_page = options.pop("open_page", False)
    # a dry-run reads the ledger, if there is one, so it shows what a live run would skip; it never writes it
    where = pipeline.ledger_url(options.get("ledger"), notice)
    stray = pipeline.stray_ledger(notice, where, live=False, chosen=options.get("ledger"))
    ledger = pipeline.open_ledger(where, dry_run=True)
    plan, warnings = pipeline.prepare(notice, ledger=ledger, **_prepare_args(options))
    warnings += [stray] if stray else []
    from broadcast.config import trust_problems

    # what a live send would refuse (config.channel_settings), shown first
    warnings += [pipeline.Caution("env file", f"{p}; a live send refuses this without --trust-env-file")
                 for p in trust_problems(plan.channels)]
    page = pipeline.write_preview(
        plan, out_dir, warnings,
        sms_segment_price=options["sms_segment_price"], max_sms_segments=options["max_sms_segments"],
        templates_dir=options.get("templates_dir"),
    )
    if brief_dir is not None:
        pipeline.write_brief(plan, brief_dir, templates_dir=options.get("templates_dir"))
    outcome = execute(plan, dry_run_channels(plan, out_dir))
    report.previewed(
        plan, outcome, warnings, out_dir, as_json=as_json, sms_segment_price=options["sms_segment_price"],
        ledger=masked_url(where), ledger_found=ledger is not None,
    )
    if not as_json:
        click.echo(f"Preview page: {page}", err=True)
    if open_page:
        click.launch(str(page))
    # the preview is written either way; its exit code is the one a live send of the same input would have
    pipeline.refuse_long_sms(
        sms_over_limit(plan, options["max_sms_segments"]), options["max_sms_segments"],
        force=options["force"], sent="the preview shows it",
    )
    return 1 if plan.book.rejected else 0  # what the live send would return for its contacts


@main.command("brief")
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
    from broadcast import brief

    result = brief.make(
        notice, out_dir=out_dir, languages=list(languages), since=since, templates_dir=templates_dir, strict=strict
    )
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if result.changes is not None:
        changed: dict[str, list[str]] = {}
        for change in result.changes:
            changed.setdefault(change.field, []).append(change.language)
        listed = "; ".join(f"{name} ({', '.join(langs)})" for name, langs in changed.items())
        click.echo(f"Changed since {since}: {listed or 'nothing'}")
    click.echo(f"Staff brief ({', '.join(result.languages)}): {' and '.join(str(p) for p in result.paths)}")
    return 0


@main.command("status")
@click.argument("notice_id")
@click.option("--ledger", envvar="BROADCAST_LEDGER", help="Delivery ledger URL [env: BROADCAST_LEDGER; default: beside NOTICE_ID when it is the notice file, else ./.broadcast/ledger.db].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@_reports_errors
def status_command(notice_id: str, ledger: str | None, as_json: bool) -> int:
    """What the ledger knows about NOTICE_ID (a notice id, or the notice file): per channel and version."""
    from broadcast import pipeline, report

    report.status(pipeline.status(notice_id, ledger), as_json=as_json)
    return 0


def run() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    main(prog_name="broadcast")


if __name__ == "__main__":  # pragma: no cover
    run()
