"""Team chat through Apprise: one staff post per chat URL, retried per chat, against a local Slack-style webhook."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.notice import load_notice
from tests.conftest import CONTACTS, STORM
from tests.fakes.fixtures import use_fakes
from tests.fakes.team import SlackWebhookFake

SLACK = SlackWebhookFake.slack_path("ops")
MATTERMOST = "/hooks/staffroomhook123456"


@pytest.fixture
def chats(monkeypatch: pytest.MonkeyPatch, team_fake: SlackWebhookFake, tmp_path: Path) -> SlackWebhookFake:
    """Two chats on the receiver, a Slack workspace and a Mattermost one, and a ledger of the test's own."""
    use_fakes(monkeypatch, team=team_fake)
    urls = f"{team_fake.slack_url('ops')}, {team_fake.mattermost_url(MATTERMOST.rsplit('/', 1)[1])}"
    monkeypatch.setenv("BROADCAST_TEAM_URLS", urls)
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("BROADCAST_NO_WAIT", "1")
    return team_fake


def send(*extra: str) -> Any:
    return CliRunner().invoke(
        main, ["send", str(STORM), "--contacts", str(CONTACTS), "--channel", "team", "--yes", "--force", *extra],
        catch_exceptions=False,
    )


def posts(fake: SlackWebhookFake) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for delivery in fake.deliveries:
        text = delivery.payload.get("text") or json.dumps(delivery.payload.get("attachments"), ensure_ascii=False)
        out.setdefault(delivery.recipient, []).append(text)
    return out


def test_each_chat_gets_one_staff_post_in_the_default_language_naming_every_support_channel(chats: SlackWebhookFake) -> None:
    sent = send("--json")
    assert sent.exit_code == 0, sent.output
    # each chat is a recipient of its own: two chats, one language
    assert json.loads(sent.stdout)["channels"]["team"]["sent"] == 2
    got = posts(chats)
    assert sorted(got) == sorted([SLACK, MATTERMOST]) and all(len(texts) == 1 for texts in got.values())
    assert chats.invalid == []
    notice = load_notice(STORM)
    for texts in got.values():
        text = texts[0]
        assert notice.headline[notice.default_language] in text
        for channel in notice.channels:
            assert channel.contact in text, channel.id
        # the routing table: each need beside the channel that handles it
        assert "Where to send people" in text
    # a re-run posts nothing: the ledger has the message
    again = send("--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["channels"]["team"]["skipped"] == 2
    assert len(chats.deliveries) == 2


def test_a_chat_that_failed_is_retried_without_posting_to_the_others_again(chats: SlackWebhookFake) -> None:
    chats.script([503])  # the first request (to Slack) gets a server error; Mattermost takes its post
    sent = send("--json")
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout)["channels"]["team"]["sent"] == 2
    paths = [r.path for r in chats.requests]
    assert paths.count(SLACK) == 2 and paths.count(MATTERMOST) == 1, paths
    assert {p: len(t) for p, t in posts(chats).items()} == {SLACK: 1, MATTERMOST: 1}


def test_a_chat_still_down_at_the_end_of_a_run_is_the_only_one_the_next_run_posts_to(chats: SlackWebhookFake) -> None:
    chats.refused[SLACK] = 503  # Slack is down for the whole first run; Mattermost takes its post
    first = send("--json")
    assert json.loads(first.stdout)["channels"]["team"]["sent"] == 1, first.output
    assert list(posts(chats)) == [MATTERMOST]
    del chats.refused[SLACK]  # Slack is back
    chats.reset()
    second = send("--json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["channels"]["team"]["sent"] == 1
    assert json.loads(second.stdout)["channels"]["team"]["skipped"] == 1
    assert list(posts(chats)) == [SLACK]


def test_the_ledger_names_each_chat_without_its_token(chats: SlackWebhookFake, tmp_path: Path) -> None:
    assert send().exit_code == 0
    with closing(sqlite3.connect(tmp_path / "ledger.db")) as db:
        recipients = sorted(r for (r,) in db.execute("SELECT recipient FROM deliveries"))
        stored = "\n".join(db.iterdump())
    assert [r.rsplit("-", 1)[0] for r in recipients] == ["team:en:mmost", "team:en:slack"], recipients
    for token in ("TOPS0001", "BOPS0002", "secretopstoken0003", "staffroomhook123456"):
        assert token not in stored


def test_a_chat_that_refuses_fails_with_apprises_reason_and_no_token(chats: SlackWebhookFake) -> None:
    chats.refused[SLACK] = 410  # Slack: channel_is_archived
    sent = send()
    assert re.search(r"team\s+planned 2, sent 1, skipped 0, failed 1", sent.stdout), sent.output
    assert "BROADCAST_TEAM_URLS entry 1 (slack://…)" in sent.output and "410" in sent.output
    for token in ("TOPS0001", "BOPS0002", "secretopstoken0003", "staffroomhook123456"):
        assert token not in sent.output
    assert list(posts(chats)) == [MATTERMOST]
    # a failed message is not sent again by a re-run: Mattermost does not get the post twice
    send()
    assert len(posts(chats)[MATTERMOST]) == 1


def test_an_apprise_url_it_cannot_use_stops_the_send_naming_the_entry(chats: SlackWebhookFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_TEAM_URLS", f"{chats.slack_url('ops')} slack://only-one-token-here nonsense")
    refused = send()
    assert refused.exit_code == 2, refused.output
    assert "BROADCAST_TEAM_URLS entry 2 (slack://…) is not an Apprise URL it can use" in refused.stderr
    assert "BROADCAST_TEAM_URLS entry 3 (no scheme) is not a URL" in refused.stderr
    assert "only-one-token-here" not in refused.output and "secretopstoken0003" not in refused.output
    assert "Nothing was sent" in refused.stderr
    assert chats.requests == []


def test_without_team_urls_a_send_on_team_chat_stops_before_anything(chats: SlackWebhookFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROADCAST_TEAM_URLS")
    refused = send()
    assert refused.exit_code == 2
    assert "team: BROADCAST_TEAM_URLS" in refused.stderr
    assert chats.requests == []


def test_the_preview_shows_the_staff_post_once_in_the_default_language(tmp_path: Path) -> None:
    out = tmp_path / "preview"
    previewed = CliRunner().invoke(
        main, ["preview", str(STORM), "--contacts", str(CONTACTS), "--out", str(out), "--json", "--force",
               "--channel", "email,sms,social,web,team"],
        catch_exceptions=False,
    )
    assert previewed.exit_code == 0, previewed.output
    assert json.loads(previewed.stdout)["channels"]["team"]["languages"] == {"en": 1}
    text = (out / "team" / "en.txt").read_text(encoding="utf-8")
    assert text.startswith("EMERGENCY: Power cuts after the storm") or "Where to send people" in text
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="panel-team-en"' in page and "Team chat" in page
