"""Security, end to end: secrets never leak, dry-runs never touch the network, notice text is inert, nothing goes out by accident.

The secret scan runs every command with --verbose against the fakes and then reads every byte broadcast wrote:
stdout, stderr (where --verbose logs), the ledger database and its WAL, the preview and outbox folders and the web
banners. Each test prints its figures (run with ``-s`` to read them).
"""

from __future__ import annotations

import base64
import html
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.conftest import EXAMPLE
from tests.fakes import SendGridFake, TwilioFake, XFake, credentials
from tests.fakes.fixtures import use_fakes
from tests.fakes.server import RecordedRequest, Reply

BAD_TEMPLATES = Path(__file__).parent / "data" / "bad" / "templates"
CONTACTS = (
    "name,email,phone,language,channels,tags\n"
    "Ana Novak,ana@mail.example,+38641555010,sl,,\n"
    "Wanjiru Kamau,wanjiru@mail.example,+254712555011,sw,,\n"
    ",oliver@mail.example,+447911000012,en,,\n"
)
#: the example's Slovenian SMS is 9 segments; these tests are not about length
LONG_SMS = ("--max-sms-segments", "10")

#: what must never appear: the fake credentials, plus the identifiers config.py also treats as secret,
#: and the HTTP Basic form a logged Twilio request header would carry
NEEDLES = (
    *credentials.SECRETS,
    credentials.TWILIO_ACCOUNT_SID,
    credentials.X_CONSUMER_KEY,
    base64.b64encode(f"{credentials.TWILIO_ACCOUNT_SID}:{credentials.TWILIO_AUTH_TOKEN}".encode()).decode(),
)


def figures(title: str, **values: object) -> None:
    print(f"\n[figures] {title}: " + json.dumps(values, sort_keys=True, default=str))


def run(*args: object, input: str | None = None) -> Any:  # noqa: A002
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def leaks(data: str | bytes) -> list[str]:
    """The secrets found in ``data``, raw or as UTF-8/UTF-16 bytes (SQLite may store text either way)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    found = []
    for needle in NEEDLES:
        if any(form in raw for form in (needle.encode(), needle.encode("utf-16-le"), needle.encode("utf-16-be"))):
            found.append(needle)
    return found


def files_under(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file())


# -- 6. secrets ---------------------------------------------------------------------------------------


class _EchoesCredentials:
    """A provider that quotes the credential it was given back in its 401, as some APIs and proxies do."""

    presented = ""

    def authorized(self, request: RecordedRequest) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            header = base64.b64decode(header[6:]).decode(errors="replace")
        type(self).presented = header
        return super().authorized(request)  # type: ignore[misc]

    def unauthorized_reply(self) -> Reply:
        reply = super().unauthorized_reply()  # type: ignore[misc]
        body = reply.body
        text = f"invalid credentials: {type(self).presented}"
        if "errors" in body:
            body["errors"][0]["message"] = text
        elif "detail" in body:
            body["detail"] = text
        else:
            body["message"] = text
        return reply


class EchoingSendGrid(_EchoesCredentials, SendGridFake):
    pass


class EchoingTwilio(_EchoesCredentials, TwilioFake):
    pass


class EchoingX(_EchoesCredentials, XFake):
    pass


@pytest.fixture()
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[SendGridFake, TwilioFake, XFake]]:
    with SendGridFake() as sendgrid, TwilioFake() as twilio, XFake() as x:
        use_fakes(monkeypatch, sendgrid=sendgrid, twilio=twilio, x=x)
        monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
        monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'state' / 'ledger.db'}")
        monkeypatch.setenv("BROADCAST_WEB_DIR", str(tmp_path / "web"))
        (tmp_path / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
        yield sendgrid, twilio, x


def test_no_command_leaks_a_secret_anywhere(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    contacts = tmp_path / "contacts.csv"
    outputs: dict[str, tuple[int, str, str]] = {}

    def command(name: str, *args: object, expect: tuple[int, ...]) -> None:
        result = run("--verbose", *args)
        assert result.exit_code in expect, f"{name}: {result.output}"
        outputs[name] = (result.exit_code, result.stdout, result.stderr)

    command("check", "check", EXAMPLE, *LONG_SMS, expect=(0,))
    command("preview", "preview", EXAMPLE, "--contacts", contacts, "--out", tmp_path / "preview", *LONG_SMS, expect=(0,))
    command("send --dry-run", "send", EXAMPLE, "--contacts", contacts, "--dry-run", "--out", tmp_path / "outbox",
            *LONG_SMS, expect=(0,))
    command("send (live)", "send", EXAMPLE, "--contacts", contacts, "--yes", *LONG_SMS, expect=(0,))
    command("send --json (live, nothing new)", "send", EXAMPLE, "--contacts", contacts, "--yes", "--json", *LONG_SMS,
            expect=(0,))
    command("status", "status", EXAMPLE, expect=(0,))
    command("status --json", "status", "boil-water-2026-03", "--json", expect=(0,))

    # the providers now refuse these credentials and quote them back in their errors
    with EchoingSendGrid(api_key="SG.other") as sendgrid, EchoingTwilio(auth_token="other-token-0") as twilio, \
            EchoingX(consumer_secret="other-secret") as x:
        use_fakes(monkeypatch, sendgrid=sendgrid, twilio=twilio, x=x)
        for key, value in (("SENDGRID_API_KEY", credentials.SENDGRID_API_KEY),
                           ("TWILIO_AUTH_TOKEN", credentials.TWILIO_AUTH_TOKEN),
                           ("X_CONSUMER_SECRET", credentials.X_CONSUMER_SECRET)):
            monkeypatch.setenv(key, value)
        edited = tmp_path / "edited.yaml"
        edited.write_text(EXAMPLE.read_text(encoding="utf-8").replace("Boil your tap water", "Still boil your tap water"),
                          encoding="utf-8")
        command("send (wrong credentials)", "send", edited, "--contacts", contacts, "--yes", *LONG_SMS, expect=(1,))
        command("send --json (wrong credentials)", "send", edited, "--contacts", contacts, "--yes", "--json", *LONG_SMS,
                expect=(1,))
        # the providers did quote the secrets back, and broadcast passed their words on (masked)
        echoed = [f.presented for f in (EchoingSendGrid, EchoingTwilio, EchoingX)]
        assert all(any(secret in quoted for secret in NEEDLES) for quoted in echoed), echoed
        assert outputs["send (wrong credentials)"][1].count("invalid credentials: ") >= 2
        assert [len(f.deliveries) for f in (sendgrid, twilio, x)] == [0, 0, 0]

    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    monkeypatch.delenv("X_ACCESS_TOKEN_SECRET")
    command("send (missing credentials)", "send", edited, "--contacts", contacts, "--yes", *LONG_SMS, expect=(2,))
    assert "TWILIO_AUTH_TOKEN" in outputs["send (missing credentials)"][2]

    # a bug in a template is exit 3 with a traceback under --verbose; that too is masked
    command("send (internal error)", "send", edited, "--contacts", contacts, "--yes", "--templates",
            _templates_with(tmp_path, BAD_TEMPLATES / "divide_by_zero"), *LONG_SMS, expect=(2, 3))

    found: dict[str, list[str]] = {}
    places = 0
    for name, (_, stdout, stderr) in outputs.items():
        for stream, text in (("stdout", stdout), ("stderr", stderr)):
            places += 1
            if leaks(text):
                found[f"{name} {stream}"] = leaks(text)
    written = [p for p in files_under(tmp_path) if p.name != "contacts.csv" and "templates" not in p.parts]
    for path in written:
        places += 1
        if leaks(path.read_bytes()):
            found[str(path.relative_to(tmp_path))] = leaks(path.read_bytes())
    ledger_files = [p.name for p in (tmp_path / "state").iterdir()]
    assert "ledger.db" in ledger_files and any(p.parts[-2] == "web" for p in written)
    assert any("preview" in p.parts for p in written) and any("outbox" in p.parts for p in written)
    assert found == {}
    figures(
        "secrets",
        commands=len(outputs),
        streams_scanned=2 * len(outputs),
        files_scanned=len(written),
        ledger_files=sorted(ledger_files),
        places_scanned=places,
        secrets_looked_for=len(NEEDLES),
        occurrences=0,
    )


def _templates_with(tmp_path: Path, case: Path) -> Path:
    """templates/ with a bad-input case laid over it (see tests/test_bad_input.py)."""
    from tests.test_bad_input import _templates

    folder = tmp_path / "templates" / case.name
    return _templates(case, folder)


# -- 7. injection: notice text is inert in every channel ------------------------------------------------

PAYLOADS = ("<script>alert(1)</script>", "{{ 7*7 }}", "{% raw %}", "{{ notice.__class__ }}")


def _injected_notice(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, payload in (
        ("  en: Boil your tap water", "  en: 'Boil your tap water <script>alert(1)</script>'"),
        ('  en: "E. coli found in the north zone.', '  en: "{{ 7*7 }} {% raw %} E. coli found in the north zone.'),
        ("{en: Emergency line,", "{en: 'Emergency line {{ notice.__class__ }} <b>',"),
        ("  name: Lakeside Water", "  name: 'Lakeside Water <i>{{ 7*7 }}</i>'"),
    ):
        assert old in text, old
        text = text.replace(old, payload, 1)
    path = tmp_path / "injected.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _substituted(content: str, substitutions: dict[str, str]) -> str:
    """What SendGrid makes of a content value: every substitution key replaced by its value."""
    for key, value in substitutions.items():
        content = content.replace(key, value)
    return content


def test_notice_text_is_escaped_in_html_and_literal_everywhere(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, twilio, x = fakes
    notice = _injected_notice(tmp_path)
    contacts = tmp_path / "people.csv"
    contacts.write_text(
        'name,email,phone,language\n"<img src=x onerror=alert(2)> {{ 7*7 }}",ana@mail.example,+447911000010,en\n',
        encoding="utf-8",
    )
    preview = run("preview", notice, "--contacts", contacts, "--out", tmp_path / "preview", *LONG_SMS)
    assert preview.exit_code == 0, preview.output
    result = run("send", notice, "--contacts", contacts, "--yes", "--json", *LONG_SMS)
    assert result.exit_code == 0, result.output

    mail = next(r.body for r in sendgrid.requests if r.method == "POST")
    html_part = next(c["value"] for c in mail["content"] if c["type"] == "text/html")
    text_part = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
    html_parts = {
        "email html": _substituted(html_part, mail["personalizations"][0].get("substitutions", {})),
        "web banner": (tmp_path / "web" / "banner.en.html").read_text(encoding="utf-8"),
        "preview email": (tmp_path / "preview" / "email" / "en.html").read_text(encoding="utf-8"),
        "preview web": (tmp_path / "preview" / "web" / "en.html").read_text(encoding="utf-8"),
    }
    text_parts = {
        "email text": _substituted(text_part, mail["personalizations"][0].get("substitutions", {})),
        "email subject": mail["subject"],
        "sms": twilio.deliveries[0].payload["body"],
        "x": "\n".join(d.recipient for d in x.deliveries),
    }
    for where, content in html_parts.items():
        for tag in ("<script", "<img", "<b>", "<i>"):
            assert tag not in content, f"{where}: {tag}"
        assert html.escape("<script>alert(1)</script>", quote=False) in content, where
    # the template syntax in notice text did not run: every channel shows exactly what the author typed
    for where, content in {**html_parts, **text_parts}.items():
        unescaped = html.unescape(content)
        assert "<class" not in unescaped and "LocalNotice" not in unescaped, where
        if where != "email subject":
            assert "{{ 7*7 }} {% raw %} E. coli" in unescaped, where
    assert "Boil your tap water <script>alert(1)</script>" in text_parts["email subject"]
    assert "Lakeside Water <i>{{ 7*7 }}</i>" in text_parts["sms"]
    banner = json.loads((tmp_path / "web" / "banner.json").read_text(encoding="utf-8"))
    assert banner["languages"]["en"]["headline"] == "Boil your tap water <script>alert(1)</script>"  # data, not markup


def test_notice_text_cannot_smuggle_a_raw_contact_name_into_html(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, _, _ = fakes
    notice = tmp_path / "dear.yaml"
    notice.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace('  en: "E. coli found', '  en: "Dear %%name%%, E. coli found', 1),
        encoding="utf-8",
    )
    contacts = tmp_path / "people.csv"
    contacts.write_text('name,email,language\n"<script>alert(3)</script>",ana@mail.example,en\n', encoding="utf-8")
    result = run("send", notice, "--contacts", contacts, "--channel", "email,web", "--yes")
    if result.exit_code == 2:  # refusing the token in notice text is as good as making it inert
        assert "summary" in result.output and "Hint:" in result.output and sendgrid.requests == []
        return
    assert result.exit_code == 0, result.output
    mail = sendgrid.requests[0].body
    html_part = next(c["value"] for c in mail["content"] if c["type"] == "text/html")
    assert "<script>alert(3)" not in _substituted(html_part, mail["personalizations"][0]["substitutions"])


TEMPLATE_ATTACKS = [
    pytest.param("python_class_walk", id="__class__.__mro__"),
    pytest.param("python_globals", id="cycler.__init__.__globals__"),
    pytest.param("python_mutation", id="list.append"),
    pytest.param("python_format_attribute", id="str.format attribute"),
    pytest.param(
        "fmt_reaches_environ", id="fmt filter",
    ),
]


@pytest.mark.parametrize("case", TEMPLATE_ATTACKS)
def test_a_template_reaching_for_python_internals_is_refused(case: str, fakes, tmp_path: Path) -> None:  # noqa: ANN001
    folder = _templates_with(tmp_path, BAD_TEMPLATES / case)
    result = run("preview", EXAMPLE, "--contacts", tmp_path / "contacts.csv", "--templates", folder,
                 "--out", tmp_path / "preview", *LONG_SMS)
    assert result.exit_code == 2, result.output
    assert "sandbox" in result.output and "sms.txt.j2" in result.output and "Hint:" in result.output
    assert "Traceback" not in result.output
    written = list(files_under(tmp_path / "preview")) if (tmp_path / "preview").exists() else []
    assert not any(leaks(p.read_bytes()) for p in written)


# -- 5. a dry-run never opens a socket --------------------------------------------------------------------


class _NoNetwork(Exception):
    pass


@pytest.mark.parametrize("command", ["preview", "send --dry-run"])
def test_a_dry_run_opens_no_socket(command: str, fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    # credentials and provider addresses are set, so a dry-run that meant to send could
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        attempts = _block_sockets(patch)
        result = run(*command.split(), EXAMPLE, "--contacts", tmp_path / "contacts.csv", "--out", out, *LONG_SMS)
    assert result.exit_code == 0, result.output
    assert attempts == []
    assert [len(f.requests) for f in fakes] == [0, 0, 0]
    assert (out / "plan.csv").is_file() and not (tmp_path / "web").exists()


def _block_sockets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every new socket and connection raises; returns the attempts, which must stay empty."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args)[:80])
        raise _NoNetwork("a dry-run tried to open a socket")

    class Refused(socket.socket):
        def __init__(self, *args: object, **kwargs: object) -> None:
            refuse(*args, **kwargs)

    monkeypatch.setattr(socket, "socket", Refused)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


# -- 8. no accidental blast -------------------------------------------------------------------------------


@pytest.mark.parametrize("stdin", [None, "y\n"], ids=["no input", "piped yes"])
def test_a_live_send_without_yes_in_a_pipe_sends_nothing(stdin: str | None, fakes, tmp_path: Path) -> None:  # noqa: ANN001
    result = run("send", EXAMPLE, "--contacts", tmp_path / "contacts.csv", *LONG_SMS, input=stdin)
    assert result.exit_code != 0 and "--yes" in result.output and "nothing was sent" in result.output
    assert [len(f.requests) for f in fakes] == [0, 0, 0]
    assert not (tmp_path / "web").exists()


@pytest.mark.parametrize(
    ("channels", "quiet"),
    [("sms", ("sendgrid", "x", "web")), ("email,web", ("twilio", "x")), ("social", ("sendgrid", "twilio", "web"))],
)
def test_channel_limits_what_is_sent(channels: str, quiet: tuple[str, ...], fakes, tmp_path: Path) -> None:  # noqa: ANN001
    result = run("send", EXAMPLE, "--contacts", tmp_path / "contacts.csv", "--channel", channels, "--yes", *LONG_SMS)
    assert result.exit_code == 0, result.output
    by_name = dict(zip(("sendgrid", "twilio", "x"), fakes, strict=True))
    for name, fake in by_name.items():
        assert (len(fake.requests) == 0) == (name in quiet), name
    assert (tmp_path / "web").exists() == ("web" not in quiet)


def test_an_emergency_notice_still_honours_suppressions_and_stop_replies(fakes, tmp_path: Path) -> None:  # noqa: ANN001
    """The issue allows an emergency to reach opted-out people only when the notice says so; without that, never."""
    sendgrid, twilio, _ = fakes
    folder = tmp_path / "lists"
    folder.mkdir()
    contacts = folder / "people.csv"
    contacts.write_text(CONTACTS, encoding="utf-8")
    (folder / "suppressions.csv").write_text("email,phone\nana@mail.example,\n,+254 712 555 011\n", encoding="utf-8")
    twilio.unsubscribed.add("+447911000012")  # replies STOP on the first send
    first = run("send", EXAMPLE, "--contacts", contacts, "--channel", "email,sms", "--yes", "--json", *LONG_SMS)
    assert first.exit_code == 1, first.output  # the STOP is a failed send, listed
    emergency = tmp_path / "emergency.yaml"
    emergency.write_text(EXAMPLE.read_text(encoding="utf-8").replace("severity: urgent", "severity: emergency"),
                         encoding="utf-8")
    twilio.unsubscribed.clear()
    second = run("send", emergency, "--contacts", contacts, "--channel", "email,sms", "--yes", "--json", *LONG_SMS)
    assert second.exit_code == 0, second.output
    data = json.loads(second.stdout)
    emailed, texted = sendgrid.delivery_counts(), twilio.delivery_counts()
    assert emailed["ana@mail.example"] == 0 and texted["+254712555011"] == 0 and texted["+447911000012"] == 0
    assert emailed["wanjiru@mail.example"] == 2 and texted["+38641555010"] == 2  # everyone else got the update
    assert data["channels"]["email"]["skipped_reasons"] == {"suppressed": 1}
    assert data["channels"]["sms"]["skipped_reasons"] == {"suppressed": 2}
    # the notice says so: the unsubscribed email address gets the emergency, SMS STOP and listed phones still hold
    opted_in = tmp_path / "override.yaml"
    opted_in.write_text(
        emergency.read_text(encoding="utf-8").replace("severity: emergency", "severity: emergency\noverride_suppressions: true"),
        encoding="utf-8",
    )
    third = run("send", opted_in, "--contacts", contacts, "--channel", "email,sms", "--yes", "--json", *LONG_SMS)
    assert third.exit_code == 0, third.output
    data = json.loads(third.stdout)
    emailed, texted = sendgrid.delivery_counts(), twilio.delivery_counts()
    assert emailed["ana@mail.example"] == 1 and texted["+254712555011"] == 0 and texted["+447911000012"] == 0
    assert data["channels"]["email"]["sent"] == 1 and data["channels"]["email"]["overridden_suppressions"] == 1
    assert data["channels"]["sms"]["skipped_reasons"] == {"suppressed": 2, "already sent": 1} and data["channels"]["sms"]["sent"] == 0
    assert "email: override_suppressions: 1 recipient(s) who unsubscribed get this emergency notice" in data["warnings"]


# -- 6b. secrets in the shapes a paste or a proxy gives them ------------------------------------------------

#: the example's key, split by the line break a paste from a wrapped terminal leaves in it
BROKEN_KEY = "SG.fake-sendgrid-secret\nkey.0123456789"
PROXY_PASSWORD = "proxy-pass-0123456"


def _scan(tmp_path: Path, result: Any, needles: tuple[str, ...]) -> dict[str, list[str]]:
    """Where each needle (raw, or escaped as repr() writes it) shows up: stdout, stderr, every file written."""
    forms = {form for needle in needles for form in (needle, repr(needle)[1:-1])}
    places = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
    places.update({str(p.relative_to(tmp_path)): p.read_bytes() for p in files_under(tmp_path) if p.name != "contacts.csv"})
    return {where: [f for f in forms if f.encode() in data] for where, data in places.items() if any(f.encode() in data for f in forms)}


@pytest.mark.usefixtures("restore_logging")
def test_a_key_with_a_line_break_is_refused_by_name_and_never_shown(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, _, _ = fakes
    monkeypatch.setenv("SENDGRID_API_KEY", BROKEN_KEY)
    result = run("--verbose", "send", EXAMPLE, "--contacts", tmp_path / "contacts.csv", "--channel", "email", "--yes", *LONG_SMS)
    assert result.exit_code == 2, result.output
    assert "SENDGRID_API_KEY contains a line break" in result.stderr and "Hint:" in result.stderr
    assert "SENDGRID_API_HOST" not in result.output  # the host is fine; the key is not
    assert _scan(tmp_path, result, tuple(BROKEN_KEY.split("\n"))) == {}
    assert sendgrid.requests == []


@pytest.mark.usefixtures("restore_logging")
def test_a_proxy_password_in_a_host_url_is_masked_in_output_and_ledger(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    sendgrid, _, _ = fakes
    host = sendgrid.url.replace("://", f"://relay:{PROXY_PASSWORD}@")
    monkeypatch.setenv("SENDGRID_API_HOST", host)
    result = run("--verbose", "send", EXAMPLE, "--contacts", tmp_path / "contacts.csv", "--channel", "email", "--yes", *LONG_SMS)
    assert result.exit_code in (0, 1), result.output
    assert _scan(tmp_path, result, (PROXY_PASSWORD,)) == {}
    assert (tmp_path / "state" / "ledger.db").is_file()
