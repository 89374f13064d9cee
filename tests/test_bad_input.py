"""Bad input, end to end: every file in tests/data/bad gets the documented exit code and a message a person can act on.

Exit 2 (bad input or configuration) names the file, the row or field, and a hint, never shows a traceback, and
sends nothing: all three provider fakes are running and must record zero requests. A messy contacts file is not
fatal (README, Contacts): exit 0, each problem named by file, row and field with a hint.

tests/data/bad/templates/<case>/ holds only the files a case changes; the test lays them over a copy of
templates/ (after deleting what <case>/_remove.txt lists). tests/data/bad/hazards/ holds inputs that must
never be loaded in the test process itself.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.channels import REGISTRY
from broadcast.cli import main
from tests.conftest import REPO
from tests.fakes import SendGridFake, TwilioFake, XFake
from tests.fakes.fixtures import use_fakes

BAD = Path(__file__).parent / "data" / "bad"
NOTICE = Path(__file__).parent / "data" / "notices" / "minimal.yaml"
GOOD_CONTACTS = "name,email,phone,language,channels,tags\nAna Novak,ana@mail.example,+386 41 555 010,sl,,\n"
#: the minimal notice's Slovenian SMS is 4 segments; length is not what these cases are about
LONG_SMS = ("--max-sms-segments", "10")


@dataclass(frozen=True)
class Case:
    """One bad input: its file under tests/data/bad, the exit code, and what the output must say."""

    path: str
    exit: int
    #: besides the file's name and a hint: the row, field or words that say what is wrong
    says: tuple[str, ...] = ()
    #: a known product bug: the case runs as a strict xfail with this reason
    bug: str | None = None
    #: for exit 0: whether the file has problems to report (then each needs a hint)
    warns: bool = True


NO_HINT = "the error has no hint"
RENDER_CRASH = "Templates.render_file does not catch ArithmeticError, so a template error is exit 3 'Internal error'"

CASES = [
    # -- notices: malformed YAML --------------------------------------------------------------------
    Case("notices/yaml_tab_indent.yaml", 2, ("line 9", "not valid YAML")),
    Case("notices/yaml_unclosed_quote.yaml", 2, ("line 5", "not valid YAML")),
    Case("notices/yaml_colon_in_text.yaml", 2, ("line 24", "quote texts that contain ': '")),
    Case("notices/yaml_two_documents.yaml", 2, ("line 24", "another document")),
    Case("notices/yaml_duplicate_key.yaml", 2, ("line 24", "field 'summary'", "lines 6 and 24")),
    Case("notices/yaml_value_does_not_fit_tag.yaml", 2, ("line 2", "YAML type tag", "!!tag")),
    Case("notices/empty.yaml", 2, ("empty",)),
    Case("notices/only_comments.yaml", 2, ("empty",)),
    Case("notices/top_level_list.yaml", 2, ("line 1", "mapping")),
    Case("notices/top_level_text.yaml", 2, ("line 1", "mapping")),
    Case("notices/binary.yaml", 2, ("not UTF-8",)),
    Case("notices/latin1.yaml", 2, ("not UTF-8", "byte")),
    # -- notices: wrong types and values ------------------------------------------------------------
    Case("notices/missing_id.yaml", 2, ("field 'id'", "required")),
    Case("notices/id_not_a_slug.yaml", 2, ("line 1", "field 'id'")),
    Case("notices/id_is_a_number.yaml", 2, ("line 1", "field 'id'")),
    Case("notices/organization_missing.yaml", 2, ("field 'organization'", "required")),
    Case("notices/languages_is_text.yaml", 2, ("line 3", "field 'languages'", "list")),
    Case("notices/languages_empty.yaml", 2, ("line 3", "field 'languages'")),
    Case("notices/languages_twice.yaml", 2, ("line 3", "field 'languages'", "twice")),
    Case("notices/language_not_a_code.yaml", 2, ("line 3", "field 'languages[0]'")),
    Case("notices/severity_unknown.yaml", 2, ("line 2", "field 'severity'", "catastrophic")),
    Case("notices/channels_is_text.yaml", 2, ("line 7", "field 'channels'")),
    Case("notices/channel_without_contact.yaml", 2, ("line 8", "field 'channels[0].contact'", "required")),
    Case("notices/channel_kind_unknown.yaml", 2, ("line 9", "field 'channels[0].kind'", "pigeon")),
    Case("notices/text_is_a_list.yaml", 2, ("line 5", "field 'headline'")),
    Case("notices/text_language_key_wrong.yaml", 2, ("line 5", "field 'headline'", "english")),
    Case("notices/empty_text.yaml", 2, ("line 5", "field 'headline.en'")),
    Case("notices/unknown_field.yaml", 2, ("line 5", "'hedline'", "unknown field")),
    Case("notices/resource_url_not_http.yaml", 2, ("line 26", "field 'resources[0].url'")),
    Case("notices/fallback_unknown.yaml", 2, ("line 24", "field 'fallback'", "maybe")),
    Case("notices/text_has_name_token.yaml", 2, ("line 6", "field 'summary.en'", "%%name%%", "{{ contact.name }}")),
    # -- notices: references and translations -------------------------------------------------------
    Case("notices/override_without_emergency.yaml", 2, ("line 3", "field 'override_suppressions'", "emergency")),
    Case("notices/routing_unknown_channel.yaml", 2, ("whatsapp", "line 20", "field 'routing[0].channel'")),
    Case("notices/channel_id_twice.yaml", 2, ("'hotline'", "line 13", "field 'channels[1].id'")),
    Case("notices/social_language_not_listed.yaml", 2, ("'de'", "line 25", "field 'social.languages'")),
    Case("notices/routing_empty.yaml", 2, ("line 18", "field 'routing'")),
    Case("notices/missing_translation.yaml", 2, ("line 6", "field 'summary'", "summary × sl", "fallback: default")),
    # -- templates ----------------------------------------------------------------------------------
    Case("templates/syntax_error", 2, ("sms.txt.j2", "row 18", "syntax error")),
    Case("templates/unclosed_tag", 2, ("subject.txt.j2", "row 1", "syntax error")),
    Case("templates/unknown_filter", 2, ("sms.txt.j2", "row 18", "shout")),
    Case("templates/unknown_variable", 2, ("sms.txt.j2", "row 18", "headlin")),
    Case("templates/unknown_label", 2, ("sms.txt.j2", "row 18", "no_such_label")),
    Case("templates/label_slot_missing", 2, ("nobody",)),
    Case("templates/label_catalog_bad_yaml", 2, ("labels/sl.yaml", "row 2", "not valid YAML")),
    Case("templates/label_catalog_is_a_list", 2, ("labels/sl.yaml", "mapping")),
    Case("templates/leaves_out_a_channel", 2, ("sms (en) leaves out hotline",)),
    Case("templates/template_missing", 2, ("social.txt.j2", "missing")),
    Case("templates/template_is_a_folder", 2, ("banner.html.j2",)),
    Case("templates/template_not_utf8", 2, ("subject.txt.j2", "utf-8")),
    Case("templates/python_class_walk", 2, ("sms.txt.j2", "row 18", "sandbox")),
    Case("templates/python_globals", 2, ("sms.txt.j2", "row 18", "sandbox")),
    Case("templates/python_mutation", 2, ("sms.txt.j2", "row 18", "sandbox")),
    Case("templates/python_format_attribute", 2, ("sms.txt.j2", "row 18", "sandbox")),
    Case("templates/fmt_reaches_environ", 2, ("sms.txt.j2", "row 18", "sandbox")),
    Case("templates/divide_by_zero", 2, ("sms.txt.j2", "row 18", "division")),
    Case("templates/huge_range", 2, ("sms.txt.j2", "row 18", "range")),
    # -- contacts: messy but readable (exit 0), as the README promises --------------------------------
    Case("contacts/bom.csv", 0, ("2 valid, 0 rejected",), warns=False),
    Case("contacts/semicolon.csv", 0, ("2 valid, 0 rejected",), warns=False),
    Case("contacts/tab.csv", 0, ("2 valid, 0 rejected",), warns=False),
    Case("contacts/quoted_commas.csv", 0, ("2 valid, 0 rejected",), warns=False),
    Case("contacts/blank_lines.csv", 0, ("2 read, 2 valid, 0 rejected",), warns=False),
    Case("contacts/spaces_and_crlf.csv", 0, ("2 valid, 0 rejected",), warns=False),
    Case("contacts/utf16.csv", 0, ("1 valid, 0 rejected",), warns=False),
    Case("contacts/nul_bytes.csv", 0, ("2 valid",), warns=False),
    Case("contacts/formula_injection.csv", 0, ("2 valid",), warns=False),
    Case("contacts/latin1.csv", 0, ("2 valid", "not UTF-8", "Windows-1252")),
    Case("contacts/bad_phones.csv", 2, ("2 of 4 contact rows (50%) were rejected", "row 2, field 'phone'", "row 4, field 'phone'")),
    Case("contacts/bad_emails.csv", 2, ("2 of 4 contact rows (50%) were rejected", "row 2, field 'email'", "row 4, field 'email'")),
    Case("contacts/duplicates.csv", 0, ("2 valid", "2 merged", "row 3, field 'name'", "row 4, field 'email'")),
    Case("contacts/huge_field.csv", 0, ("row 2, field 'name'", "5,000 characters", "row 3, field 'email'")),
    Case("contacts/phone_scientific.csv", 2, ("row 2, field 'phone'", "spreadsheet", "would not be reached")),
    Case("contacts/phone_without_country.csv", 2, ("row 2, field 'phone'", "--region", "would not be reached")),
    Case("contacts/unknown_channel.csv", 0, ("row 2, field 'channels'", "fax", "row 3, field 'channels'")),
    Case("contacts/bad_language.csv", 0, ("row 2, field 'language'",)),
    Case("contacts/shifted_columns.csv", 2, ("row 2", "double quotes", "would not be reached")),
    Case("contacts/unclosed_quote.csv", 2, ("row 2", "never closed", "would not be reached")),
    Case("contacts/asks_for_missing_channel.csv", 2, ("row 2, field 'channels'", "phone number", "would not be reached")),
    Case("contacts/only_bad_rows.csv", 2, ("2 of 2 contact rows (100%) were rejected", "row 2", "row 3")),
    Case("contacts/empty.csv", 0, ("is empty",)),
    Case("contacts/header_only.csv", 0, ("no contact rows",)),
    # -- contacts: not a contacts file at all (exit 2) -------------------------------------------------
    Case("contacts/no_address_column.csv", 2, ("row 1", "no 'email' or 'phone' column")),
    Case("contacts/no_header.csv", 2, ("row 1", "add a header row")),
    Case("contacts/spreadsheet.csv", 2, ("spreadsheet", "save it as CSV")),
    # -- credentials and configuration from --env-file (no credentials in the environment) ------------
    Case("env/empty.env", 2, ("SENDGRID_API_KEY", "TWILIO_AUTH_TOKEN", "X_BEARER_TOKEN")),
    Case("env/only_comments.env", 2, ("SENDGRID_API_KEY", "TWILIO_AUTH_TOKEN")),
    Case("env/blank_values.env", 2, ("SENDGRID_API_KEY", "BROADCAST_EMAIL_FROM", "TWILIO_AUTH_TOKEN")),
    Case("env/twilio_token_missing.env", 2, ("sms: TWILIO_AUTH_TOKEN",)),
    Case("env/twilio_two_senders.env", 2, ("not both",)),
    Case("env/sender_not_an_email.env", 2, ("BROADCAST_EMAIL_FROM", "not an email address")),
    Case("env/sendgrid_sender_missing.env", 2, ("email: BROADCAST_EMAIL_FROM",)),
    Case("env/x_half_oauth1.env", 2, ("social: X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET",)),
    Case("env/not_env_syntax.env", 2, ("SENDGRID_API_KEY", "TWILIO_AUTH_TOKEN")),
    Case("env/unterminated_quote.env", 2, ("email: SENDGRID_API_KEY",)),
    Case("env/bad_region.env", 2, ("'UK'", "GB")),
    Case("env/latin1.env", 2, ("latin1.env", "UTF-8")),
]


# -- situations made at run time: unreadable or misplaced files ----------------------------------------

@dataclass(frozen=True)
class Situation:
    """A live send where a path points at the wrong kind of thing: ``send NOTICE --contacts CONTACTS *options --yes``."""

    name: str
    options: tuple[str, ...]
    says: tuple[str, ...]
    bug: str | None = None
    notice: str = ""  # the minimal notice unless given
    contacts: str = "good.csv"
    before: tuple[str, ...] = ()  # options of the broadcast group itself

    def args(self) -> list[str]:
        notice = self.notice or str(NOTICE)
        return [*self.before, "send", notice, "--contacts", self.contacts, *self.options, *LONG_SMS, "--yes"]


LEDGER_CRASH = "Ledger.__init__ catches only ArgumentError/OperationalError/ModuleNotFoundError, so this is exit 3"
SITUATIONS = [
    Situation("notice is a folder", (), ("folder.yaml", "folder"), notice="folder.yaml"),
    Situation("notice not found", (), ("nowhere.yaml", "not found"), notice="nowhere.yaml"),
    Situation("contacts is a folder", (), ("folder.csv", "folder"), contacts="folder.csv"),
    Situation("contacts not found", (), ("nowhere.csv", "not found"), contacts="nowhere.csv"),
    Situation("suppressions is a folder", ("--suppressions", "folder.csv"), ("folder.csv", "folder")),
    Situation("templates is a file", ("--templates", "good.csv"), ("--templates", "good.csv", "is a file")),
    Situation("web dir is a file", ("--web-dir", "good.csv"), ("--web-dir", "good.csv", "is a file")),
    Situation("env file is a folder", (), ("--env-file", "folder.csv", "is a directory"), before=("--env-file", "folder.csv")),
    Situation("env file not found", (), ("nowhere.env", "not found"), before=("--env-file", "nowhere.env")),
    Situation("ledger is not a URL", ("--ledger", "nonsense"), ("not a database URL",)),
    Situation("ledger is a folder", ("--ledger", "sqlite:///folder.csv"), ("cannot open the ledger",)),
    Situation("ledger is not a database", ("--ledger", "sqlite:///good.csv"), ("cannot open the ledger",)),
    Situation("ledger folder is a file", ("--ledger", "sqlite:///good.csv/ledger.db"), ("cannot open the ledger",)),
    # an empty --channel once meant "every channel": email, SMS, 7 X posts and the banner went out
    *(
        Situation(f"empty channel list {value!r}", ("--channel", value), ("--channel", "email,sms,social,web"))
        for value in ("", ",", " ", ", ,")
    ),
]


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[SendGridFake, TwilioFake, XFake]]:
    with SendGridFake() as sendgrid, TwilioFake() as twilio, XFake() as x:
        yield sendgrid, twilio, x


@pytest.fixture()
def live(fakes: tuple[SendGridFake, TwilioFake, XFake], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: ANN201
    """The fakes reset, the environment pointing at them with credentials, and a good contacts file."""
    for fake in fakes:
        fake.reset()
    sendgrid, twilio, x = fakes
    use_fakes(monkeypatch, sendgrid=sendgrid, twilio=twilio, x=x)
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("BROADCAST_WEB_DIR", str(tmp_path / "web"))
    (tmp_path / "good.csv").write_text(GOOD_CONTACTS, encoding="utf-8")
    return fakes


def _templates(case: Path, into: Path) -> Path:
    shutil.copytree(REPO / "templates", into)
    remove = case / "_remove.txt"
    if remove.is_file():
        for name in remove.read_text(encoding="utf-8").split():
            (into / name).unlink()
    for source in case.rglob("*"):
        if source.is_file() and source != remove:
            target = into / source.relative_to(case)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return into


def _args(case: Case, path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    kind = case.path.split("/", 1)[0]
    good = str(tmp_path / "good.csv")
    if kind == "notices":
        return ["send", str(path), "--contacts", good, *LONG_SMS, "--yes"]
    if kind == "templates":
        folder = _templates(path, tmp_path / "templates")
        return ["send", str(NOTICE), "--contacts", good, "--templates", str(folder), *LONG_SMS, "--yes"]
    if kind == "contacts":
        return ["preview", str(NOTICE), "--contacts", str(path), *LONG_SMS]
    # env: credentials only from the file; the provider addresses still point at the fakes
    for name in (*(n for a in REGISTRY.values() for n in a.secrets), "TWILIO_FROM", "BROADCAST_EMAIL_FROM"):
        monkeypatch.delenv(name, raising=False)
    if path.name == "bad_region.env":  # needs no credentials to go wrong
        return ["--env-file", str(path), "preview", str(NOTICE), "--contacts", good, *LONG_SMS]
    return ["--env-file", str(path), "send", str(NOTICE), "--contacts", good, *LONG_SMS, "--yes"]


def _check(
    output: str, exception: BaseException | None, code: int, expected: int, says: tuple[str, ...], hint: bool
) -> None:
    """The exit code, no traceback, every expected fragment, and a hint (when asked)."""
    assert exception is None or isinstance(exception, SystemExit), f"uncaught {exception!r}\n{output}"
    assert "Traceback" not in output and "Internal error" not in output, output
    assert code == expected, output
    for words in says:
        assert words in output, f"{words!r} not in:\n{output}"
    if hint:
        # our own errors and warnings say "Hint:"; click's usage errors point to --help
        assert "Hint:" in output or "--help' for help" in output, output


def _nothing_sent(fakes: tuple[SendGridFake, TwilioFake, XFake], tmp_path: Path) -> None:
    assert [len(f.requests) for f in fakes] == [0, 0, 0]
    assert not (tmp_path / "web").exists()


def _param(case: Case) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []
    return pytest.param(case, id=case.path, marks=marks)


def test_the_corpus_has_a_case_for_every_file() -> None:
    files = {str(p.relative_to(BAD)) for kind in ("notices", "contacts", "env") for p in (BAD / kind).iterdir()}
    files |= {str(p.relative_to(BAD)) for p in (BAD / "templates").iterdir()}
    assert files == {case.path for case in CASES}
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_file(case: Case, live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path = BAD / case.path
    result = CliRunner().invoke(main, _args(case, path, tmp_path, monkeypatch))
    # a notice or contacts case names its file; a template case names the template inside (in ``says``),
    # and a credentials case the variables
    named = (path.name,) if case.path.startswith(("notices/", "contacts/")) or path.name == "latin1.env" else ()
    named = named if case.exit != 0 or case.warns else ()  # a clean file has nothing to report
    _check(result.output, result.exception, result.exit_code, case.exit, named + case.says, case.exit != 0 or case.warns)
    _nothing_sent(live, tmp_path)  # contacts cases are previews, which send nothing either


@pytest.mark.parametrize(
    "situation",
    [pytest.param(s, id=s.name, marks=[pytest.mark.xfail(strict=True, reason=s.bug)] if s.bug else []) for s in SITUATIONS],
)
def test_unreadable_or_misplaced_file(situation: Situation, live, tmp_path: Path) -> None:  # noqa: ANN001
    # permissions do not stop root, so "unreadable" here is a folder, a file or nothing where the other is expected
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "folder.csv").mkdir()
    result = CliRunner().invoke(main, situation.args())
    _check(result.output, result.exception, result.exit_code, 2, situation.says, True)
    _nothing_sent(live, tmp_path)


def test_a_yaml_alias_bomb_is_refused_quickly_and_in_little_memory(tmp_path: Path) -> None:
    """In a child with 400 MB of address space (a good notice needs under 300) and 20 s: the bug must not take the
    test run down with it."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (400 << 20, 400 << 20))

    try:
        result = subprocess.run(
            [sys.executable, "-m", "broadcast", "check", str(BAD / "hazards" / "alias_bomb.yaml")],
            capture_output=True, text=True, timeout=20, preexec_fn=limit, cwd=tmp_path,  # noqa: PLW1509
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    except subprocess.TimeoutExpired:
        pytest.fail("still loading the notice after 20 s")
    _check(result.stdout + result.stderr, None, result.returncode, 2, ("alias_bomb.yaml", "options"), True)


# -- notice rules added for issues 12 and 13: made at run time from the minimal notice ------------------------------

_MINIMAL = NOTICE.read_text(encoding="utf-8")
NOTICE_RULES = [
    # (name, old text, new text, what the output must say)
    ("short number", '"+386 1 555 0100"', '"+254 12"', ("line 11, field 'channels[0].contact'", "KE (+254)")),
    ("local number", '"+386 1 555 0100"', '"020 765 4321"', ("line 11, field 'channels[0].contact'", "region:")),
    ("bare wa.me", "contact: https://lakeside-water.example/portal", "contact: wa.me/254712345678",
     ("line 16, field 'channels[1].contact'", "https://wa.me/254712345678")),
    ("javascript website", "website: https://lakeside-water.example}", "website: 'javascript:alert(1)'}",
     ("line 4, field 'organization.website'", "javascript:")),
    ("data website", "website: https://lakeside-water.example}", "website: 'data:text/html,hi'}",
     ("line 4, field 'organization.website'", "data:")),
    ("blank headline", '{en: "Boil water before drinking"', '{en: "\u200b"', ("line 5, field 'headline.en'", "blank")),
    ("long language tag", "languages: [en, sl]", "languages: [en, " + "sl-" + "-".join(["abcdefgh"] * 30) + "]",
     ("line 3, field 'languages[1]'", "35 characters")),
]


@pytest.mark.parametrize(("old", "new", "says"), [pytest.param(o, n, s, id=i) for i, o, n, s in NOTICE_RULES])
def test_a_notice_breaking_a_rule_sends_nothing(old: str, new: str, says: tuple[str, ...], live, tmp_path: Path) -> None:  # noqa: ANN001
    assert old in _MINIMAL
    path = tmp_path / "notice.yaml"
    path.write_text(_MINIMAL.replace(old, new, 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["send", str(path), "--contacts", str(tmp_path / "good.csv"), *LONG_SMS, "--yes"])
    _check(result.output, result.exception, result.exit_code, 2, (str(path), *says), True)
    assert "row" not in result.output
    _nothing_sent(live, tmp_path)
