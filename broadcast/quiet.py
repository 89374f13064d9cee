"""Quiet hours: which messages of an info or advisory notice wait for the recipient's morning, and until when."""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broadcast.message import Decision

#: the severities quiet hours apply to; urgent and emergency notices go out at any hour
QUIET_SEVERITIES = ("info", "advisory")
#: the reason a held message is skipped with in this run (the plan counts it as held, not skipped)
HELD = "held for quiet hours"
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_clock(value: Any) -> time:
    """``"21:00"`` → 21:00; ValueError with what to write for anything else.

    YAML reads an unquoted 21:00 as the number 1260 (minutes, in base 60), so a number is refused with the quoted
    form it most likely was.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r} is not a time of day; write it as \"HH:MM\", e.g. \"21:00\"")
    if isinstance(value, int):
        guess = f"{value // 60:02d}:{value % 60:02d}" if 0 <= value < 24 * 60 else "21:00"
        raise ValueError(
            f"YAML read this time as the number {value}: a time written without quotes is read as a number; "
            f"write it in quotes, e.g. \"{guess}\""
        )
    match = _CLOCK.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a time of day; write it as \"HH:MM\" on a 24-hour clock, e.g. \"21:00\"")
    return time(int(match[1]), int(match[2]))


def zone_problem(name: str) -> str | None:
    """What is wrong with ``name`` as an IANA time zone, or None when zoneinfo knows it."""
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"{name!r} is not a time zone name (IANA names look like Africa/Nairobi, Europe/Ljubljana or UTC)"
    return None


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class Window:
    """The quiet window as a local time of day: from ``start`` to ``end``, across midnight when end < start."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def release(self, local: datetime) -> datetime:
        """The first moment after ``local`` (a time in the recipient's zone, inside the window) the window ends."""
        end = datetime.combine(local.date(), self.end, tzinfo=local.tzinfo)
        if end <= local:
            # wall-clock arithmetic: tomorrow's end at the same local time, whatever a DST change did overnight
            end += timedelta(days=1)
        return end


@dataclass(frozen=True, slots=True)
class Held(Decision):
    """A message the plan holds in this run: the recipient is in their quiet hours until ``until`` (UTC)."""

    until: datetime | None = None
    #: the recipient's zone, in which the release time is shown
    zone: str = ""

    def local_until(self) -> datetime | None:
        """The release time in the recipient's own zone."""
        return self.until.astimezone(_zone(self.zone)) if self.until and self.zone else self.until


@dataclass
class QuietHours:
    """One run's quiet-hours rule: the window, the notice's default zone, and the run's "now" (the one clock).

    ``how`` counts how each recipient's zone was found: column, number, default (the number has several zones or
    none), utc (neither the number nor the notice names one).
    """

    window: Window
    #: the notice's quiet_hours.timezone; None: UTC, with a caution
    default_zone: str | None
    now: datetime
    #: how recipients' zones were found → messages; read into cautions after the plan is counted
    how: Counter[str] = field(default_factory=Counter)

    def zone_for(self, timezone_cell: str, phone: str | None) -> tuple[str, str]:
        """(zone name, how it was found): the contact's timezone column, else the phone number's country when it has
        exactly one zone, else the notice's default, else UTC."""
        if timezone_cell:
            return timezone_cell, "column"
        if phone:
            zones = _number_zones(phone)
            if len(zones) == 1 and zones[0] != "Etc/Unknown":
                return zones[0], "number"
        if self.default_zone:
            return self.default_zone, "default"
        return "UTC", "utc"

    def held_until(self, timezone_cell: str, phone: str | None) -> tuple[datetime | None, str]:
        """(when the recipient's quiet hours end, in UTC, or None when they are awake now; their zone)."""
        zone, how = self.zone_for(timezone_cell, phone)
        self.how[how] += 1
        local = self.now.astimezone(_zone(zone))
        if not self.window.contains(local.time()):
            return None, zone
        return self.window.release(local).astimezone(UTC), zone

    def hold(self, decision: Decision, timezone_cell: str) -> Decision:
        """The decision, or a Held one when it would send to someone in their quiet hours."""
        message = decision.message
        until, zone = self.held_until(timezone_cell, message.recipient)
        if until is None:
            return decision
        return Held(message, False, HELD, recorded=decision.recorded, until=until, zone=zone)

    def cautions(self) -> list[tuple[str, str]]:
        """(where, what) for recipients whose zone was guessed: a person should know before a night goes by."""
        out = []
        if self.how["default"]:
            out.append((
                "quiet hours",
                f"{self.how['default']} message(s): the phone number does not say which time zone (a country with "
                f"several zones, such as the US), so quiet hours use the notice's zone, {self.default_zone}; add a "
                "timezone column to the contacts to be exact",
            ))
        if self.how["utc"]:
            out.append((
                "quiet hours",
                f"{self.how['utc']} message(s): no time zone from the contacts, the phone number or the notice, so "
                "quiet hours are counted in UTC; set quiet_hours.timezone in the notice or a timezone column in the "
                "contacts",
            ))
        return out


def _number_zones(phone: str) -> tuple[str, ...]:
    """The zones phonenumbers' timezone data gives for an E.164 number (contacts.py made every phone one)."""
    import phonenumbers
    from phonenumbers import timezone as zones

    digits = phone.removeprefix("+")
    # country codes are prefix-free: the first 1 to 3 digits that are one are the number's
    code = next((digits[:n] for n in (1, 2, 3) if digits[:n].isdigit() and int(digits[:n]) in _codes()), None)
    whole = _country_zones(code) if code else None
    if whole is not None:
        return whole  # Kenya, Slovenia, …: one answer for every number, without parsing it (a million-contact plan)
    try:
        return tuple(zones.time_zones_for_number(phonenumbers.parse(phone)))
    except phonenumbers.NumberParseException:
        return ()


@functools.cache
def _codes() -> frozenset[int]:
    import phonenumbers

    return frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@functools.cache
def _country_zones(code: str) -> tuple[str, ...] | None:
    """The zones of every number of a country code, when phonenumbers' data has nothing finer for it; else None."""
    from phonenumbers.tzdata import TIMEZONE_DATA

    if any(key.startswith(code) and key != code for key in TIMEZONE_DATA):
        return None
    found = TIMEZONE_DATA.get(code)
    return tuple(found) if found else None


def setting_for(notice: Any) -> Any:
    """The notice's quiet_hours setting a send applies, or None: urgent and emergency notices go at any hour, and
    ``quiet_hours: false`` turns them off."""
    if notice.severity not in QUIET_SEVERITIES or notice.quiet_hours is False:
        return None
    return notice.quiet_hours


def for_notice(notice: Any, now: datetime) -> QuietHours | None:
    """The rule for a notice at ``now``, or None when quiet hours do not apply to it (setting_for)."""
    setting = setting_for(notice)
    if setting is None:
        return None
    return QuietHours(Window(parse_clock(setting.start), parse_clock(setting.end)), setting.timezone, now)


#: rows listed in the error that stops a run for bad timezone cells; the rest are counted
MAX_LISTED = 20


def refuse_unknown_zones(book: Any) -> None:
    """Raise ContactsError when any contact row's timezone cell could not be read (contacts.py reports them as
    problems of field 'timezone'): quiet hours would be counted in the wrong zone, and someone texted at night."""
    from broadcast.errors import ContactsError

    bad = [p for p in book.problems if p.field == "timezone"]
    if not bad:
        return
    listed = "\n".join(f"  - {p.where}: {p.message}" for p in bad[:MAX_LISTED])
    if len(bad) > MAX_LISTED:
        listed += f"\n  … and {len(bad) - MAX_LISTED} more"
    files = sorted({p.file for p in bad})
    raise ContactsError(
        f"{len(bad)} contact row(s) have a timezone that is not a time zone, so their quiet hours cannot be known and "
        f"an SMS could wake them at night; nothing was sent:\n{listed}",
        file=files[0] if len(files) == 1 else None,
        row=bad[0].row if len(bad) == 1 else None,
        field="timezone" if len(bad) == 1 else None,
        hint="write an IANA zone name such as Africa/Nairobi, Europe/Ljubljana or America/Los_Angeles in each listed "
        "row, or leave the "
        "cell empty to use the phone number's country",
    )
