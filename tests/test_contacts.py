"""Contact files as people really export them: every messy case reads, or fails with a ContactsError that says why."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast.contacts import NUMBER_TYPES, Contact, ContactBook, Problem, read_contacts
from broadcast.errors import ConfigError, ContactsError

DATA = Path(__file__).parent / "data" / "contacts"
EXAMPLE = Path(__file__).parent.parent / "contacts" / "example.csv"
HEADER = "name,email,phone,language,channels,tags\n"


def read(name: str, region: str | None = None, *, allow: tuple[str, ...] = ()) -> ContactBook:
    book = read_contacts([DATA / name], default_region=region, allow_number_types=allow)
    assert book.read == book.valid + book.merged + book.rejected
    return book


def where(book: ContactBook) -> list[tuple[int, str | None, bool]]:
    """Each problem as (row, field, rejected): what a person uses to find it in the spreadsheet."""
    return [(problem.row, problem.field, problem.rejected) for problem in book.problems]


def by_name(book: ContactBook) -> dict[str, Contact]:
    return {contact.name: contact for contact in book.contacts}


# -- encodings and CSV shapes ----------------------------------------------------------------------


def test_utf8_bom_is_not_part_of_the_first_column():
    book = read("bom.csv")
    assert book.problems == []
    assert [contact.name for contact in book.contacts] == ["Ana Novak", "Žiga Šušteršič"]
    assert book.contacts[0].phone == "+38641555010"


def test_semicolon_delimiter_from_european_excel():
    book = read("semicolon.csv", region="SI", allow=("fixed_line",))
    assert book.problems == []
    ana = by_name(book)["Novak, Ana"]
    assert ana.phone == "+38615550100"
    assert ana.tags == ("Ljubljana, center",)
    assert by_name(book)["Kos Janez"].channels == {"sms"}


def test_tab_delimiter():
    book = read("tab.csv")
    assert book.problems == []
    assert book.contacts[0].name == "Novak, Ana"
    assert book.contacts[0].tags == ("staff", "ljubljana")


def test_quoted_commas_quotes_and_newlines_keep_spreadsheet_row_numbers():
    book = read("quoted.csv")
    assert by_name(book)["Novak, Ana"].email == "ana.novak@mail.example"
    wanjiru = by_name(book)["Wanjiru Kamau"]
    assert wanjiru.tags == ("staff", 'field "A" team')
    assert wanjiru.channels == {"email", "sms"}
    # Wanjiru's record spans two lines of text but is one spreadsheet row, so Brian is row 4.
    assert where(book) == [(4, "email", True)]


def test_blank_lines_and_rows_of_only_delimiters_are_skipped_but_keep_row_numbers():
    book = read("blank_lines.csv")
    assert book.read == 2
    assert book.contacts[0].source == f"{DATA / 'blank_lines.csv'}:3"
    assert where(book) == [(9, "email", True)]


def test_spaces_around_header_names_and_fields_are_stripped():
    book = read("spaces.csv")
    assert book.problems == []
    assert book.contacts == [
        Contact(
            key="email:ana.novak@mail.example",
            name="Ana Novak",
            email="ana.novak@mail.example",
            phone="+38641555010",
            language="sl",
            channels=frozenset({"email", "sms"}),
            tags=("staff", "Ljubljana"),
            source=f"{DATA / 'spaces.csv'}:2",
        )
    ]


def test_excel_unicode_text_is_utf16_with_tabs():
    book = read("utf16.csv")
    assert book.problems == []
    assert book.contacts[0].name == "Žiga Šušteršič"


def test_windows_1252_file_is_read_with_one_warning():
    book = read("cp1252.csv")
    assert [contact.name for contact in book.contacts] == [
        "Renée Müller",
        "Žan Štrus",
        "“Café” – Ana",
        "Undefined \ufffd byte",  # 0x81 means nothing in Windows-1252; it must not stop the file
    ]
    assert where(book) == [(0, None, False)]
    problem = book.problems[0]
    assert problem.message.startswith("is not UTF-8 (first at line 2), so it was read as Windows-1252")
    assert "CSV UTF-8" in problem.hint


# -- phones ----------------------------------------------------------------------------------------


def test_phone_formats_normalize_to_e164_with_a_default_region():
    # the numbers are fictional fixed lines: about formats, not number types
    book = read("phone_formats.csv", region="SI", allow=tuple(NUMBER_TYPES))
    assert book.problems == []
    assert [(contact.name, contact.phone) for contact in book.contacts] == [
        ("International", "+38615550100"),
        ("National with parentheses", "+38615550101"),
        ("Dots", "+38615550102"),
        ("Double zero", "+38615550103"),
        ("Double zero without spaces", "+38615550104"),
        ("Mobile", "+38641555010"),
        ("Mobile with dashes", "+38641555011"),
        ("Spreadsheet text prefix", "+38615550105"),
        ("US", "+12025550143"),
        ("US from abroad", "+12025550199"),
        ("UK", "+442079460123"),
        ("Kenya", "+254712555010"),
    ]
    assert all(contact.key == f"phone:{contact.phone}" for contact in book.contacts)
    assert all(contact.channels == {"sms"} for contact in book.contacts)


def test_us_numbers_with_region_us():
    book = read("phone_us.csv", region="us", allow=("fixed_line",))
    assert book.problems == []
    assert [contact.phone for contact in book.contacts] == [
        "+12025550143", "+12025550144", "+12025550145", "+12025550146", "+12025550147", "+38615550100",
    ]


def test_without_a_region_a_number_needs_its_country_code():
    book = read("phone_no_region.csv", allow=("fixed_line",))
    assert [contact.phone for contact in book.contacts] == ["+38615550100", "+38615550101", None]
    assert where(book) == [(4, "phone", False)]
    problem = book.problems[0]
    assert problem.message == "gets email only: '(01) 555-0102' has no country code"
    assert "--region" in problem.hint and "BROADCAST_DEFAULT_REGION" in problem.hint


def test_bad_phones_are_warnings_when_the_email_is_good():
    book = read("bad_phones.csv", region="SI")
    assert book.valid == 6
    assert all(contact.phone is None and contact.channels == {"email"} for contact in book.contacts)
    assert where(book) == [(row, "phone", False) for row in range(2, 8)]
    assert [problem.message for problem in book.problems] == [
        "gets email only: '555 12' is not a valid phone number for region SI",
        "gets email only: 'call me' is not a phone number",
        "gets email only: '+999 123 456' has no country code we know",
        "gets email only: '3.86155501E+11' was turned into a number by a spreadsheet, and digits are lost",
        "gets email only: '+386 1 555 01' is not a valid phone number for SI (+386)",
        "gets email only: '041 555 010 / 041 555 011' is not a valid phone number for region SI",
    ]
    assert book.lost_channel == 6
    assert book.problems[0].hint.startswith("write it with the country code, e.g. +386")


def test_problem_reads_as_where_what_and_hint():
    problem = Problem("contacts/a.csv", 7, "phone", "'555 12' is not a valid phone number for region SI",
                      "write it with the country code, e.g. +386 1 555 0100", False)
    assert str(problem) == (
        "contacts/a.csv, row 7, field 'phone': '555 12' is not a valid phone number for region SI\n"
        "  Hint: write it with the country code, e.g. +386 1 555 0100"
    )
    assert str(Problem("contacts/a.csv", 0, None, "is empty", None, False)) == "contacts/a.csv: is empty"


def test_unknown_region_is_a_config_error():
    with pytest.raises(ConfigError, match="'UK' is not a region") as caught:
        read_contacts([DATA / "bom.csv"], default_region="UK")
    assert "GB" in caught.value.hint


# -- emails and addresses --------------------------------------------------------------------------


def test_bad_emails_without_a_phone_are_rejected_rows():
    book = read("bad_emails.csv")
    assert where(book) == [(row, "email", True) for row in range(2, 8)]
    assert book.rejected == 6
    assert book.problems[0].message == (
        "no usable address: email 'ana.novak.mail.example' is not a valid email address: "
        "An email address must have an @-sign; no phone number"
    )
    # The stored address is email-validator's normalized form; the key is lowercased.
    assert [(contact.email, contact.key) for contact in book.contacts] == [
        ("Ana.Novak@mail.example", "email:ana.novak@mail.example")
    ]


def test_bad_email_with_good_phone_is_an_sms_contact_and_a_warning():
    book = read("bad_email_good_phone.csv")
    assert book.contacts == [
        Contact(
            key="phone:+254712555020",
            name="Grace Wanjiku",
            email=None,
            phone="+254712555020",
            language="sw",
            channels=frozenset({"sms"}),
            tags=(),
            source=f"{DATA / 'bad_email_good_phone.csv'}:2",
        )
    ]
    assert where(book) == [(2, "email", False)]
    assert book.problems[0].message.startswith("gets SMS only: 'grace@@mail.example' is not a valid email address")
    assert book.lost_channel == 1
    assert book.rejected == 0


def test_display_name_around_an_email_fills_an_empty_name():
    book = read("display_name.csv")
    assert book.problems == []
    assert (book.contacts[0].name, book.contacts[0].email) == ("Ana Novak", "ana.novak@mail.example")


def test_rows_with_no_usable_address_are_one_rejected_problem_each():
    book = read("no_address.csv", region="SI")
    assert book.contacts == []
    assert (book.read, book.rejected) == (4, 4)
    assert where(book) == [(2, None, True), (3, None, True), (4, "phone", True), (5, "channels", True)]
    messages = [problem.message for problem in book.problems]
    assert messages[0] == "has no email address and no phone number"
    assert messages[1] == (
        "no usable address: email 'ana@' is not a valid email address: There must be something after the @-sign; "
        "phone '12' is not a valid phone number for region SI"
    )
    assert messages[2] == (
        "no usable address: no email address; phone '555 12' is not a valid phone number for region SI"
    )
    assert messages[3] == "asks only for email but has no usable email address"


# -- duplicates ------------------------------------------------------------------------------------


def test_duplicates_within_a_file_merge_and_fill_in_missing_values():
    book = read("duplicates.csv", region="SI")
    assert book.problems == []
    assert (book.read, book.valid, book.merged) == (4, 2, 2)
    ana, janez = book.contacts
    assert ana.source.endswith("duplicates.csv:2")
    assert ana.phone == "+38641555040"  # filled in by row 3, matched on a differently cased email
    assert ana.tags == ("staff", "volunteer")
    assert ana.channels == {"email", "sms"}  # row 2 asked for email, row 3 for sms
    # Row 5 matched Janez by phone and gave him an email, so the email is now his key.
    assert (janez.key, janez.source[-1], janez.tags) == ("email:janez.kos@mail.example", "4", ("field",))


def test_duplicates_across_files_merge_and_name_both_files():
    first, second = DATA / "duplicates_a.csv", DATA / "duplicates_b.csv"
    book = read_contacts([first, second], default_region="SI")
    assert (book.read, book.valid, book.merged) == (3, 2, 1)
    ana = book.contacts[0]
    assert (ana.name, ana.tags, ana.channels) == ("Ana Novak", ("staff", "volunteer"), {"email", "sms"})
    assert [(problem.file, problem.row, problem.field) for problem in book.problems] == [(str(second), 2, "name")]
    assert book.problems[0].message == (
        f"'Ana Novak-Kos' differs from 'Ana Novak' in {first} row 2, the same contact; kept 'Ana Novak'"
    )


def test_conflicting_duplicate_keeps_the_first_row_and_warns_per_field():
    book = read("conflict.csv")
    assert (book.valid, book.merged) == (2, 2)
    ana = by_name(book)["Ana Novak"]
    assert (ana.phone, ana.language) == ("+38641555060", "sl")
    assert where(book) == [(3, "phone", False), (3, "name", False), (3, "language", False), (5, "phone", False)]
    assert book.problems[2].message == "'en' differs from 'sl' in row 2, the same contact; kept 'sl'"
    # Row 5 has Ana's email but Bob's phone: the phone stays Bob's, so one number never reaches two contacts.
    assert book.problems[3].message == (
        "+254712555062 is already the phone number of another contact (row 4); it stays with that contact only"
    )
    assert by_name(book)["Bob Otieno"].phone == "+254712555062"


# -- fields that are too big, shifted or unknown ---------------------------------------------------


def test_huge_fields_are_ignored_with_a_problem():
    book = read("huge_field.csv")
    assert where(book) == [(2, "name", False), (3, "email", False), (4, "tags", False)]
    assert book.problems[0].message.startswith("is 5,000 characters long (the limit is 1,000), so it was ignored: 'AAA")
    assert len(str(book.problems[0])) < 300
    assert [(contact.name, contact.channels) for contact in book.contacts] == [
        ("", {"email"}), ("Bob Otieno", {"sms"}), ("Grace Wanjiku", {"email"}),
    ]


def test_unclosed_quote_points_at_its_row():
    book = read("unclosed_quote.csv")
    assert where(book) == [(2, None, True)]
    assert "never closed" in book.problems[0].hint


def test_unquoted_comma_in_a_name_is_explained():
    book = read("extra_values.csv")
    assert where(book) == [(2, None, True), (3, None, False)]
    assert all("double quotes" in problem.hint for problem in book.problems)
    assert book.problems[1].message == "has 7 values but the header has 6 columns; the extra values were ignored"


def test_channel_spellings_and_unknown_channels():
    book = read("unknown_channel.csv")
    assert [(contact.name, contact.channels) for contact in book.contacts] == [
        ("Text", {"sms"}),
        ("E-mail", {"email"}),
        ("Capitals", {"email", "sms"}),
        ("Fax", {"email", "sms"}),  # nothing usable was named, so it is as if the cell were empty
        ("Pigeon", {"email"}),
        ("Comma", {"email", "sms"}),
    ]
    assert where(book) == [(5, "channels", False), (6, "channels", False)]
    assert book.problems[1].message == "unknown channel 'pigeon' ignored; this contact gets email"


def test_language_tags_are_normalized_not_resolved():
    book = read("languages.csv")
    assert [contact.language for contact in book.contacts] == [
        "sl-SI", "sw", "sw-KE", "", "en-GB", "zh-Hant-TW", "", "de",
    ]
    assert where(book) == [(8, "language", False)]


def test_unknown_columns_are_one_warning_per_file():
    book = read("unknown_columns.csv")
    assert book.valid == 2
    assert where(book) == [(1, None, False)]
    assert book.problems[0].message.startswith("ignoring column(s) 'Department', 'Notes'")


# -- files that cannot be read ---------------------------------------------------------------------


def test_missing_email_and_phone_columns_is_an_error_naming_what_was_found():
    path = DATA / "missing_column.csv"
    with pytest.raises(ContactsError) as caught:
        read_contacts([path])
    error = caught.value
    assert (error.file, error.row) == (str(path), 1)
    assert error.message == "has no 'email' or 'phone' column; found columns: 'Name', 'Mobile', 'Notes'"
    assert "name,email,phone,language,channels,tags" in error.hint


def test_a_first_row_of_data_is_recognized_as_a_missing_header():
    with pytest.raises(ContactsError) as caught:
        read_contacts([DATA / "no_header.csv"])
    assert caught.value.hint.startswith("the first row looks like a contact, not a header")


def test_missing_file_is_an_error_with_a_hint(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(ContactsError) as caught:
        read_contacts([DATA / "bom.csv", path])
    assert (caught.value.file, caught.value.message) == (str(path), "file not found")
    assert caught.value.hint.startswith("check the path")


def test_directory_is_an_error():
    with pytest.raises(ContactsError, match="is a folder, not a contacts file"):
        read_contacts([DATA])


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_is_an_error(tmp_path):
    path = tmp_path / "locked.csv"
    path.write_text(HEADER)
    path.chmod(0)
    with pytest.raises(ContactsError, match="permission denied"):
        read_contacts([path])


def test_spreadsheet_workbook_is_an_error_that_says_how_to_save_csv():
    with pytest.raises(ContactsError, match="is a spreadsheet workbook") as caught:
        read_contacts([DATA / "workbook.xlsx"])
    assert "Save As" in caught.value.hint


def test_empty_file_and_header_only_are_warnings():
    book = read_contacts([DATA / "empty.csv", DATA / "header_only.csv"])
    assert (book.read, book.valid) == (0, 0)
    assert [(Path(problem.file).name, problem.row, problem.rejected) for problem in book.problems] == [
        ("empty.csv", 0, False), ("header_only.csv", 0, False),
    ]


# -- the example data ------------------------------------------------------------------------------


def test_example_contacts_read_cleanly_apart_from_their_three_demonstration_problems():
    book = read_contacts([EXAMPLE])
    assert (book.read, book.valid, book.merged, book.rejected) == (16, 15, 1, 0)
    # row 13 asks for any channel with a London landline: email only (Janez on row 3 asks for email only: no warning)
    assert where(book) == [(13, "phone", False), (16, "email", False), (17, "name", False)]
    assert book.problems[0].message == "gets email only: '+44 20 7946 0019' is a fixed-line number, which cannot take an SMS"
    assert book.lost_channel == 2
    assert {contact.language for contact in book.contacts} == {"en", "sw", "sw-KE", "sl", "sl-SI", "", "de"}
    assert {contact.channels for contact in book.contacts} == {
        frozenset({"email"}), frozenset({"sms"}), frozenset({"email", "sms"}),
    }
    assert all(contact.email is None or contact.email.endswith(".example") for contact in book.contacts)


# -- properties ------------------------------------------------------------------------------------

MESSY_CELLS = st.one_of(
    st.sampled_from([
        "", " ", "ana@mail.example", "ANA@MAIL.EXAMPLE", "bad@", "+386 41 555 010", "041 555 010", "00386 1 555 0100",
        "555 12", "3.86E+11", "email", "sms;text", "fax", "sl-si", "Slovenian", "a;b;;a", '"', "x" * 1200,
        "Ana <ana@mail.example>", "\n", "\u00a0",
    ]),
    st.text(max_size=20),
)


def assert_consistent(book: ContactBook) -> None:
    assert book.read == book.valid + book.merged + book.rejected
    keys = [contact.key for contact in book.contacts]
    assert len(keys) == len(set(keys))
    for contact in book.contacts:
        assert contact.channels and contact.channels <= {"email", "sms"}
        assert ("email" in contact.channels) <= (contact.email is not None)
        assert ("sms" in contact.channels) <= (contact.phone is not None)
        assert contact.key == (f"email:{contact.email.lower()}" if contact.email else f"phone:{contact.phone}")


def read_written(data: bytes, region: str | None = None) -> ContactBook | None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "contacts.csv"
        path.write_bytes(data)
        try:
            book = read_contacts([path], default_region=region)
        except ContactsError:
            return None
    assert_consistent(book)
    return book


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_reads_or_raises_only_contacts_error(text):
    read_written(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_any_bytes_read_or_raise_only_contacts_error(data):
    read_written(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    delimiter=st.sampled_from([",", ";", "\t"]),
    rows=st.lists(st.lists(MESSY_CELLS, max_size=8), max_size=12),
    region=st.sampled_from([None, "SI"]),
)
def test_messy_rows_under_a_good_header_never_break_the_book(delimiter, rows, region):
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(HEADER.strip().split(","))
    writer.writerows(rows)
    book = read_written(out.getvalue().encode("utf-8"), region)
    assert book is not None
    assert all(problem.row >= 0 for problem in book.problems)


ADDRESS_CHARACTERS = "abcXYZ019.-_+'!#$%&*/=?^`{|}~@\"()<> é"
LOCAL_PARTS = st.one_of(
    st.from_regex(r"[A-Za-z0-9_!#$%&'*+/=?^`{|}~-]{1,20}(\.[A-Za-z0-9_+-]{1,10}){0,3}", fullmatch=True),
    st.text("a", min_size=60, max_size=260),  # around the 64 and 254 character limits
    st.text(ADDRESS_CHARACTERS, max_size=70),
    st.sampled_from(["Postmaster", "INFO", "Abuse"]),  # mailbox names email-validator lowercases
)
DOMAINS = st.one_of(
    st.from_regex(r"([A-Za-z0-9-]{1,20}\.){1,3}[A-Za-z]{2,10}", fullmatch=True),
    st.text(ADDRESS_CHARACTERS, max_size=70),
    st.sampled_from(["Mail.Example", "xn--bcher-kva.example", "a" * 64 + ".example", "localhost", "x.test", "1.2.3.4"]),
)


@settings(max_examples=300, deadline=None)
@given(local=LOCAL_PARTS, domain=DOMAINS)
def test_email_is_whatever_email_validator_says(local, domain):
    # Plain addresses skip part of email-validator for speed; this holds them to exactly its answer.
    address = f"{local}@{domain}".strip()
    try:
        expected = validate_email(address, check_deliverability=False, allow_display_name=True).normalized
    except EmailNotValidError:
        expected = None
    out = io.StringIO()
    csv.writer(out).writerows([["email", "phone"], [address, "+386 41 555 010"]])
    book = read_written(out.getvalue().encode("utf-8"))
    assert book is not None
    assert book.contacts[0].email == expected


# -- large books: contacts are staged on disk and merged in groups --------------------------------------


def test_duplicates_merge_across_staging_groups_exactly_as_within_one(tmp_path):
    # 5,000 rows span three merge groups: rows far apart must merge as if the whole file were in memory
    rows = [f"P{i},p{i}@mail.example,,sl,," for i in range(5000)]
    rows[4500] = "P4500,,+38641000003,,,"  # a new phone, unknown so far
    rows[4600] = "P3b,P3@MAIL.example,+38641000003,,,urgent"  # joins row 4 by email, brings the phone of row 4502
    rows[4700] = ",p10@mail.example,+38641000010,,,"  # fills row 12's phone from far below
    path = tmp_path / "big.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    book = read_contacts([path])
    assert (book.read, book.valid, book.merged, len(book)) == (5000, 4998, 2, 4998)
    people = {c.name: c for c in book}
    assert people["P3"].tags == ("urgent",) and people["P3"].phone is None  # the phone stays with its first contact
    assert people["P4500"].phone == "+38641000003"
    assert people["P10"].phone == "+38641000010" and people["P10"].channels == {"email", "sms"}
    assert [(p.row, p.field) for p in book.problems] == [(4602, "phone"), (4602, "name")]
    assert [c.name for c in book][:3] == ["P0", "P1", "P2"]  # reading order is kept


def test_staging_file_is_private_and_removed_with_the_book(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(HEADER + "Ana,ana@mail.example,,,,\n", encoding="utf-8")
    book = read_contacts([path])
    folder = Path(book.staging.directory)
    assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o700"
    del book
    import gc

    gc.collect()
    assert not folder.exists()


def test_staging_left_by_a_killed_run_is_removed_by_the_next(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile as tf

    monkeypatch.setattr(tf, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f"broadcast-contacts-{int(dead.stdout)}-abc"
    left.mkdir()
    (left / "contacts.db").write_text("names and numbers")
    alive = tmp_path / f"broadcast-contacts-{os.getpid()}-def"
    alive.mkdir()
    path = tmp_path / "c.csv"
    path.write_text(HEADER + "Ana,ana@mail.example,,,,\n", encoding="utf-8")
    book = read_contacts([path])
    assert not left.exists() and alive.exists()
    assert Path(book.staging.directory).parent == tmp_path


def test_a_staging_disk_that_cannot_be_written_is_a_contacts_error_with_a_hint(tmp_path, monkeypatch):
    import tempfile as tf

    monkeypatch.setattr(tf, "tempdir", str(tmp_path / "missing" / "folder"))
    path = tmp_path / "c.csv"
    path.write_text(HEADER + "Ana,ana@mail.example,,,,\n", encoding="utf-8")
    with pytest.raises(ContactsError, match="cannot stage the contacts") as caught:
        read_contacts([path])
    assert "TMPDIR" in caught.value.hint


# -- a stray quote loses one row, not the rest of the file -------------------------------------------

ROWS = [f"Person {n},p{n}@mail.example,+38641{n:06d},sl,," for n in range(300)]


def read_text(tmp_path: Path, rows: list[str]) -> ContactBook:
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    book = read_contacts([path])
    assert book.read == book.valid + book.merged + book.rejected
    return book


STRAY_QUOTES = {
    "opening the first value": ['"' + ROWS[0], *ROWS[1:]],
    "opening the last value": [ROWS[0] + '"vip', *ROWS[1:]],
    "closed by a quoted value 30 rows on": [ROWS[0] + '"vip', *ROWS[1:30], ROWS[30] + '"a;b"', *ROWS[31:]],
    "closed by a quoted name on the next row": [ROWS[0] + '"vip', '"Novak, Ana",ana@mail.example,,sl,,', *ROWS[2:]],
}


@pytest.mark.parametrize("rows", STRAY_QUOTES.values(), ids=STRAY_QUOTES.keys())
def test_a_stray_quote_on_row_2_rejects_that_row_and_reads_the_other_299(tmp_path: Path, rows: list[str]) -> None:
    book = read_text(tmp_path, rows)
    assert where(book) == [(2, None, True)]
    assert "never closed" in book.problems[0].message and "rows after it were read" in book.problems[0].hint
    assert (book.read, book.valid, book.rejected) == (300, 299, 1)
    assert book.contacts[0].source.endswith(":3") and book.contacts[-1].source.endswith(":301")


def test_a_quote_never_closed_near_the_end_rejects_only_its_row(tmp_path: Path) -> None:
    book = read_text(tmp_path, [*ROWS[:9], '"' + ROWS[9], *ROWS[10:12]])
    assert where(book) == [(11, None, True)] and book.valid == 11


def test_a_quoted_value_with_line_breaks_is_still_one_row_beside_a_stray_quote(tmp_path: Path) -> None:
    book = read_text(tmp_path, ['"Ana\nNovak",ana@mail.example,,sl,,"staff;\nfield team"', '"' + ROWS[1], *ROWS[2:5]])
    assert where(book) == [(2, "name", False), (3, None, True)]
    assert book.contacts[0].name == "Ana Novak" and book.contacts[0].tags == ("staff", "field team")
    assert book.contacts[1].source.endswith(":4") and book.valid == 4


@pytest.mark.parametrize("phone", ["+386 4I 555 OIO", "+254 712 555 OII", "+1 202 555 0143 ext 12", "041 555 O10"])
def test_letters_in_a_phone_are_a_problem_never_a_keypad_digit(tmp_path: Path, phone: str) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + f"Ana,ana@mail.example,{phone},sl,,\n", encoding="utf-8")
    book = read_contacts([path], default_region="SI")
    assert where(book) == [(2, "phone", False)]
    assert "contains a letter" in book.problems[0].message
    assert book.contacts[0].phone is None and book.contacts[0].channels == {"email"}


# -- warnings say what the person loses --------------------------------------------------------------


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + text, encoding="utf-8")
    return path


def test_a_phone_without_country_code_says_the_person_gets_email_only(tmp_path: Path) -> None:
    book = read_contacts([write_csv(tmp_path, "Ana,ana@mail.example,0712 345 001,en,,\n")])
    assert book.problems[0].message == "gets email only: '0712 345 001' has no country code"
    assert book.problems[0].lost == "sms" and book.lost_channel == 1


def test_a_bad_phone_of_a_contact_who_asked_for_email_only_loses_nothing(tmp_path: Path) -> None:
    book = read_contacts([write_csv(tmp_path, "Ana,ana@mail.example,0712 345 001,en,email,\n")])
    assert book.problems[0].message == "'0712 345 001' has no country code"
    assert book.lost_channel == 0


def test_a_contact_who_asked_only_for_the_lost_channel_is_rejected_not_counted_twice(tmp_path: Path) -> None:
    book = read_contacts([write_csv(tmp_path, "Ana,ana@mail.example,0712 345 001,en,sms,\n")])
    assert where(book) == [(2, "phone", False), (2, "channels", True)]
    assert (book.rejected, book.lost_channel) == (1, 0)


def test_hints_give_an_example_number_from_the_region_in_effect(tmp_path: Path) -> None:
    book = read_contacts([write_csv(tmp_path, "Ana,ana@mail.example,0712 345,en,,\nBo,bo@mail.example,0712 345 OO1,en,,\n")],
                         default_region="KE")
    assert [problem.hint.split("e.g. ")[1] for problem in book.problems] == ["+254 712 123456", "+254 712 123456"]
    assert all("+386" not in problem.hint for problem in book.problems)


def test_a_number_with_its_own_country_code_gets_an_example_from_that_country(tmp_path: Path) -> None:
    book = read_contacts([write_csv(tmp_path, "Ana,ana@mail.example,+386 1 555 01,en,,\n")], default_region="KE")
    assert book.problems[0].message.endswith("is not a valid phone number for SI (+386)")
    assert book.problems[0].hint.endswith("e.g. +386 31 234 567")


def test_a_large_file_reads_its_phone_numbers_as_a_small_one_does(tmp_path: Path) -> None:
    """A file over 1 MiB has its phone numbers checked ahead in a second process: every answer (a valid number, a
    number without its country code, one too short, a landline asked to take SMS, a letter for a digit) and every
    row number must be what the same rows give in a small file, read in this process."""
    odd = [
        ("Ana Novak", "ana@mail.example", "0712 345 001", "sl", "email;sms"),
        ("Bo Short", "", "+44 12", "en", ""),
        ("Cy Landline", "cy@mail.example", "+44 20 7946 0000", "en", "sms;email"),
        ("Di Letter", "di@mail.example", "+386 4I 555 OIO", "sl", ""),
        ("Ed Mobile", "", "+254 712 345678", "sw", "sms"),
    ]
    rows = [(f"Person {i}", f"person{i}@mail.example", f"+4474{i:08d}", "en", "email;sms") for i in range(20_000)]
    at = {7: 0, 6_001: 1, 12_345: 2, 19_990: 3, 19_999: 4}
    for position, which in at.items():
        rows[position] = odd[which]
    big, small = tmp_path / "big.csv", tmp_path / "small.csv"
    for path, content in ((big, rows), (small, odd)):
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([HEADER.strip().split(","), *content])
    assert big.stat().st_size > 1 << 20
    large, few = read_contacts([big], default_region=None), read_contacts([small], default_region=None)
    assert large.read == 20_000 and large.merged == few.merged == 0
    # the same problems, at the rows the odd contacts stand on in each file
    row_in_big = {which + 2: position + 2 for position, which in at.items()}
    expected = [(row_in_big[p.row], p.field, p.message, p.hint, p.rejected, p.lost) for p in few.problems]
    assert [(p.row, p.field, p.message, p.hint, p.rejected, p.lost) for p in large.problems] == expected
    assert len(expected) == 4  # the valid Kenyan mobile has no problem
    picked = {c.name: c for c in large.contacts if c.name in {o[0] for o in odd}}
    assert {(c.name, c.phone, c.channels) for c in picked.values()} == {
        (c.name, c.phone, c.channels) for c in few.contacts
    }
    assert next(c for c in large.contacts if c.name == "Person 19998").phone == "+447400019998"
