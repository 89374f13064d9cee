"""The notice's lifecycle fields: phase, expires (with check's warnings), area for CAP, and the CAP sender."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.errors import NoticeError
from broadcast.notice import load_notice

DATA = Path(__file__).parent / "data" / "notices"
MINIMAL = (DATA / "minimal.yaml").read_text(encoding="utf-8")
# MINIMAL has 23 lines: a field appended is on line 24, the next on 25
NEXT = MINIMAL.count("\n") + 1
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "notice.yaml"
    path.write_text(MINIMAL + extra, encoding="utf-8")
    return path


def refused(tmp_path: Path, extra: str) -> NoticeError:
    with pytest.raises(NoticeError) as info:
        load_notice(write(tmp_path, extra), now=NOW)
    assert info.value.hint
    return info.value


# -- phase ----------------------------------------------------------------------------------------------------------


def test_phase_is_alert_unless_the_notice_says_update_or_all_clear(tmp_path: Path) -> None:
    assert load_notice(write(tmp_path, "")).phase == "alert"
    assert load_notice(write(tmp_path, "phase: update\n")).phase == "update"
    assert load_notice(write(tmp_path, "phase: all_clear\n")).phase == "all_clear"


def test_an_unknown_phase_names_its_line_and_the_three_phases(tmp_path: Path) -> None:
    err = refused(tmp_path, "phase: resolved\n")
    assert (err.row, err.field) == (NEXT, "phase")
    assert "'alert', 'update' or 'all_clear'" in err.message and "'resolved'" in err.message


# -- expires --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written, expected",
    [
        ("2026-11-30T18:00:00+03:00", datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)),
        ('"2026-11-30T18:00:00+03:00"', datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)),
        ('"2026-11-30T15:00:00Z"', datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)),
        ("2026-11-30 15:00:00 -02:00", datetime(2026, 11, 30, 17, 0, tzinfo=timezone.utc)),
    ],
)
def test_expires_is_an_iso_8601_time_with_its_zone(tmp_path: Path, written: str, expected: datetime) -> None:
    notice = load_notice(write(tmp_path, f"expires: {written}\n"), now=NOW)
    assert notice.expires == expected
    assert notice.warnings == []


@pytest.mark.parametrize(
    "written, words",
    [
        ("2026-11-30T18:00:00", "has no time zone"),
        ('"2026-11-30T18:00"', "has no time zone"),
        ("2026-11-30", "a date without a time and zone"),
        ("tomorrow", "is not an ISO 8601 date and time"),
        ("[2026]", "is not a date and time"),
    ],
)
def test_an_expires_without_a_zone_or_time_is_an_error_at_its_line(tmp_path: Path, written: str, words: str) -> None:
    err = refused(tmp_path, f"expires: {written}\n")
    assert (err.row, err.field) == (NEXT, "expires")
    assert words in err.message
    assert "2026-11-30T18:00:00+03:00" in err.hint


def test_expired_compares_with_a_given_time(tmp_path: Path) -> None:
    notice = load_notice(write(tmp_path, "expires: 2026-11-28T14:00:00+02:00\n"), now=NOW)
    assert not notice.expired(NOW - timedelta(seconds=1))
    assert notice.expired(NOW)
    assert notice.expired(NOW + timedelta(days=1))
    assert not load_notice(write(tmp_path, ""), now=NOW).expired(NOW + timedelta(days=3650))


def test_an_expires_in_the_past_warns_with_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "phase: update\nexpires: 2026-11-28T11:00:00Z\n")
    (warning,) = load_notice(path, now=NOW).warnings
    assert warning.where == f"{path}, line {NEXT + 1}, field 'expires'"
    assert "in the past" in warning.message and "send would send nothing" in warning.message


def test_an_expires_more_than_7_days_ahead_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "expires: 2026-12-05T12:00:01Z\n")
    (warning,) = load_notice(path, now=NOW).warnings
    assert "7 days ahead" in warning.message and warning.where.endswith("field 'expires'")
    # exactly 7 days is fine
    assert load_notice(write(tmp_path, "expires: 2026-12-05T12:00:00Z\n"), now=NOW).warnings == []


def test_check_shows_the_expiry_warning_from_the_same_notice_code(tmp_path: Path) -> None:
    path = write(tmp_path, "expires: 2020-01-01T00:00:00Z\n")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert "Traceback" not in result.output
    assert f"line {NEXT}, field 'expires'" in result.output and "in the past" in result.output


# -- area -----------------------------------------------------------------------------------------------------------

AREA = """area:
  description: {en: North zone, sl: Severni del}
  geocodes:
    - {name: ISO3166-2, value: SI-061}
    - {name: SAME, value: "006113"}
  polygons:
    - "46.05,14.50 46.06,14.52 46.04,14.53 46.05,14.50"
    - ["46.05, 14.50", "46.06,14.52", "46.04,14.53", "46.050,14.5"]
  circles: ["46.05,14.50 3.5"]
"""


def test_an_area_has_a_description_per_language_and_optional_geocodes_polygons_and_circles(tmp_path: Path) -> None:
    area = load_notice(write(tmp_path, AREA)).area
    assert area is not None
    assert area.description == {"en": "North zone", "sl": "Severni del"}
    assert [(g.name, g.value) for g in area.geocodes] == [("ISO3166-2", "SI-061"), ("SAME", "006113")]
    # both forms become CAP's "lat,lon lat,lon ..."; a point equal in number closes the polygon
    assert area.polygons[0] == ("46.05,14.50", "46.06,14.52", "46.04,14.53", "46.05,14.50")
    assert area.polygons[1] == ("46.05,14.50", "46.06,14.52", "46.04,14.53", "46.050,14.5")
    assert area.circles == ["46.05,14.50 3.5"]
    assert load_notice(write(tmp_path, "area: {description: Everywhere we serve}\n")).area.polygons == []


@pytest.mark.parametrize(
    "area, field, words",
    [
        ("area: {geocodes: []}", "area.description", "required"),
        ('area: {description: North, polygons: ["46.05,14.50 46.06,14.52 46.04,14.53 46.07,14.50"]}',
         "area.polygons[0]", "not closed: it starts at 46.05,14.50 and ends at 46.07,14.50"),
        ('area: {description: North, polygons: ["46.05,14.50 46.06,14.52 46.05,14.50"]}',
         "area.polygons[0]", "at least 4 points"),
        ('area: {description: North, polygons: ["91.0,14.50 46.06,14.52 46.04,14.53 91.0,14.50"]}',
         "area.polygons[0]", "point 1, '91.0,14.50', is off the map"),
        ('area: {description: North, polygons: ["46.05,181 46.06,14.52 46.04,14.53 46.05,181"]}',
         "area.polygons[0]", "off the map"),
        ('area: {description: North, polygons: ["46.05,14.50 north 46.04,14.53 46.05,14.50"]}',
         "area.polygons[0]", "point 2, 'north', is not \"latitude,longitude\""),
        ('area: {description: North, polygons: ["nan,1 1,1 1,2 nan,1"]}', "area.polygons[0]", "point 1"),
        ("area: {description: North, circles: [\"46.05,14.50\"]}", "area.circles[0]", "is not a circle"),
        ("area: {description: North, circles: [\"95,14.50 3\"]}", "area.circles[0]", "off the map"),
        ("area: {description: North, geocodes: [{name: SAME}]}", "area.geocodes[0].value", "required"),
        # unquoted, YAML reads 006113 as the octal number 3147
        ("area: {description: North, geocodes: [{name: SAME, value: 006113}]}", "area.geocodes[0].value",
         "written as a number"),
        ("area: {description: '\u200b'}", "area.description", "blank"),
    ],
)
def test_a_bad_area_is_an_error_naming_its_field(tmp_path: Path, area: str, field: str, words: str) -> None:
    err = refused(tmp_path, area + "\n")
    assert (err.row, err.field) == (NEXT, field), str(err)
    assert words in err.message


def test_an_area_description_needs_every_language_like_any_text(tmp_path: Path) -> None:
    err = refused(tmp_path, "area: {description: {en: North zone}}\n")
    assert "area.description × sl" in err.message


def test_an_area_polygon_is_at_most_1000_points(tmp_path: Path) -> None:
    points = ["46.0,14.0"] + [f"46.{i:04d},14.1" for i in range(1, 1000)] + ["46.0,14.0"]
    err = refused(tmp_path, f"area: {{description: North, polygons: [\"{' '.join(points)}\"]}}\n")
    assert "1,001 points" in err.message and err.field == "area.polygons[0]"


# -- cap_sender -----------------------------------------------------------------------------------------------------


def test_cap_sender_is_one_word_without_commas_or_markup(tmp_path: Path) -> None:
    assert load_notice(write(tmp_path, "cap_sender: alerts@lakeside.example\n")).cap_sender == "alerts@lakeside.example"
    assert load_notice(write(tmp_path, "")).cap_sender is None
    for bad, what in (("lakeside water", "a space"), ("a,b", "','"), ("a&b", "'&'"), ("a<b", "'<'"), ('"a"', "'\"'")):
        err = refused(tmp_path, f"cap_sender: '{bad}'\n")
        assert (err.row, err.field) == (NEXT, "cap_sender")
        assert f"contains {what}" in err.message and "CAP 1.2 forbids" in err.message


def test_the_shipped_examples_still_load_without_the_new_fields() -> None:
    repo = Path(__file__).parent.parent
    for name in ("boil-water.yaml", "storm-outage.yaml"):
        notice = load_notice(repo / "examples" / name, now=NOW)
        assert (notice.phase, notice.expires, notice.area, notice.cap_sender) == ("alert", None, None, None)
        assert notice.warnings == []
