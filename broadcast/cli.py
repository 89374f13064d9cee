"""The command line's entry point: the `broadcast` group, which loads a command's module only when it is used.

`broadcast --help` lists every command from the summaries below without building any of them (their options
are most of the start-up time); `broadcast COMMAND ...` and `broadcast COMMAND --help` load broadcast.commands.
"""

from __future__ import annotations

import os
import sys

import click

from broadcast import __version__

#: command name → its attribute in broadcast.commands, and the first paragraph of its help, which is what the
#: group's --help shows (tests/test_cli.py checks each against the command's own help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("check_command", "Validate NOTICE and render every channel in every language, worded as a live send "
              "would word it now."),
    "preview": ("preview_command", "Render everything for NOTICE and the contacts, write it to --out, send nothing."),
    "send": ("send_command", "Send NOTICE to the contacts on every channel (or preview it with --dry-run)."),
    "approve": ("approve_command", "Approve exactly what `send` with the same options would send (or --revoke), "
                "recorded in the ledger."),
    "log": ("log_command", "The audit log of NOTICE_ID (a notice id, or the notice file): who checked, approved, "
            "sent, when, with what result."),
    "brief": ("brief_command", "Write the staff brief for the people who answer the support channels: NOTICE in "
              "every language."),
    "cancel": ("cancel_command", "Retract NOTICE, sent in error: a short correction to everyone it reached; the "
               "banner is taken down."),
    "feed": ("feed_command", "Write NOTICE's latest release as a CAP 1.2 alert and the folder's Atom feed, from "
             "the ledger."),
    "status": ("status_command", "What the ledger knows about NOTICE_ID (a notice id, or the notice file): per "
               "channel and version, and what reached whom (run `broadcast sync` first): delivered, undelivered, "
               "bounced, replies per keyword, held, suppressed."),
    "sync": ("sync_command", "Ask the providers what became of NOTICE's messages, and what people replied, and "
             "record it in the ledger."),
    "replies": ("replies_command", "The replies to NOTICE_ID that match none of its reply keywords, for a person "
                "to read: when, from whom, what."),
    "serve": ("serve_command", "Take the providers' webhooks (Twilio status and inbound SMS, keys pressed in calls, "
              "SendGrid events) and record them in the ledger."),
}


def _verbose_logging() -> None:
    """--verbose: our own steps in detail, every line masked. logging is imported only here: `broadcast --help`
    and every run without -v start without it."""
    import logging

    from broadcast.config import mask

    class MaskingFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return mask(super().format(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    # the SDKs' debug logs would print every recipient's address and payload
    logging.getLogger("broadcast").setLevel(logging.DEBUG)


class _Broadcast(click.Group):
    """The command group; its own options (-v, --env-file) may also come after the command's name.

    People type `broadcast check x.yaml -v` as often as `broadcast -v check x.yaml`; both must work. The group's
    options are moved in front of the command before parsing, so they are read in one place, in one order.

    Commands are loaded lazily (click's "lazily loading subcommands"): those named in COMMANDS come from
    broadcast.commands when asked for; one added with ``@main.command`` is an ordinary eager command.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist(self, args))

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: object) -> click.Context:
        if parent is None:
            # the width click would work out itself, without importing shutil (3 ms of `broadcast --help`)
            extra.setdefault("terminal_width", _help_width(HELP_WIDTH))
        return super().make_context(info_name, args, parent, **extra)  # type: ignore[arg-type]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        from broadcast import commands

        command = getattr(commands, COMMANDS[cmd_name][0])
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # the listing shows each command's summary without loading broadcast.commands; click words it exactly as
        # it would from the loaded command (first sentence, cut to the width)
        from gettext import gettext as _  # as click words the section

        listed = [
            (name, self.commands[name] if name in self.commands else click.Command(name, help=COMMANDS[name][1]))
            for name in self.list_commands(ctx)
        ]
        listed = [(name, command) for name, command in listed if not command.hidden]
        if listed:
            limit = formatter.width - 6 - max(len(name) for name, _command in listed)
            with formatter.section(_("Commands")):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in listed])


#: the widest help text (click's max_content_width)
HELP_WIDTH = 100


def _help_width(most: int) -> int:
    """The help formatter's width exactly as click computes it from shutil.get_terminal_size(): $COLUMNS, else the
    terminal's width, else 80; at most ``most``, less 2, at least 50."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            columns = 80
    return max(min(columns, most) - 2, 50)


def _hoist(group: click.Group, args: list[str]) -> list[str]:
    """``args`` with the group's own options, wherever they stand before a ``--``, moved to the front."""
    takes_value: dict[str, bool] = {}
    for param in group.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                takes_value[name] = not (param.is_flag or param.count)
    names = set(group.commands) | set(COMMANDS if isinstance(group, _Broadcast) else ())
    command_at, i = None, 0
    while i < len(args) and command_at is None:
        if args[i] in names:
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


@click.group(cls=_Broadcast, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH})
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
    from broadcast.errors import BroadcastError

    if verbose:
        _verbose_logging()
    try:
        load_dotenv_file(env_file)
    except BroadcastError as exc:
        from broadcast.commands import capped_lines

        click.echo(mask(capped_lines(f"Error: {exc}")), err=True)
        ctx.exit(exc.exit_code)


def run() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    main(prog_name="broadcast")


if __name__ == "__main__":  # pragma: no cover
    run()
