"""How text from notices, contact files and providers is shown back to people: capped in length, inert in spreadsheets."""

from __future__ import annotations

#: a single echoed value (a file name, a tag, a subject, a recipient, a provider's reason) is cut after this many characters
VALUE_LIMIT = 200
#: a whole message that quotes values (a contact problem, a warning) is cut after this many characters
MESSAGE_LIMIT = 1000

#: what a spreadsheet reads as the start of a formula (OWASP "CSV injection"); tab and CR hide one behind whitespace
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def clip(text: object, limit: int = VALUE_LIMIT) -> str:
    """``text`` as a string of about ``limit`` characters at most: a runaway cell in a contacts file (megabytes
    of header) must not flood the terminal, the preview page or --json. A cut value ends with an ellipsis and
    says how long it was, so a person knows it was cut and by how much.
    """
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def csv_cell(value: object) -> str:
    """A value for a CSV cell that a spreadsheet shows as text and never runs as a formula.

    A cell starting with = + - @, a tab or a carriage return gets a leading single quote, as OWASP advises:
    ``+38641555010`` becomes ``'+38641555010``, still readable as the phone number it is, and
    ``=cmd|'/Ccalc'!A0`` stays text instead of starting a program. Every other value is written as it is.
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_row(values: tuple[object, ...] | list[object]) -> list[str]:
    """Every cell of one CSV row through csv_cell: the one rule for every CSV file broadcast writes."""
    return [csv_cell(v) for v in values]
