"""Provider limits and hostile input at render time: X numbering, Twilio's body limit, long texts, the sandbox."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from twitter_text import parse_tweet

from broadcast.channels.x import XChannel
from broadcast.cli import main
from broadcast.text import split_thread, weighted_length

X_LIMIT = XChannel.max_post_weight
from tests.conftest import EXAMPLE, REPO


@pytest.fixture()
def custom_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(REPO / "templates", target)
    return target


def notice_with(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "notice.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def check(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


# -- X threads ----------------------------------------------------------------------------------


def numbered(posts: tuple[str, ...]) -> bool:
    return [re.search(r" \((\d+)/(\d+)\)$", p).groups() for p in posts] == [  # type: ignore[union-attr]
        (str(i), str(len(posts))) for i in range(1, len(posts) + 1)
    ]


def test_thread_of_over_a_hundred_posts_keeps_every_post_within_280_with_its_number() -> None:
    # six-letter words fill a post to the last character before its number, and the numbers have 3 digits
    text = " ".join(["boiled", "filter", "street", "supply"] * 1200)
    posts = split_thread(text, X_LIMIT)
    assert len(posts) >= 100 and numbered(posts)
    assert max(parse_tweet(p).weightedLength for p in posts) <= 280
    # nothing lost or reordered: the words come back in order
    words = [w for p in posts for w in re.sub(r" \(\d+/\d+\)$", "", p).split()]
    assert words == text.split()


@pytest.mark.parametrize(
    "text",
    ["plain words", "see lakeside-water.com/x and https://example.com/a.b now.", "a\r\nb\r\n", "x.y", "end.", ""],
)
def test_weighted_length_of_ascii_text_is_what_twitter_text_counts(text: str) -> None:
    assert weighted_length(text) == parse_tweet(text).weightedLength


def test_long_social_text_splits_in_time_proportional_to_its_length() -> None:
    # re-measuring each growing post made a 100 KB headline take a minute and a 1 MB one several
    text = "Boil your tap water before use. " * 12_000  # 384 KB
    started = time.monotonic()
    posts = split_thread(text, X_LIMIT)
    assert time.monotonic() - started < 20
    assert max(weighted_length(p) for p in posts) <= 280


# -- Twilio's body limit ------------------------------------------------------------------------

LONG_SUMMARY = "Boil tap water for one minute before drinking, cooking or brushing teeth. " * 28  # ~2,050 characters


def test_check_refuses_an_sms_over_twilios_1600_characters_whatever_the_segment_limit(tmp_path: Path) -> None:
    from broadcast.channels.twilio import TwilioChannel

    notice = notice_with(tmp_path, '  en: "E. coli found in the north zone.', f'  en: "{LONG_SUMMARY}E. coli found in the north zone.')
    code, output = check(notice, "--max-sms-segments", "20")
    assert code == 2
    assert f"longer than Twilio's limit of {TwilioChannel.max_body:,} characters" in output
    assert "sms (en)" in output and "sms (sl)" not in output
    assert "--max-sms-segments cannot raise this limit" in output and "Traceback" not in output


def test_live_send_of_an_sms_over_1600_characters_sends_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.conftest import CONTACTS
    from tests.fakes import TwilioFake
    from tests.fakes.fixtures import use_fakes

    notice = notice_with(tmp_path, '  en: "E. coli found in the north zone.', f'  en: "{LONG_SUMMARY}E. coli found in the north zone.')
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    with TwilioFake() as twilio:
        use_fakes(monkeypatch, twilio=twilio)
        result = CliRunner().invoke(
            main, ["send", str(notice), "--contacts", str(CONTACTS), "--channel", "sms", "--max-sms-segments", "20", "--yes"]
        )
        assert result.exit_code == 2, result.output
        assert twilio.requests == []
    assert "longer than Twilio's limit of 1,600 characters" in result.output


def test_a_name_that_pushes_one_sms_over_1600_characters_fails_that_message_unsent() -> None:
    from broadcast.channels.twilio import SmsSettings, TwilioChannel
    from broadcast.config import Secret
    from broadcast.message import Message, Rendering
    from tests.fakes import TwilioFake, credentials

    text = "x" * (TwilioChannel.max_body - 10) + " %%name%%"
    with TwilioFake() as twilio:
        settings = SmsSettings(
            account_sid=Secret(credentials.TWILIO_ACCOUNT_SID), auth_token=Secret(credentials.TWILIO_AUTH_TOKEN),
            sender=credentials.TWILIO_FROM, messaging_service_sid=None, status_callback=None, base_url=twilio.url,
        )
        rendering = Rendering("sms", "en", text=text)
        messages = [
            Message("n", "sms", "v1", f"+3864100000{i}", "en", rendering, fields={"name": name})
            for i, name in enumerate(["Ana", "Ana-Marija Novak Kovačič"])
        ]
        with TwilioChannel(settings) as adapter:
            short, long = adapter.send(messages)
        assert short.status == "sent" and long.status == "failed"
        assert "over Twilio's limit of 1,600" in (long.reason or "") and "Kovačič" not in (long.reason or "")
        assert [r.body["To"] for r in twilio.requests if r.method == "POST"] == ["+38641000000"]


# -- contact fields in HTML ---------------------------------------------------------------------

HOSTILE_NAME = '<img src=x onerror="alert(1)">'


def hostile_contacts(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_text(f"name,email,language\n\"{HOSTILE_NAME.replace(chr(34), chr(34) * 2)}\",ana@example.com,en\n", encoding="utf-8")
    return path


def use_in_email_html(templates: Path, expression: str) -> None:
    body = templates / "email" / "body.html.j2"
    text = body.read_text(encoding="utf-8")
    assert "{{ contact.name }}" in text
    body.write_text(text.replace("{{ contact.name }}", expression), encoding="utf-8")


def test_a_filtered_contact_name_still_reaches_sendgrid_html_escaped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, custom_templates: Path
) -> None:
    from tests.fakes import SendGridFake
    from tests.fakes.fixtures import use_fakes

    use_in_email_html(custom_templates, "{{ contact.name | trim }}")
    assert check(EXAMPLE, "--templates", custom_templates)[0] == 0
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    with SendGridFake() as sendgrid:
        use_fakes(monkeypatch, sendgrid=sendgrid)
        result = CliRunner().invoke(
            main, ["send", str(EXAMPLE), "--contacts", str(hostile_contacts(tmp_path)), "--channel", "email",
                   "--templates", str(custom_templates), "--yes"],
        )
        assert result.exit_code == 0, result.output
        [mail] = [r.body for r in sendgrid.requests if r.method == "POST"]
    html_part = next(c["value"] for c in mail["content"] if c["type"] == "text/html")
    subs = mail["personalizations"][0]["substitutions"]
    # the HTML part names the field only by its HTML token, whose value is escaped
    assert "%%name%%" not in html_part and "%%name:html%%" in html_part
    assert subs["%%name:html%%"] == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"


def test_outbox_fills_a_filtered_contact_name_escaped_in_html(tmp_path: Path, custom_templates: Path) -> None:
    from broadcast.message import Message
    from broadcast.notice import load_notice
    from broadcast.render import Templates, render_notice

    use_in_email_html(custom_templates, "{{ contact.name | trim }}")
    rendering = render_notice(load_notice(EXAMPLE), Templates(custom_templates), channels=["email"]).get("email", "en")
    message = Message("n", "email", "v1", "ana@example.com", "en", rendering, fields={"name": HOSTILE_NAME})
    assert HOSTILE_NAME not in message.personal().html and "&lt;img" in message.personal().html


@pytest.mark.parametrize("expression", ["{{ contact.name | upper }}", "{{ contact.name[:3] }}", "{{ contact.name | replace('%', '') }}"])
def test_check_fails_a_template_that_changes_the_contact_name(custom_templates: Path, expression: str) -> None:
    use_in_email_html(custom_templates, expression)
    code, output = check(EXAMPLE, "--templates", custom_templates)
    assert code == 2 and "Traceback" not in output
    assert "body.html.j2" in output and "changes or tests contact.name" in output
    assert "{{ contact.name }}" in output  # what to write instead


# -- the sandbox's limits -----------------------------------------------------------------------


def break_sms(templates: Path, body: str) -> Path:
    (templates / "sms.txt.j2").write_text(body, encoding="utf-8")
    return templates / "sms.txt.j2"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{{ notice.headline }}\n{{ "x" * 3000000000 }}\n', "repeats a value"),
        ("{{ notice.headline }}\n{{ 10 ** 100000000 }}\n", "to the power"),
        ("{{ notice.headline }}\n{% for i in range(100000) %}{% for j in range(100000) %}{{ notice.headline }}{% endfor %}{% endfor %}\n",
         "more than 1,000,000 characters"),
        ('{{ notice.headline }}\n{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(1) }}\n', "calls itself"),
        ('{{ notice.headline }}\n{% include "sms.txt.j2" %}\n', "calls itself"),
    ],
    ids=["repeat", "power", "nested-loops-output", "recursive-macro", "self-include"],
)
def test_a_runaway_template_is_an_input_error_at_its_line(custom_templates: Path, body: str, words: str) -> None:
    path = break_sms(custom_templates, body)
    code, output = check(EXAMPLE, "--templates", custom_templates)
    assert code == 2, output
    assert words in output and "Traceback" not in output
    assert f"{path}, row 2" in output and "Hint:" in output


def test_a_template_that_loops_without_writing_stops_at_the_time_limit(
    monkeypatch: pytest.MonkeyPatch, custom_templates: Path
) -> None:
    import broadcast.render

    monkeypatch.setattr(broadcast.render, "MAX_RENDER_SECONDS", 0.5)
    path = break_sms(
        custom_templates,
        "{{ notice.headline }}\n{% for i in range(100000) %}{% for j in range(100000) %}{% if notice.id == 'x' %}x{% endif %}"
        "{% endfor %}{% endfor %}\n",
    )
    started = time.monotonic()
    code, output = check(EXAMPLE, "--templates", custom_templates)
    assert code == 2 and "ran for more than 0.5 seconds" in output and f"{path}, row 2" in output
    assert time.monotonic() - started < 30


def test_an_include_outside_the_templates_folder_says_so(custom_templates: Path) -> None:
    path = break_sms(custom_templates, '{{ notice.headline }}\n{% include "../../../etc/passwd" %}\n')
    code, output = check(EXAMPLE, "--templates", custom_templates)
    assert code == 2 and "outside the templates folder" in output and "missing" not in output
    assert f"{path}, row 2" in output


# -- blank labels -------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ['" "', '"\\u200b"', '"\\u00a0\\ufeff\\t"'], ids=["space", "zero-width-space", "nbsp-bom-tab"])
def test_a_blank_label_is_borrowed_from_english_and_reported(custom_templates: Path, blank: str) -> None:
    sl = custom_templates / "labels" / "sl.yaml"
    sl.write_text(sl.read_text(encoding="utf-8").replace("updated: Posodobitev", f"updated: {blank}"), encoding="utf-8")
    code, output = check(EXAMPLE, "--templates", custom_templates)
    assert code == 0 and "labels/sl.yaml: label 'updated' missing, shown in en" in output
    assert check(EXAMPLE, "--templates", custom_templates, "--strict")[0] == 2
