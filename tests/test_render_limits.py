"""Provider limits and hostile input at render time: X numbering, Twilio's body limit, long texts, the sandbox."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from twitter_text import parse_tweet

from broadcast.cli import main
from broadcast.render import split_thread, weighted_length
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
    posts = split_thread(text)
    assert len(posts) >= 100 and numbered(posts)
    assert max(parse_tweet(p).weightedLength for p in posts) <= 280
    # nothing lost or reordered: the words come back in order
    words = [w for p in posts for w in re.sub(r" \(\d+/\d+\)$", "", p).split()]
    assert words == text.split()


def test_thread_numbering_fits_with_links_and_wide_characters() -> None:
    sentence = "Vodo prekuhajte 沸かす 😀 more at https://lakeside-water.com/boil/notice/2026 now."
    posts = split_thread(" ".join([sentence] * 400))
    assert len(posts) >= 100 and numbered(posts)
    assert max(parse_tweet(p).weightedLength for p in posts) <= 280


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
    posts = split_thread(text)
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
    from broadcast.channels.base import Message, Rendering
    from broadcast.channels.twilio import TwilioChannel
    from broadcast.config import Secret, SmsSettings
    from tests.fakes import TwilioFake, credentials

    text = "x" * (TwilioChannel.max_body - 10) + " %%name%%"
    with TwilioFake() as twilio:
        settings = SmsSettings(
            account_sid=Secret(credentials.TWILIO_ACCOUNT_SID), auth_token=Secret(credentials.TWILIO_AUTH_TOKEN),
            sender=credentials.TWILIO_FROM, messaging_service_sid=None, status_callback=None, base_url=twilio.url,
        )
        rendering = Rendering("sms", "en", text=text)
        messages = [
            Message(f"n:sms:+3864100000{i}", "sms", f"+3864100000{i}", "en", rendering, fields={"name": name})
            for i, name in enumerate(["Ana", "Ana-Marija Novak Kovačič"])
        ]
        with TwilioChannel(settings) as adapter:
            short, long = adapter.send(messages)
        assert short.status == "sent" and long.status == "failed"
        assert "over Twilio's limit of 1,600" in (long.reason or "") and "Kovačič" not in (long.reason or "")
        assert [r.body["To"] for r in twilio.requests if r.method == "POST"] == ["+38641000000"]
