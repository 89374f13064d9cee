"""One error hierarchy: every failure a user can act on is a BroadcastError with where, what and a hint."""

from __future__ import annotations

import reprlib
from pathlib import Path

from broadcast.display import VALUE_LIMIT, clip

#: the most of one user value an error message repeats: enough to recognise it, never a flood (as in every output)
MAX_SHOWN = VALUE_LIMIT
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxlist, _REPR.maxdict, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = MAX_SHOWN


def shown(value: object, *, quote: bool = True) -> str:
    """``value`` as an error quotes it (its repr, or the text itself without ``quote``), cut to about MAX_SHOWN.

    The whole repr is never built: a 10 MB text or a YAML alias bomb costs no more to show than a short value.
    """
    if isinstance(value, str):
        if not quote:
            return clip(value, MAX_SHOWN)
        if len(value) <= MAX_SHOWN:
            return repr(value)
        return f"{value[:MAX_SHOWN]!r}… ({len(value):,} characters)"
    text = _REPR.repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


class BroadcastError(Exception):
    """Root of every error broadcast reports to a person; the CLI prints it without a traceback.

    ``file``, ``row`` and ``field`` say where; the message says what; ``hint`` says what to do next.
    """

    exit_code: int = 2
    #: what ``row`` counts: a CSV file's rows; text files such as YAML say line
    unit: str = "row"

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        # a field path is made of the user's own keys, which may be of any length
        self.field = shown(field, quote=False) if field is not None else None
        self.hint = hint

    @property
    def where(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.row is not None:
            parts.append(f"{self.unit} {self.row}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  Hint: {self.hint}"
        return text


class InputError(BroadcastError):
    """The notice, a contacts file or a template is wrong; nothing is sent."""


class NoticeError(InputError):
    """The notice file cannot be read or does not validate."""

    unit = "line"


class ContactsError(InputError):
    """A contacts file cannot be read at all (a bad row is a warning, not this)."""


class TemplateError(InputError):
    """A template does not parse, uses an unknown variable, or leaves out a support channel."""


class ConfigError(BroadcastError):
    """Configuration is missing or wrong: credentials, options, environment."""


class ChannelError(BroadcastError):
    """A whole channel cannot go on (bad credentials, provider refuses us); other channels continue."""

    exit_code = 1


class LedgerError(BroadcastError):
    """The delivery ledger cannot be opened or written."""


class Aborted(BroadcastError):
    """The person declined, or a live send needed --yes in a non-interactive shell."""
