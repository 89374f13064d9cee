"""Fuzzing the input edges: whatever a notice or contacts file holds, broadcast answers with a BroadcastError or a result.

Anything else escaping (KeyError, TypeError, RecursionError, ...) would be exit 3, "a bug in broadcast", shown to a
person in the middle of a crisis; these properties make hypothesis look for one.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from broadcast.contacts import read_contacts
from broadcast.errors import BroadcastError
from broadcast.notice import Notice, load_notice
from broadcast.render import Templates, render_notice
from broadcast.segments import count_segments
from tests.test_segments import GSM_BASIC, GSM_EXTENSION, reference

MINIMAL = Path(__file__).parent / "data" / "notices" / "minimal.yaml"
BASE = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    # hypothesis runs many examples per test call, so one folder per module, one file name per property
    with tempfile.TemporaryDirectory(prefix="broadcast-fuzz-") as name:
        yield Path(name)


@pytest.fixture(scope="module")
def templates() -> Templates:
    """Compiled once: rendering then takes milliseconds, so hypothesis can render hundreds of notices."""
    return Templates()


def _load(path: Path, data: bytes, *, note: bool = True) -> Notice | None:
    path.write_bytes(data)
    try:
        return load_notice(path)
    except BroadcastError as error:
        assert error.file == str(path) and error.message, error
        assert error.exit_code == 2
        if note:  # hypothesis statistics: how many examples get past the loader
            event(f"refused: {type(error).__name__}")
        return None


# -- the notice loader: YAML-ish text ---------------------------------------------------------------

_KEYS = [*BASE, "need", "channel", "kind", "label", "contact", "hours", "title", "url", "en", "sl", "*", "<<"]
_SCALARS = [
    "", "~", "null", "true", "no", "0", "-1", "1e309", ".nan", "0x1F", "2026-03-07", "2026-03-07T10:00:00Z",
    '"quoted: text"', "'single'", "|", ">", "&anchor x", "*anchor", "*missing", "!!binary aGVsbG8=", "!!set {a, b}",
    "!!python/object:os.system x", "!!str 5", "!!int x", "[a, b", "{en: x, sl: y}", "{en: [1, 2]}", "[]", "{}",
    "https://x.example", "+386 1 555 0100", "phone", "web", "urgent", "default", "\t", "# comment", "%%name%%",
    "\u202e", "\x00", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
]
yaml_line = st.tuples(
    st.sampled_from(["", "  ", "    ", "- ", "  - ", "\t", "? "]),
    st.sampled_from(_KEYS),
    st.sampled_from([": ", ":", " : ", ": - ", ":\n  "]),
    st.one_of(st.sampled_from(_SCALARS), st.text(max_size=20)),
).map("".join)
yaml_text = st.one_of(
    st.lists(yaml_line, max_size=25).map("\n".join),
    st.text(max_size=300),
    # a valid notice with one line replaced, so the loader gets past YAML more often
    st.tuples(st.integers(0, 40), yaml_line).map(
        lambda edit: "\n".join(
            edit[1] if i == edit[0] else line for i, line in enumerate(MINIMAL.read_text(encoding="utf-8").splitlines())
        )
    ),
)


@settings(FUZZ, max_examples=300)
@given(yaml_text)
@example("? [a]\n: b")  # a key that is a list
@example("{[1]: 2}")
@example("languages: !!set {en, sl}")
@example("headline: !!binary aGVsbG8=")
@example("id: 2026-03-07")
@example("<<: {id: x}")
def test_notice_loader_on_yaml_ish_text(folder: Path, text: str) -> None:
    _load(folder / "text.yaml", text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("text", ["id: x\nlanguages: &l [en, *l]", "id: x\nheadline: &h {en: *h}"])
def test_a_recursive_yaml_alias_is_a_notice_error(folder: Path, text: str) -> None:
    _load(folder / "recursive.yaml", text.encode(), note=False)


@settings(FUZZ, max_examples=150)
@given(st.binary(max_size=400))
@example(b"\xef\xbb\xbf")
@example(b"\xff\xfe" + "id: x".encode("utf-16-le"))
def test_notice_loader_on_bytes(folder: Path, data: bytes) -> None:
    _load(folder / "bytes.yaml", data)


# -- the notice loader: structured notices with random parts ----------------------------------------

_ANY = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
        st.dates(), st.datetimes(), st.binary(max_size=8), st.sampled_from(["en", "sl", "*", "hotline", "portal"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["en", "sl", "*"]), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)


def _paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _at(path: tuple) -> Any:
    value: Any = BASE
    for part in path:
        value = value[part]
    return value


_ALL_PATHS = [p for p in _paths(BASE) if p]
#: the localized texts: what an author edits most, and what templates print
_TEXT_PATHS = [p for p in _ALL_PATHS if isinstance(_at(p), str) and p[-1] in ("en", "sl", "hours", "name", "contact")]


def _mutated(edits: list[tuple[tuple, str, Any]]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for path, how, value in edits:
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            if how == "delete":
                del parent[path[-1]]
            elif how == "replace":
                parent[path[-1]] = value
            elif isinstance(parent, dict):
                parent[f"{path[-1]}_extra" if isinstance(path[-1], str) else path[-1]] = value
            else:
                parent.append(value)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier edit removed or replaced this part (None has no append)
    return data


#: half the edits put in text, which most fields take, so a good share of notices load and go on to render
edit = st.one_of(
    st.tuples(st.sampled_from(_ALL_PATHS), st.sampled_from(["delete", "replace", "add"]), _ANY),
    st.tuples(st.sampled_from(_TEXT_PATHS), st.just("replace"), st.text(min_size=1, max_size=60)),
)


@settings(FUZZ, max_examples=200)
@given(st.lists(edit, min_size=1, max_size=4))
def test_notice_loader_on_mutated_notices(folder: Path, templates: Templates, edits: list) -> None:
    """A mutated notice either fails to load with a NoticeError, or loads and renders (or fails with a TemplateError)."""
    data = _mutated(edits)
    try:
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        assume(False)
    notice = _load(folder / "mutated.yaml", text.encode("utf-8", "surrogatepass"))
    if notice is not None:
        event("loaded")
        try:
            render_notice(notice, templates)
        except BroadcastError as error:
            event(f"render refused: {type(error).__name__}")


# -- the contacts reader --------------------------------------------------------------------------

_CELLS = [
    "", " ", "Ana Novak", '"Novak, Ana"', "ana@mail.example", "ANA@MAIL.EXAMPLE", "ana@@x", "Ana <ana@mail.example>",
    "+386 41 555 010", "00386 41 555 010", "(01) 555-0102", "+1", "3.86E+11", "+254 712 555 011", "041 555 010",
    "sl", "sl-SI", "xx-!!", "email", "sms;email", "fax", "a;b", '"', '""', "é", "\u202e", "\x00", "=cmd|x",
    "a" * 1200, "x@" + "y" * 300 + ".example",
]
csv_row = st.lists(st.one_of(st.sampled_from(_CELLS), st.text(max_size=12)), max_size=8)
csv_text = st.tuples(
    st.sampled_from(["name,email,phone,language,channels,tags", "email;phone;name", "phone\tname", "email", "", "x,y"]),
    st.lists(csv_row, max_size=12),
    st.sampled_from([",", ";", "\t"]),
    st.sampled_from(["\n", "\r\n", "\r"]),
).map(lambda t: t[3].join([t[0], *(t[2].join(row) for row in t[1])]))


def _read(path: Path, data: bytes, region: str | None = None) -> None:
    path.write_bytes(data)
    try:
        book = read_contacts([path], default_region=region)
    except BroadcastError as error:
        assert error.exit_code == 2 and error.message
        return
    # never silently dropped: every row with content is a contact, merged into one, or rejected with a reason
    assert book.read == book.valid + book.rejected + book.merged, (book.read, book.valid, book.rejected, book.merged)
    for problem in book.problems:
        assert problem.file == str(path) and problem.message
    for contact in book.contacts:
        assert contact.email or contact.phone
        assert contact.phone is None or contact.phone.startswith("+")


@settings(FUZZ, max_examples=300)
@given(csv_text, st.sampled_from([None, "SI", "KE"]), st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
def test_contacts_reader_on_csv_ish_text(folder: Path, text: str, region: str | None, encoding: str) -> None:
    _read(folder / "contacts.csv", text.encode(encoding, "replace"), region)


@settings(FUZZ, max_examples=200)
@given(st.binary(max_size=600))
@example(b"PK\x03\x04")
@example(b"\xff\xfe\x00")
@example(b'email\n"' + b"a" * 5000)
def test_contacts_reader_on_bytes(folder: Path, data: bytes) -> None:
    _read(folder / "bytes.csv", data)


# -- SMS segments of what is actually rendered --------------------------------------------------------

_GSM = sorted(GSM_BASIC | GSM_EXTENSION)
sms_words = st.text(
    st.one_of(st.sampled_from(_GSM), st.sampled_from(sorted(GSM_EXTENSION)), st.sampled_from(["č", "ž", "😀", "€", "\u00a0"])),
    min_size=1,
    max_size=200,
)


@settings(FUZZ, max_examples=120)
@given(headline=sms_words, summary=sms_words, hours=sms_words)
def test_rendered_sms_segments_match_the_brute_force_count(
    templates: Templates, headline: str, summary: str, hours: str
) -> None:
    """tests/test_segments.py checks count_segments on strings; this checks it on SMS as the templates build them.

    Notice text next to template text puts extension characters and emoji on segment boundaries that no
    hand-written string covers, in both encodings.
    """
    data = copy.deepcopy(BASE)
    data["headline"] = {"en": headline, "sl": headline}
    data["summary"] = {"en": summary, "sl": summary}
    data["channels"][0]["hours"] = hours
    try:
        notice = Notice.model_validate(data)
    except ValueError:
        assume(False)
    renders = render_notice(notice, templates, channels=["sms"])
    for rendering in renders.of("sms"):
        assert count_segments(rendering.text) == reference(rendering.text)


def test_the_structured_fuzz_starts_from_a_valid_notice(templates: Templates) -> None:
    """Guards the fuzzers above: with no edits the base notice loads and renders, so mutations explore near it."""
    notice = Notice.model_validate(BASE)
    assert render_notice(notice, templates).versions
