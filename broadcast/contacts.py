"""Read contact CSV files into normalized, de-duplicated contacts, and report every bad row."""

from __future__ import annotations

import codecs
import csv
import functools
import os
import re
import shutil
import sqlite3
import tempfile
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from broadcast.channels import REGISTRY
from broadcast.errors import ConfigError, ContactsError
from broadcast.processes import alive

COLUMNS = ("name", "email", "phone", "language", "channels", "tags", "timezone")
EXPECTED_HEADER = ",".join(COLUMNS)
MAX_FIELD_LENGTH = 1000

# Outlook and Gmail exports write "Ana Novak <ana@...>"; email-validator reads that from 2.2 on (setup.cfg requires it).
_DISPLAY_NAME_OPTION = {"allow_display_name": True}
_CASE_INSENSITIVE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)  # email_validator lowercases these
_CHANNEL_NAMES = {"email": "email", "sms": "SMS"}
_DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_CSV_FIELD_SIZE_LIMIT = 2**31 - 1
_HEADER_PUNCTUATION = re.compile(r"[\s_-]+")
#: RFC 5646 asks every implementation to take tags of at least 35 characters; longer ones are not in real use
_MAX_LANGUAGE_TAG = 35
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
# A spreadsheet that stored a phone as a number exports it like 3.86155501E+11, and the lost digits cannot be recovered.
_SCIENTIFIC = re.compile(r"\+?\d+(?:[.,]\d+)?[eE]\+?\d+")
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "has no country code we know",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short to be a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short to be a phone number",
    phonenumbers.NumberParseException.TOO_LONG: "is too long to be a phone number",
}
_ATEXT = r"A-Za-z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_ADDRESS = re.compile(rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@([A-Za-z0-9.-]+)")
_MAX_PLAIN_ADDRESS = 254  # RFC 5321's limit, which email_validator enforces on the whole address
_NO_REGION_EXAMPLE = "+386 1 555 0100"
_SAVE_AS_UTF8 = (
    "save it as UTF-8: in Excel use File > Save As > 'CSV UTF-8 (Comma delimited)'; "
    "in LibreOffice tick 'Edit filter settings' and choose 'Unicode (UTF-8)'"
)
_QUOTE_HINT = 'a double quote (") that is never closed joins the following lines into this field; check this row'
_STRAY_QUOTE_HINT = (
    'remove the stray double quote ("), or close the one that is never closed at the end of its value; '
    "the rows after it were read as usual"
)
#: a quoted value may hold line breaks, but one that runs on for more lines than this is a quote never closed
_MAX_RECORD_LINES = 20


@dataclass(frozen=True, slots=True)
class Contact:
    """One recipient, merged from every row that shares its email or phone."""

    key: str
    name: str
    email: str | None
    phone: str | None
    language: str
    channels: frozenset[str]
    tags: tuple[str, ...]
    source: str


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong in a contacts file; ``rejected`` means the row gives no contact at all."""

    file: str
    row: int
    field: str | None
    message: str
    hint: str | None
    rejected: bool
    #: the channel this contact lost to the problem (it is still reached on the others)
    lost: str | None = None

    @property
    def where(self) -> str:
        where = self.file
        if self.row:
            where += f", row {self.row}"
        if self.field:
            where += f", field '{self.field}'"
        return where

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.hint:
            text += f"\n  Hint: {self.hint}"
        return text


@dataclass
class ContactBook:
    """Every contact read from a set of files, and every problem found on the way.

    The contacts themselves stay on disk (see _Staging) and are streamed in reading order by iterating
    the book, so planning a million contacts takes no more memory than planning ten thousand.
    """

    problems: list[Problem]
    read: int
    merged: int
    valid: int
    staging: _Staging

    def __iter__(self) -> Iterator[Contact]:
        return self.staging.contacts()

    def __len__(self) -> int:
        return self.valid

    def groups(self) -> Iterator[tuple[str, frozenset[str], bool, int]]:
        """(language tag, channels, has a name, contacts): the whole book added up, without reading it contact by contact."""
        return self.staging.groups()

    def addresses(self) -> Iterator[tuple[str, str, str | None, str | None, str, frozenset[str]]]:
        """(key, name, email, phone, language tag, channels) per contact, in reading order."""
        return self.staging.addresses()

    def timezones(self, keys: Sequence[str]) -> dict[str, str]:
        """Contact key (Message.contact_key) → the time zone its timezone column gave, for those that gave one."""
        return self.staging.timezones(keys) if self.staging.has_timezones() else {}

    @property
    def contacts(self) -> list[Contact]:
        """Every contact as a list: for small books and tests; the pipeline iterates instead."""
        return list(self)

    @property
    def rejected(self) -> int:
        return sum(1 for problem in self.problems if problem.rejected)

    @property
    def lost_channel(self) -> int:
        """Contacts reached on fewer channels than they would be: a bad phone number means email only."""
        return sum(1 for problem in self.problems if problem.lost)


def read_contacts(
    paths: Sequence[str | Path], *, default_region: str | None = None, allow_number_types: Iterable[str] = ()
) -> ContactBook:
    """Read, normalize and de-duplicate contacts from CSV files, in order; the first row of a contact wins.

    A phone number of a type that cannot take an SMS or costs extra (NUMBER_TYPES) is not used for SMS, with a
    warning, unless its type is in ``allow_number_types``.

    Raises ContactsError only for a file that cannot be read at all (everything wrong inside a readable
    file is a Problem in the returned book), and ConfigError for a default_region that is not a region.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    region = _region(default_region)
    refused = NUMBER_TYPES.keys() - set(parse_number_types(allow_number_types))
    try:
        reader = _BookReader(region, refused_types=frozenset(refused))
        # Far above MAX_FIELD_LENGTH on purpose: a runaway quote must become a row problem, not a csv.Error for the file.
        csv.field_size_limit(_CSV_FIELD_SIZE_LIMIT)
        for path in paths:
            reader.read_file(path)
        return reader.finish()
    except (sqlite3.Error, OSError) as exc:
        # the CSV files were readable (read_file reports those); writing the staging file is what failed
        raise ContactsError(
            f"cannot stage the contacts on disk in {tempfile.gettempdir()}: {exc}",
            hint="free some space there, or set TMPDIR to a folder with room (about 200 bytes per contact)",
        ) from None


#: phone number types that get no SMS unless --allow-number-types names them: they cannot take one, or cost the sender
NUMBER_TYPES = {
    "fixed_line": "a fixed-line number, which cannot take an SMS",
    "premium_rate": "a premium-rate number, which costs extra to send to",
    "shared_cost": "a shared-cost number, which costs extra to send to and rarely takes an SMS",
    "pager": "a pager number, which cannot take an SMS",
    "satellite": "a satellite phone number, which costs far more per SMS",
}
_PHONENUMBERS_TYPES = {
    phonenumbers.PhoneNumberType.FIXED_LINE: "fixed_line",
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium_rate",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared_cost",
    phonenumbers.PhoneNumberType.PAGER: "pager",
}
# Inmarsat (+870) and the global mobile satellite systems (+881: Iridium, Globalstar); Thuraya is +882 16
_SATELLITE_CODES = frozenset({870, 881})


def parse_number_types(names: Iterable[str]) -> list[str]:
    """--allow-number-types: comma-separated names from NUMBER_TYPES; ConfigError for any other name."""
    found = [part.strip().lower().replace("-", "_") for name in names for part in name.split(",") if part.strip()]
    unknown = [name for name in found if name not in NUMBER_TYPES]
    if unknown:
        raise ConfigError(
            f"--allow-number-types: {', '.join(map(repr, unknown))} is not a phone number type",
            hint=f"use one or more of {','.join(NUMBER_TYPES)}, comma-separated",
        )
    return found


@dataclass(frozen=True)
class Suppressions:
    """Addresses never to contact, read from suppression files, and what was wrong in them that lost no address."""

    #: (channel, address as the channel's address_key gives it, "file:row")
    entries: list[tuple[str, str, str]]
    problems: list[Problem]


#: suppression problems listed in the error that stops a run; the rest are counted
MAX_LISTED = 20


def read_suppressions(paths: Sequence[str | Path], *, default_region: str | None = None) -> Suppressions:
    """Read suppression files exactly like contact files (same columns, same --region), without merging rows.

    Suppressions fail closed: a file that is missing, or any row whose email or phone cannot be read, raises
    ContactsError (nothing may be sent while someone who opted out could be contacted). Problems that lose no
    address (an unknown column, a bad language tag) are returned to be shown.
    """
    region = _region(default_region)
    reader = _SuppressionReader(region)
    csv.field_size_limit(_CSV_FIELD_SIZE_LIMIT)
    for path in paths:
        try:
            reader.read_file(path)
        except ContactsError as exc:
            raise ContactsError(
                f"{exc.message} (a suppressions file); without it, people who opted out could be contacted, "
                "so nothing was sent",
                file=exc.file, row=exc.row, field=exc.field, hint=exc.hint,
            ) from None
    lost = [problem for problem in reader.problems if problem.rejected or problem.field in ("email", "phone")]
    if lost:
        listed = "\n".join(_listed(problem) for problem in lost[:MAX_LISTED])
        if len(lost) > MAX_LISTED:
            listed += f"\n  … and {len(lost) - MAX_LISTED} more"
        files = sorted({problem.file for problem in lost})
        raise ContactsError(
            f"{len(lost)} address(es) in the suppressions file(s) could not be read, so these people could be "
            f"contacted although they opted out; nothing was sent:\n{listed}",
            file=files[0] if len(files) == 1 else None,
            hint="correct each listed row (a phone number needs its country code, or give --region), "
            "then run again; a suppressions file must be read completely before anything is sent",
        )
    entries = [(channel, address, source) for (channel, address), source in reader.entries.items()]
    return Suppressions(entries, reader.problems)


@dataclass(frozen=True)
class RejectionLimit:
    """--max-rejected: how many contact rows a run may lose to problems before it refuses, as a count or a percentage."""

    text: str
    count: int | None = None
    percent: float | None = None

    def allows(self, rejected: int, read: int) -> bool:
        if self.count is not None:
            return rejected <= self.count
        return read == 0 or rejected * 100 <= self.percent * read


#: what --max-rejected is unless given: a run that lost more than one row in ten refuses
DEFAULT_MAX_REJECTED = "10%"
_LIMIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*")


def parse_max_rejected(text: str) -> RejectionLimit:
    """'10%' (a share of the rows read) or '25' (rows); '100%' accepts any number. ConfigError otherwise."""
    match = _LIMIT.fullmatch(text or "")
    value = float(match[1]) if match else -1.0
    if match is None or (match[2] and value > 100) or (not match[2] and not value.is_integer()):
        raise ConfigError(
            f"--max-rejected {text!r} is not a number of rows or a percentage",
            hint="write a share of the rows read, e.g. 10% (the default) or 100% to accept any number, "
            "or a number of rows, e.g. 25",
        )
    text = text.strip()
    return RejectionLimit(text, percent=value) if match[2] else RejectionLimit(text, count=int(value))


def refuse_rejected(book: ContactBook, limit: RejectionLimit) -> None:
    """Raise ContactsError, listing the rejected rows, when more were rejected than ``limit`` allows.

    One rule for a live send, a dry-run and a preview, so what a preview shows is what a send does.
    """
    if limit.allows(book.rejected, book.read):
        return
    rejected = [problem for problem in book.problems if problem.rejected]
    listed = "\n".join(_listed(problem) for problem in rejected[:MAX_LISTED])
    if len(rejected) > MAX_LISTED:
        listed += f"\n  … and {len(rejected) - MAX_LISTED} more"
    share = 100 * book.rejected / book.read
    raise ContactsError(
        f"{book.rejected} of {book.read} contact rows ({share:.0f}%) were rejected, more than --max-rejected "
        f"{limit.text} allows: {book.rejected} people would not be reached, so nothing was sent:\n{listed}",
        hint="correct the listed rows and run again (preview shows every problem); to send to the others anyway, "
        "raise the limit, e.g. --max-rejected 100% accepts any number",
    )


def _listed(problem: Problem) -> str:
    """One problem as a line of a list in an error, its hint indented below it."""
    return "  - " + str(problem).replace("\n  Hint:", "\n      Hint:")


def _region(default_region: str | None) -> str | None:
    if default_region is None or not default_region.strip():
        return None
    region = default_region.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"'{default_region}' is not a region phone numbers can be read for",
            hint="use a two-letter ISO country code such as SI, KE, GB (not UK) or US",
        )
    return region


@dataclass(slots=True)
class _Draft:
    """A contact while rows may still merge into it."""

    name: str
    email: str | None
    phone: str | None
    language: str
    wanted: frozenset[str] | None  # None: every channel it has an address for
    tags: tuple[str, ...]
    file: str
    row: int
    #: the contact's IANA time zone, for quiet hours ("" when the row gave none)
    timezone: str = ""


class _Staging:
    """Contact drafts in a private SQLite file: memory stays flat however long the list is.

    The file lives in a mode-0700 temporary folder and is removed when the book is garbage collected
    or the process exits, since it holds personal data.
    """

    def __init__(self) -> None:
        _sweep_stale(Path(tempfile.gettempdir()))
        # the process id in the name lets a later run remove this folder if this process is killed
        self.directory = tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-")
        self.path = str(Path(self.directory) / "contacts.db")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, True)
        self.conn = self.connect()
        # nothing here needs to survive a crash: the CSV files are the source, so no journal and no fsync
        self.conn.executescript(
            """
            PRAGMA journal_mode=OFF;
            PRAGMA synchronous=OFF;
            CREATE TABLE drafts (pos INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT, language TEXT,
                                 wanted TEXT, tags TEXT, file TEXT, row INTEGER, rejected INTEGER DEFAULT 0,
                                 timezone TEXT NOT NULL DEFAULT '');
            CREATE TABLE keys (key TEXT PRIMARY KEY, pos INTEGER NOT NULL) WITHOUT ROWID;
            """
        )
        self.size = 0

    def connect(self) -> sqlite3.Connection:
        # one connection per reader: each channel streams the contacts from its own thread
        return sqlite3.connect(self.path, check_same_thread=False)

    def lookup(self, keys: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        keys = list(keys)
        for i in range(0, len(keys), 900):
            part = keys[i : i + 900]
            marks = ",".join("?" * len(part))
            out.update(self.conn.execute(f"SELECT key, pos FROM keys WHERE key IN ({marks})", part))
        return out

    def load(self, pos: int) -> _Draft:
        row = self.conn.execute(
            "SELECT name, email, phone, language, wanted, tags, file, row, timezone FROM drafts WHERE pos = ?", (pos,)
        ).fetchone()
        return _Draft(*row[:4], _wanted_from(row[4]), _tags_from(row[5]), row[6], row[7], row[8])

    def write(self, new: list[_Draft], keys: dict[str, int], changed: dict[int, _Draft]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT INTO drafts (pos, name, email, phone, language, wanted, tags, file, row, timezone) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                ((self.size + i, *_draft_row(d)) for i, d in enumerate(new)),
            )
            self.conn.executemany("INSERT INTO keys (key, pos) VALUES (?, ?)", keys.items())
            self.conn.executemany(
                "UPDATE drafts SET name=?, email=?, phone=?, language=?, wanted=?, tags=?, file=?, row=?, timezone=? "
                "WHERE pos=?",
                ((*_draft_row(d), pos) for pos, d in changed.items()),
            )
        self.size += len(new)

    def reject_unreachable(self) -> list[_Draft]:
        """Mark drafts that ask only for channels they have no address for; return them for the report."""
        # wanted is NULL (every channel it has an address for) or a comma list of personal channels; each channel
        # is reached at the address column its adapter names (channels.base.Channel.address)
        reachable = " OR ".join(
            f"({adapter.address} IS NOT NULL AND ',' || wanted || ',' LIKE '%,{name},%')"
            for name, adapter in _personal()
        )
        where = f"wanted IS NOT NULL AND NOT ({reachable or '0'})"
        with self.conn:
            rows = self.conn.execute(
                f"SELECT name, email, phone, language, wanted, tags, file, row FROM drafts WHERE {where}"
            ).fetchall()
            self.conn.execute(f"UPDATE drafts SET rejected = 1 WHERE {where}")
        return [_Draft(*r[:4], _wanted_from(r[4]), _tags_from(r[5]), r[6], r[7]) for r in rows]

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM drafts WHERE rejected = 0").fetchone()[0]

    def groups(self) -> Iterator[tuple[str, frozenset[str], bool, int]]:
        """(language tag, channels, has a name, how many contacts): what counting a plan needs, added up on disk."""
        rows = self.conn.execute(
            "SELECT language, wanted, email IS NOT NULL, phone IS NOT NULL, name != '', count(*) FROM drafts "
            "WHERE rejected = 0 GROUP BY 1, 2, 3, 4, 5"
        )
        personal = _personal()
        for language, wanted, has_email, has_phone, named, n in rows:
            yield language, _reachable(personal, wanted, bool(has_email), bool(has_phone)), bool(named), n

    def contacts(self) -> Iterator[Contact]:
        """Every usable contact in reading order, read in pages from disk."""
        personal = _personal()
        for name, email, phone, language, wanted, tags, file, row in self._select(
            "name, email, phone, language, wanted, tags, file, row"
        ):
            yield Contact(
                key=f"email:{email.lower()}" if email else f"phone:{phone}",
                name=name,
                email=email,
                phone=phone,
                language=language,
                channels=_reachable(personal, wanted, email is not None, phone is not None),
                tags=_tags_from(tags),
                source=f"{file}:{row}",
            )

    def addresses(self) -> Iterator[tuple[str, str, str | None, str | None, str, frozenset[str]]]:
        """(key, name, email, phone, language tag, channels) per usable contact in reading order: what a
        message needs, without building a Contact for each (the send loop reads every contact once more)."""
        personal = _personal()  # once per pass: the registry does not change under a running send
        # a few channel sets per pass, looked up here by a short key (_reachable's key holds the whole registry)
        sets: dict[tuple[str | None, bool, bool], frozenset[str]] = {}
        for name, email, phone, language, wanted in self._select("name, email, phone, language, wanted"):
            key = f"email:{email.lower()}" if email else f"phone:{phone}"
            shape = (wanted, email is not None, phone is not None)
            reachable = sets.get(shape)
            if reachable is None:
                reachable = sets[shape] = _reachable(personal, *shape)
            yield key, name, email, phone, language, reachable

    def has_timezones(self) -> bool:
        return self.conn.execute("SELECT 1 FROM drafts WHERE rejected = 0 AND timezone != '' LIMIT 1").fetchone() is not None

    def timezones(self, keys: Sequence[str]) -> dict[str, str]:
        """Contact key → the timezone its row gave, for the keys that have one; its own connection, so each
        channel's sender thread may ask."""
        conn = self.connect()
        found: dict[str, str] = {}
        try:
            for i in range(0, len(keys), 900):
                part = list(keys[i : i + 900])
                found.update(conn.execute(
                    "SELECT keys.key, drafts.timezone FROM keys JOIN drafts ON drafts.pos = keys.pos "
                    f"WHERE keys.key IN ({','.join('?' * len(part))}) AND drafts.timezone != ''", part,
                ))
        finally:
            conn.close()
        return found

    def _select(self, columns: str) -> Iterator[tuple]:
        conn = self.connect()
        try:
            cursor = conn.execute(f"SELECT {columns} FROM drafts WHERE rejected = 0 ORDER BY pos")
            while page := cursor.fetchmany(1000):
                yield from page
        finally:
            conn.close()


_STAGING_PREFIX = "broadcast-contacts-"


def _sweep_stale(root: Path) -> None:
    """Remove staging folders of runs that were killed (SIGKILL skips the clean-up): they hold personal data."""
    for folder in root.glob(f"{_STAGING_PREFIX}*-*"):
        try:
            pid = int(folder.name.removeprefix(_STAGING_PREFIX).split("-", 1)[0])
            mine = folder.stat().st_uid == os.getuid()
        except (ValueError, OSError):
            continue
        if mine and not alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _personal() -> tuple[tuple[str, Any], ...]:
    """The registry's personal channels (name, adapter): the ones a contact row is reached on, each at its address.

    A tuple, so the caches below are keyed on it too: a channel added to the registry is never answered from a
    cache filled before it was there.
    """
    return tuple((name, adapter) for name, adapter in REGISTRY.items() if adapter.personal)


# Only a few channel sets exist; sharing them saves a frozenset per contact when there are a million.
@functools.lru_cache(maxsize=256)
def _reachable(
    personal: tuple[tuple[str, Any], ...], wanted: str | None, has_email: bool, has_phone: bool
) -> frozenset[str]:
    """The channels a staged contact is reached on: those it asked for (all when it did not say) it has an address for."""
    has = {"email": has_email, "phone": has_phone}
    asked = None if wanted is None else set(wanted.split(","))
    # a contact that names no channel gets every channel it has an address for, except those it must ask for
    return frozenset(
        name for name, adapter in personal
        if has.get(adapter.address) and (name in asked if asked is not None else not adapter.opt_in)
    )


def _draft_row(draft: _Draft) -> tuple:
    wanted = ",".join(sorted(draft.wanted)) if draft.wanted is not None else None
    return (draft.name, draft.email, draft.phone, draft.language, wanted, "\x1f".join(draft.tags), draft.file, draft.row,
            draft.timezone)


def _wanted_from(value: str | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value.split(","))


def _tags_from(value: str) -> tuple[str, ...]:
    return tuple(value.split("\x1f")) if value else ()


#: rows read before their duplicates are looked up on disk in one query
_STAGE_EVERY = 2000
#: files from this size on have their phone numbers checked in a second process (_phones_ahead): below it, starting
#: one costs more than it saves
_PHONES_AHEAD_BYTES = 1 << 20
#: rows whose phone numbers go to that process at once
_PHONES_AHEAD_ROWS = 5000


class _BookReader:
    def __init__(self, region: str | None, *, staged: bool = True, refused_types: frozenset[str] = frozenset()) -> None:
        self.region = region
        self.refused_types = refused_types
        #: the personal channels a row may ask for, read from the registry once per file set
        self.personal = _personal()
        # a suppression list never merges, so it needs no staging file
        self.staging = _Staging() if staged else None
        # Rows wait here and are merged in groups, so finding duplicates on disk costs one query per group.
        self.queue: list[_Draft] = []
        #: raw phone cell → _normalize_phone's answer, for the rows being read (see _phones_ahead)
        self.phones: dict[str, tuple[str | None, tuple[str, str] | None, str | None]] = {}
        self.ahead = False
        self.channel_cells: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {}
        # While a group merges: normalized address ("email:..." / "phone:...") -> position of its contact,
        # the group's new drafts, the new addresses, and earlier drafts that rows of this group changed.
        self.index: dict[str, int] = {}
        self.new: list[_Draft] = []
        self.new_keys: dict[str, int] = {}
        self.changed: dict[int, _Draft] = {}
        self.problems: list[Problem] = []
        self.file_order: dict[str, int] = {}
        self.read = 0
        self.merged = 0

    def problem(self, file: str, row: int, field: str | None, message: str, hint: str | None = None,
                *, rejected: bool = False, lost: str | None = None) -> None:
        self.problems.append(Problem(file, row, field, message, hint, rejected, lost))

    # -- files -------------------------------------------------------------------------------------

    def read_file(self, path: str | Path) -> None:
        shown = str(path)
        self.file_order.setdefault(shown, len(self.file_order))
        file = Path(path)
        try:
            if file.is_dir():
                raise ContactsError(
                    "is a folder, not a contacts file", file=shown,
                    hint=f"name the CSV files inside it, e.g. {file / '*.csv'}",
                )
            encoding, first_bad_line = _detect_encoding(file, shown)
            if first_bad_line:
                self.problem(
                    shown, 0, None,
                    f"is not UTF-8 (first at line {first_bad_line}), so it was read as Windows-1252; "
                    "check that accented names look right",
                    _SAVE_AS_UTF8,
                )
            # errors="replace": the five bytes Windows-1252 leaves undefined must not stop the file.
            # a large file's phone numbers are checked ahead in a second process (most of the reading time)
            self.ahead = file.stat().st_size >= _PHONES_AHEAD_BYTES and (os.cpu_count() or 1) > 1
            with file.open(encoding=encoding, errors="replace", newline="") as text:
                self._read_rows(text, shown)
        except FileNotFoundError as exc:
            raise ContactsError(
                "file not found", file=shown, hint=f"check the path; it is read relative to {Path.cwd()}"
            ) from exc
        except PermissionError as exc:
            raise ContactsError(
                "cannot be read: permission denied", file=shown,
                hint="ask the file's owner for read access, or copy it to a folder you can read",
            ) from exc
        except OSError as exc:
            raise ContactsError(f"cannot be read: {exc.strerror or exc}", file=shown,
                                hint="check that the file is a CSV file you can open") from exc

    def _read_rows(self, text: Iterable[str], file: str) -> None:
        lines = iter(text)
        row = 0
        for line in lines:
            row += 1
            if line.strip(" \t\r\n,;"):
                break
        else:
            self.problem(file, 0, None, "is empty: no header and no contacts",
                         f"the first row must be a header such as: {EXPECTED_HEADER}")
            return

        delimiter = _detect_delimiter(line)
        header_row = row
        rows_before = self.read
        try:
            columns = self._columns(next(csv.reader([line], delimiter=delimiter)), file, row)
            records = _Records(lines, delimiter, columns.width, header_row + 1)
            reader = csv.reader(records, delimiter=delimiter)
            numbered: Iterator[tuple[int, list[str]]] = enumerate(reader, start=header_row + 1)
            if self.ahead and columns.phone is not None:
                numbered = self._phones_ahead(numbered, columns.phone)
            for row, record in numbered:
                if row in records.broken:
                    self.read += 1
                    self.problem(file, row, None,
                                 f"has a double quote (\") that is never closed, so the row was skipped: "
                                 f"{_show(records.broken.pop(row))}",
                                 _STRAY_QUOTE_HINT, rejected=True)
                elif any(value.strip() for value in record):
                    self.read += 1
                    self._read_row(record, columns, file, row, delimiter)
        except csv.Error as exc:  # not expected with the settings above; kept so a parser surprise names its row
            raise ContactsError(f"cannot be parsed after row {row}: {exc}", file=file,
                                hint=f"open it in a spreadsheet and save it again as CSV; {_SAVE_AS_UTF8}") from exc
        if self.read == rows_before:
            self.problem(file, 0, None, "has a header but no contact rows",
                         "add contacts below the header, or leave this file out")

    def _columns(self, header: list[str], file: str, row: int) -> _Columns:
        found: dict[str, int] = {}
        ignored: list[str] = []
        for position, cell in enumerate(header):
            name = _header_name(cell)
            if not name:
                continue  # empty header cells come from trailing delimiters, not from a real column
            if name in COLUMNS and name not in found:
                found[name] = position
            else:
                ignored.append(f"'{cell.strip()}' (again)" if name in found else f"'{cell.strip()}'")
        if "email" not in found and "phone" not in found:
            shown = ", ".join(_show(cell.strip(), 30) for cell in header[:12] if cell.strip()) or "none"
            if len(header) > 12:
                shown += f" and {len(header) - 12} more"
            looks_like_data = any("@" in cell or sum(c.isdigit() for c in cell) >= 7 for cell in header)
            hint = f"the first row must be a header such as: {EXPECTED_HEADER} (only email or phone is required)"
            if looks_like_data:
                hint = f"the first row looks like a contact, not a header; add a header row above it: {EXPECTED_HEADER}"
            raise ContactsError(f"has no 'email' or 'phone' column; found columns: {shown}",
                                file=file, row=row, hint=hint)
        if ignored:
            self.problem(file, row, None, f"ignoring column(s) {', '.join(ignored)}: not one of {', '.join(COLUMNS)}",
                         "rename the column if it holds contact data; otherwise nothing needs doing")
        return _Columns(**{column: found.get(column) for column in COLUMNS}, width=len(header))

    # -- rows --------------------------------------------------------------------------------------

    def _read_row(self, record: list[str], columns: _Columns, file: str, row: int, delimiter: str) -> None:
        # Short rows are normal (spreadsheets drop trailing empty cells), so pad instead of checking every index.
        size = len(record)
        if size < columns.width:
            record = record + [""] * (columns.width - size)
        raw_email = record[columns.email].strip() if columns.email is not None else ""
        raw_phone = record[columns.phone].strip() if columns.phone is not None else ""
        email, email_error, display_name = self._email(raw_email) if raw_email else (None, None, "")
        phone, phone_error, number = self._phone(raw_phone) if raw_phone else (None, None, None)
        if number is not None and self.refused_types and _wants(record, columns, "sms"):
            # a landline or a premium-rate number is a real number, but an SMS to it is lost or costs extra
            if refusal := _sms_refusal(raw_phone, number, self.refused_types, self.region):
                phone, phone_error = None, refusal

        if email is None and phone is None:
            # Extra values usually mean an unquoted delimiter inside a name, which shifts every later column.
            if size > columns.width:
                row_hint: str | None = _shift_hint(delimiter)
            elif any("\n" in value for value in record):
                row_hint = _QUOTE_HINT
            else:
                row_hint = None
            self._reject(file, row, raw_email, email_error, raw_phone, phone_error, row_hint)
            return
        if email_error or phone_error:
            # say what the person loses, not only what is wrong: "gets email only: '0712 345 001' has no country code"
            lost, kept = ("email", "sms") if email_error else ("sms", "email")
            message, hint = email_error or phone_error
            consequence, lost_channel = _consequence(record, columns, lost, kept)
            self.problem(file, row, "email" if email_error else "phone", consequence + message, hint, lost=lost_channel)
        if size > columns.width and any(value.strip() for value in record[columns.width:]):
            self.problem(file, row, None,
                         f"has {size} values but the header has {columns.width} columns; the extra values were ignored",
                         _shift_hint(delimiter))

        name = self._cell(record, columns.name, file, row, "name") or display_name
        if "\n" in name or "\r" in name:
            self.problem(file, row, "name", f"{_show(name)} contains a line break; it was joined into one line",
                         _QUOTE_HINT)
            name = " ".join(name.split())
        language = self._language(self._cell(record, columns.language, file, row, "language"), file, row)
        wanted = self._channels(self._cell(record, columns.channels, file, row, "channels"), file, row)
        tags = _parse_tags(self._cell(record, columns.tags, file, row, "tags"))
        zone = self._timezone(self._cell(record, columns.timezone, file, row, "timezone"), file, row)
        self._take(_Draft(name, email, phone, language, wanted, tags, file, row, zone))

    def _take(self, draft: _Draft) -> None:
        self.queue.append(draft)
        if len(self.queue) >= _STAGE_EVERY:
            self._merge_queue()

    def _reject(self, file: str, row: int, raw_email: str, email_error: tuple[str, str] | None,
                raw_phone: str, phone_error: tuple[str, str] | None, row_hint: str | None) -> None:
        if not raw_email and not raw_phone:
            self.problem(file, row, None, "has no email address and no phone number",
                         row_hint or "fill in an email address or a phone number, or delete the row", rejected=True)
            return
        reasons = [
            f"email {email_error[0]}" if email_error else "no email address",
            f"phone {phone_error[0]}" if phone_error else "no phone number",
        ]
        hints = [error[1] for error in (email_error, phone_error) if error]
        field = None if raw_email and raw_phone else ("email" if raw_email else "phone")
        self.problem(file, row, field, "no usable address: " + "; ".join(reasons), row_hint or "; ".join(hints),
                     rejected=True)

    def _cell(self, record: list[str], position: int | None, file: str, row: int, field: str) -> str:
        if position is None:
            return ""
        value = record[position].strip()
        if len(value) <= MAX_FIELD_LENGTH:
            return value
        self.problem(file, row, field, *_too_long(value))
        return ""

    def _email(self, raw: str) -> tuple[str | None, tuple[str, str] | None, str]:
        if len(raw) > MAX_FIELD_LENGTH:
            return None, _too_long(raw), ""
        plain = _plain_email(raw)
        if plain:
            return plain, None, ""
        try:
            # Offline on purpose: a DNS lookup per contact would take hours for a large list and fails without network.
            checked = validate_email(raw, check_deliverability=False, **_DISPLAY_NAME_OPTION)
        except EmailNotValidError as exc:
            hint = _QUOTE_HINT if "\n" in raw else "check for typos, spaces, or two addresses in one cell"
            return None, (f"{_show(raw)} is not a valid email address: {str(exc).rstrip('.')}", hint), ""
        return checked.normalized, None, getattr(checked, "display_name", None) or ""

    def _phone(self, raw: str) -> tuple[str | None, tuple[str, str] | None, str | None]:
        if len(raw) > MAX_FIELD_LENGTH:
            return None, _too_long(raw), None
        checked = self.phones.get(raw)
        return checked if checked is not None else _normalize_phone(raw, self.region)

    def _phones_ahead(self, rows: Iterator[tuple[int, list[str]]], column: int) -> Iterator[tuple[int, list[str]]]:
        """``rows`` unchanged, with each group's phone numbers checked by _normalize_phone in a second process while
        this one reads the group before: the same function, so the same answers. A process that cannot be started
        or fails leaves the numbers to be checked here, one by one, as without it."""
        import itertools
        from concurrent.futures import ProcessPoolExecutor

        try:
            pool = ProcessPoolExecutor(1)
        except (OSError, ValueError, NotImplementedError):
            yield from rows
            return
        pending: deque[tuple[list[tuple[int, list[str]]], Any]] = deque()

        def read_ahead() -> None:
            group = list(itertools.islice(rows, _PHONES_AHEAD_ROWS))
            if group:
                raws = {cell for _, record in group if len(record) > column
                        for cell in (record[column].strip(),) if cell and len(cell) <= MAX_FIELD_LENGTH}
                pending.append((group, pool.submit(_normalize_phones, sorted(raws), self.region)))

        try:
            read_ahead()
            while pending:
                group, checked = pending.popleft()
                read_ahead()  # the next group is checked while this one is read
                try:
                    self.phones = checked.result()
                except Exception:  # noqa: BLE001 - a worker that died (BrokenProcessPool, memory): check them here
                    self.phones = {}
                yield from group
        finally:
            self.phones = {}
            pool.shutdown(wait=False, cancel_futures=True)

    def _language(self, raw: str, file: str, row: int) -> str:
        if not raw:
            return ""
        tag = _language_tag(raw)
        if tag is None or len(tag) > _MAX_LANGUAGE_TAG:
            too_long = f" (a tag is at most {_MAX_LANGUAGE_TAG} characters)" if tag else ""
            self.problem(file, row, "language",
                         f"{_show(raw)} is not a language tag{too_long}, so it was ignored: this contact gets the "
                         "notice's default language",
                         "use a code such as en, sl, sl-SI, sw or sw-KE")
            return ""
        return tag

    def _timezone(self, raw: str, file: str, row: int) -> str:
        if not raw:
            return ""
        from broadcast.quiet import zone_problem

        problem = zone_problem(raw)
        if problem is None:
            return raw
        # plan.prepare refuses an info or advisory send while any row has one: the contact could be texted at night
        self.problem(file, row, "timezone",
                     f"{_show(raw)} is not a time zone, so this contact's quiet hours cannot be known",
                     "use an IANA zone name such as Africa/Nairobi, Europe/Ljubljana or America/Los_Angeles, or "
                     "leave it empty to use the phone number's country")
        return ""

    def _channels(self, raw: str, file: str, row: int) -> frozenset[str] | None:
        if not raw:
            return None
        # a column holds a few distinct cells: each is worked out once per reader (a cache keyed on the registry
        # hashes the whole registry every row)
        found = self.channel_cells.get(raw)
        if found is None:
            found = _channels_named(self.personal, raw)
            if len(self.channel_cells) < 1024:
                self.channel_cells[raw] = found
        wanted, unknown = found
        if unknown:
            kept = " and ".join(sorted(wanted)) if wanted else "every channel it has an address for"
            self.problem(file, row, "channels",
                         f"unknown channel {', '.join(map(_show, unknown))} ignored; this contact gets {kept}",
                         "use email, sms, or email;sms (empty means every channel it has an address for)")
        return wanted or None

    # -- merging -----------------------------------------------------------------------------------

    def _merge_queue(self) -> None:
        """Merge the waiting rows in reading order, with every earlier contact they might join looked up at once."""
        queue, self.queue = self.queue, []
        self.index = self.staging.lookup({key for draft in queue for key in _keys(draft) if key})
        self.new, self.new_keys, self.changed = [], {}, {}
        for draft in queue:
            self._add(draft)
        self.staging.write(self.new, self.new_keys, self.changed)
        self.index, self.new, self.new_keys, self.changed = {}, [], {}, {}

    def _draft(self, position: int) -> _Draft:
        if position >= self.staging.size:
            return self.new[position - self.staging.size]
        if position not in self.changed:
            self.changed[position] = self.staging.load(position)
        return self.changed[position]

    def _index(self, key: str, position: int) -> None:
        self.index[key] = self.new_keys[key] = position

    def _add(self, draft: _Draft) -> None:
        email_key, phone_key = _keys(draft)
        by_email = self.index.get(email_key) if email_key else None
        by_phone = self.index.get(phone_key) if phone_key else None
        if by_email is None and by_phone is None:
            self.new.append(draft)
            for key in (email_key, phone_key):
                if key:
                    self._index(key, self.staging.size + len(self.new) - 1)
            return

        self.merged += 1
        # The email is the recipient key, so a row that matches two different contacts joins the one with its email.
        position = by_email if by_email is not None else by_phone
        first = self._draft(position)
        if email_key and by_email is None:
            if first.email is None:
                first.email = draft.email
                self._index(email_key, position)
            else:
                self._conflict(draft, first, "email", draft.email, first.email)
        if phone_key and by_phone != position:
            if by_phone is not None:
                other = self._draft(by_phone)
                self.problem(
                    draft.file, draft.row, "phone",
                    f"{draft.phone} is already the phone number of another contact ({_row_ref(other, draft.file)}); "
                    "it stays with that contact only",
                    "one phone number can only reach one contact; correct whichever row is wrong",
                )
            elif first.phone is None:
                first.phone = draft.phone
                self._index(phone_key, position)
            else:
                self._conflict(draft, first, "phone", draft.phone, first.phone)
        for field in ("name", "language", "timezone"):
            new, old = getattr(draft, field), getattr(first, field)
            if not new:
                continue
            if not old:
                setattr(first, field, new)
            elif _comparable(new) != _comparable(old):
                self._conflict(draft, first, field, new, old)
        if not set(draft.tags) <= set(first.tags):
            first.tags = tuple(dict.fromkeys(first.tags + draft.tags))
        if first.wanted is not None and draft.wanted is not None:
            first.wanted = first.wanted | draft.wanted
        elif first.wanted is not None or draft.wanted is not None:
            # one row names no channel (every channel that needs no asking), the other names some: a channel that
            # must be asked for (voice) stays asked for, beside every other channel
            asked = {name for name in (first.wanted or draft.wanted or ()) if dict(self.personal)[name].opt_in}
            first.wanted = frozenset(n for n, a in self.personal if not a.opt_in) | asked if asked else None

    def _conflict(self, draft: _Draft, first: _Draft, field: str, new: str, old: str) -> None:
        self.problem(
            draft.file, draft.row, field,
            f"{_show(new)} differs from {_show(old)} in {_row_ref(first, draft.file)}, the same contact; "
            f"kept {_show(old)}",
            "if they are one person, make the rows agree; if they are two people, "
            "they need different email addresses and phone numbers",
        )

    def finish(self) -> ContactBook:
        self._merge_queue()
        for draft in self.staging.reject_unreachable():
            missing = "email address" if "email" in draft.wanted else "phone number"
            self.problem(draft.file, draft.row, "channels",
                         f"asks only for {' and '.join(sorted(draft.wanted))} but has no usable {missing}",
                         f"add the {missing}, or empty the channels cell to use any address it has",
                         rejected=True)
        # Channel rejections are only known after merging; sort so a person reads each file top to bottom.
        self.problems.sort(key=lambda problem: (self.file_order[problem.file], problem.row))
        return ContactBook(problems=self.problems, read=self.read, merged=self.merged, valid=self.staging.count(),
                           staging=self.staging)


class _SuppressionReader(_BookReader):
    """Every address in suppression files, each kept on its own: one person's two addresses are both suppressed."""

    def __init__(self, region: str | None) -> None:
        super().__init__(region, staged=False)
        self.entries: dict[tuple[str, str], str] = {}

    def _take(self, draft: _Draft) -> None:
        source = f"{draft.file}:{draft.row}"
        addresses = {"email": draft.email, "phone": draft.phone}
        for name, adapter in self.personal:
            address = addresses.get(adapter.address)
            if address:
                self.entries.setdefault((name, adapter.address_key(address)), source)


def _wants(record: list[str], columns: _Columns, channel: str) -> bool:
    """Whether a row asks for this channel (an empty channels cell asks for every channel it has an address for)."""
    cell = record[columns.channels].strip() if columns.channels is not None else ""
    wanted = _parse_channels(cell)[0] if cell and len(cell) <= MAX_FIELD_LENGTH else frozenset()
    return not wanted or channel in wanted


def _consequence(record: list[str], columns: _Columns, lost: str, kept: str) -> tuple[str, str | None]:
    """What a contact with one unusable address still gets, by the channels its row asks for: the words that
    start its warning, and the channel it lost (None when it did not ask for that channel, or asked for nothing
    else and is rejected for that)."""
    cell = record[columns.channels].strip() if columns.channels is not None else ""
    wanted = _parse_channels(cell)[0] if cell and len(cell) <= MAX_FIELD_LENGTH else frozenset()
    if wanted and lost not in wanted:
        return "", None
    if wanted and kept not in wanted:
        return "", None  # rejected below: it asks only for the channel it has no address for
    return f"gets {_CHANNEL_NAMES[kept]} only: ", lost


def _keys(draft: _Draft) -> tuple[str | None, str | None]:
    return (f"email:{draft.email.lower()}" if draft.email else None, f"phone:{draft.phone}" if draft.phone else None)


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where each known column is in a file's rows (None: the file has no such column)."""

    name: int | None
    email: int | None
    phone: int | None
    language: int | None
    channels: int | None
    tags: int | None
    timezone: int | None
    width: int


class _Records:
    """A file's lines for csv.reader, one record at a time, with a quote that is never closed cut off at its row.

    csv.reader would read every line after a stray double quote into one field, so one character lost the rest
    of the file. A record that spans lines is kept only when its quote closes within _MAX_RECORD_LINES lines,
    no line inside the quoted value looks like a row of its own, and it has no more values than the header.
    Otherwise its first line becomes a blank line for csv.reader, its row number and text go into ``broken``,
    and reading goes on with the next line.
    """

    def __init__(self, lines: Iterable[str], delimiter: str, width: int, first_row: int) -> None:
        self.lines = iter(lines)
        self.delimiter = delimiter
        self.width = width
        self.row = first_row - 1
        #: row number → the text of a row whose quote is never closed
        self.broken: dict[int, str] = {}
        self.pending: deque[str] = deque()
        self.special = re.compile(f'["{re.escape(delimiter)}]')

    def __iter__(self) -> Iterator[str]:
        while (line := self._next()) is not None:
            self.row += 1
            if '"' not in line or not self._ends_quoted(line, False):
                yield line
                continue
            record = [line]
            quoted = True
            while quoted and len(record) <= _MAX_RECORD_LINES and (more := self._next()) is not None:
                record.append(more)
                quoted = self._ends_quoted(more, True) if '"' in more else True
            if not quoted and self._whole(record):
                yield from record
                continue
            self.broken[self.row] = line.rstrip("\r\n")
            self.pending.extendleft(reversed(record[1:]))
            yield "\n"

    def _next(self) -> str | None:
        return self.pending.popleft() if self.pending else next(self.lines, None)

    def _whole(self, record: list[str]) -> bool:
        """A closed multi-line record that is one row, not a stray quote that swallowed the rows after it."""
        row_width = max(self.width, 2)
        # a line without quotes between the first and the last lies wholly inside the quoted value
        if any('"' not in line and line.count(self.delimiter) + 1 >= row_width for line in record[1:-1]):
            return False
        return len(next(csv.reader(record, delimiter=self.delimiter), [])) <= self.width

    def _ends_quoted(self, line: str, inside: bool) -> bool:
        """Whether csv.reader (excel dialect, not strict) is inside a quoted value at the end of this line."""
        state = _QUOTED if inside else _START
        field_start, closed_at = 0, -1
        for match in self.special.finditer(line):
            at, char = match.start(), match.group()
            if state == _AFTER_QUOTE:
                if at == closed_at + 1:
                    if char == '"':  # "" inside quotes is one quote character
                        state = _QUOTED
                    else:
                        state, field_start = _START, at + 1
                    continue
                state = _FIELD  # characters after a closing quote stay in the value
            if state == _QUOTED:
                if char == '"':
                    state, closed_at = _AFTER_QUOTE, at
            elif char == self.delimiter:
                state, field_start = _START, at + 1
            else:  # a quote opens a value only as its first character; elsewhere it is an ordinary character
                state = _QUOTED if state == _START and at == field_start else _FIELD
        return state == _QUOTED


_START, _FIELD, _QUOTED, _AFTER_QUOTE = range(4)


def _detect_encoding(file: Path, shown: str) -> tuple[str, int]:
    """Return the encoding to read with, and the line of the first non-UTF-8 byte (0 if the file is UTF-8)."""
    with file.open("rb") as data:
        start = data.read(4)
        # Excel's "Unicode Text" is UTF-16 with a byte order mark; the BOM makes it unambiguous.
        if start.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "utf-16", 0
        if start.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
            raise ContactsError("is a spreadsheet workbook (.xlsx/.xls), not a CSV file", file=shown,
                                hint=f"open it and save it as CSV; {_SAVE_AS_UTF8}")
        data.seek(0)
        # Checked in chunks so a million-row file is never held in memory twice.
        decoder = codecs.getincrementaldecoder("utf-8")()
        line = 1
        for chunk in iter(lambda: data.read(1 << 20), b""):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return "cp1252", line + chunk[: max(exc.start - pending, 0)].count(b"\n")
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252", line
    return "utf-8-sig", 0


def _detect_delimiter(header_line: str) -> str:
    """Pick the delimiter that splits the header into the most known column names (Excel writes ';' in many locales)."""
    best, best_score = ",", (-1, -1)
    for delimiter in _DELIMITERS:
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        score = (sum(_header_name(cell) in COLUMNS for cell in cells), len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _header_name(cell: str) -> str:
    # A UTF-8 byte order mark read as Windows-1252 shows up as "ï»¿" in front of the first column.
    name = cell.strip().lstrip("\ufeff").removeprefix("ï»¿").strip(" \"'").lower()
    # Spreadsheets in many locales head the column "E-mail"; it is the same column.
    return _HEADER_PUNCTUATION.sub("", name)


def _normalize_phone(raw: str, region: str | None) -> tuple[str | None, tuple[str, str] | None, str | None]:
    """(E.164, None, its NUMBER_TYPES name or "") for a valid number, else (None, (message, hint), None)."""
    number = raw.lstrip("'")  # a leading apostrophe is how spreadsheets are told "this is text"
    if number.startswith("00"):
        number = "+" + number[2:]
    if _SCIENTIFIC.fullmatch(number):
        return None, (f"{_show(raw)} was turned into a number by a spreadsheet, and digits are lost",
                      "format the phone column as Text and type the numbers again, with the country code"), None
    if _LETTER.search(number) and _DIGIT.search(number):
        # phonenumbers reads letters as keypad digits, so '+386 4I 555 OIO' would be a real, different person's number
        return None, (f"{_show(raw)} contains a letter; a phone number is digits only (is an O meant as 0, an I as 1?)",
                      f"type the number again in digits, with the country code, e.g. {_example_number(region)}"), None
    if not number.startswith("+") and region is None:
        return None, (f"{_show(raw)} has no country code",
                      f"write it with the country code, e.g. {_example_number(region)}, "
                      "or set the default region with --region or BROADCAST_DEFAULT_REGION (e.g. SI)"), None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        what = _PARSE_ERRORS.get(exc.error_type, "is not a phone number")
        return None, (f"{_show(raw)} {what}", f"write it with the country code, e.g. {_example_number(region)}"), None
    # number_type is UNKNOWN exactly when is_valid_number is False (both match the number's region's patterns):
    # one look at the patterns gives the validity and the type _sms_refusal needs, at half the cost
    kind = phonenumbers.number_type(parsed)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        example = _example_number(region)
        if number.startswith("+"):
            country = phonenumbers.region_code_for_country_code(parsed.country_code)
            where = f"+{parsed.country_code}" if country == "ZZ" else f"{country} (+{parsed.country_code})"
            # the number names its country: an example from there helps more than one from --region
            example = example if country == "ZZ" else _example_number(country)
        else:
            where = f"region {region}"
        return None, (f"{_show(raw)} is not a valid phone number for {where}",
                      f"write it with the country code, e.g. {example}"), None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), None, _number_type(parsed, kind)


def _normalize_phones(
    raws: list[str], region: str | None
) -> dict[str, tuple[str | None, tuple[str, str] | None, str | None]]:
    """_normalize_phone for each number: what the second process of _BookReader._phones_ahead runs."""
    return {raw: _normalize_phone(raw, region) for raw in raws}


def _sms_refusal(raw: str, kind: str, refused_types: frozenset[str], region: str | None) -> tuple[str, str] | None:
    """(message, hint) when a number is of a type that gets no SMS (see NUMBER_TYPES), else None."""
    if kind not in refused_types:
        return None
    return (f"{_show(raw)} is {NUMBER_TYPES[kind]}",
            f"give a mobile number, e.g. {_example_number(region)}; if this number does take SMS, "
            f"add --allow-number-types {kind}")


def _number_type(number: phonenumbers.PhoneNumber, kind: int) -> str:
    """The NUMBER_TYPES name of a valid number of phonenumbers type ``kind``, or "" for a number that can take an SMS."""
    code, national = number.country_code, str(number.national_number)
    if code in _SATELLITE_CODES or (code == 882 and national.startswith("16")):
        return "satellite"
    return _PHONENUMBERS_TYPES.get(kind, "")


def _plain_email(raw: str) -> str | None:
    """The normalized form of a plain ASCII address, exactly as email_validator gives it; None to ask email_validator.

    Checking the domain is most of email_validator's cost and a list has few distinct domains, so the domain is
    checked once through email_validator and the plain local part (which it returns unchanged) is matched here.
    """
    match = _PLAIN_ADDRESS.fullmatch(raw)
    if match is None or len(raw) > _MAX_PLAIN_ADDRESS or match[1].lower() in _CASE_INSENSITIVE_MAILBOXES:
        return None
    domain = _plain_domain(match[2])
    return f"{match[1]}@{domain}" if domain else None


@functools.lru_cache(maxsize=65536)
def _plain_domain(domain: str) -> str | None:
    try:
        checked = validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None  # email_validator checks the whole address again and words the problem
    # An internationalized domain changes length and form when normalized; leave those to email_validator.
    return checked.domain if checked.domain == checked.ascii_domain == domain.lower() else None


@functools.cache
def _example_number(region: str | None) -> str:
    # a mobile number where there is one: the example is read by someone fixing a number to send an SMS to
    example = (phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
               or phonenumbers.example_number(region)) if region else None
    if example is None:
        return _NO_REGION_EXAMPLE
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# Rows repeat the same few tag cells; sharing one tuple per distinct cell keeps a million contacts small.
@functools.lru_cache(maxsize=4096)
def _parse_tags(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tag for tag in (part.strip() for part in raw.split(";")) if tag)) if raw else ()


def _parse_channels(raw: str) -> tuple[frozenset[str], tuple[str, ...]]:
    """Return the channels a cell names and the words that are not channels."""
    return _channels_named(_personal(), raw)


@functools.lru_cache(maxsize=1024)
def _channels_named(personal: tuple[tuple[str, Any], ...], raw: str) -> tuple[frozenset[str], tuple[str, ...]]:
    wanted: set[str] = set()
    unknown: list[str] = []
    spellings = {spelling: name for name, adapter in personal for spelling in (name, *adapter.aliases)}
    # "," as well as ";": a quoted "email, sms" is an obvious way to write the same thing.
    for part in re.split(r"[;,]", raw):
        word = part.strip().lower()
        if word in spellings:
            wanted.add(spellings[word])
        elif word:
            unknown.append(part.strip())
    return frozenset(wanted), tuple(unknown)


# A column holds a handful of distinct language tags, so each is worked out once.
@functools.lru_cache(maxsize=1024)
def _language_tag(raw: str) -> str | None:
    """BCP 47 casing ("sl-si" -> "sl-SI", "SW" -> "sw"); None if it is not shaped like a tag at all."""
    tag = raw.replace("_", "-")
    if not _LANGUAGE_TAG.fullmatch(tag):
        return None
    first, *rest = tag.split("-")
    parts = [first.lower()]
    private = False
    for part in rest:
        # After a singleton (x-, u-, ...) subtags are extensions, which are always lowercase.
        private = private or len(part) == 1
        if not private and len(part) == 2 and part.isalpha():
            parts.append(part.upper())
        elif not private and len(part) == 4 and part.isalpha():
            parts.append(part.title())
        else:
            parts.append(part.lower())
    return "-".join(parts)


def _shift_hint(delimiter: str) -> str:
    return (f"a value that contains a {_DELIMITER_NAMES[delimiter]} must be in double quotes, "
            f'e.g. "Novak{delimiter} Ana"')


def _too_long(value: str) -> tuple[str, str]:
    """Message and hint for a field over MAX_FIELD_LENGTH, which is ignored rather than stopping the file."""
    return (f"is {len(value):,} characters long (the limit is {MAX_FIELD_LENGTH:,}), so it was ignored: {_show(value)}",
            _QUOTE_HINT if "\n" in value else "check that the right thing was pasted into this cell")


def _row_ref(draft: _Draft, current_file: str) -> str:
    return f"row {draft.row}" if draft.file == current_file else f"{draft.file} row {draft.row}"


def _comparable(value: str) -> str:
    return " ".join(value.split()).casefold()


def _show(value: str, limit: int = 60) -> str:
    """Quote a value for a message, shortened so one runaway field cannot flood the report."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")
