"""One live send with every channel on, to every provider's fake, for a notice in en/sw/sl.

Each channel's messages or posts arrive once, in the right language, naming every support channel; a re-run sends
nothing; a run killed mid-thread on Mastodon and Bluesky is resumed by the next one without a duplicate post.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from click.testing import CliRunner

from broadcast.cli import main
from tests.fakes.bluesky import BlueskyFake
from tests.fakes.fixtures import use_fakes
from tests.fakes.mastodon import MastodonFake
from tests.fakes.sendgrid import SendGridFake
from tests.fakes.team import SlackWebhookFake
from tests.fakes.twilio import TwilioFake
from tests.fakes.x import XFake
from tests.test_channel_voice import says

REPO = Path(__file__).resolve().parent.parent
BANK = REPO / "tests" / "data" / "notices" / "bank-breach.yaml"
LANGUAGES = ("en", "sw", "sl")
#: two contacts per language, on email and SMS; the first of each also asked to be called
PEOPLE = "name,email,phone,language,channels\n" + "".join(
    f"P{lang}{n},p{lang}{n}@mail.example,+2547125550{i}{n},{lang},email;sms{';voice' if n == 1 else ''}\n"
    for i, lang in enumerate(LANGUAGES) for n in (1, 2)
)
CHANNELS = ("email", "sms", "social", "web", "mastodon", "bluesky", "team", "voice")


class Every(NamedTuple):
    sendgrid: SendGridFake
    twilio: TwilioFake
    x: XFake
    mastodon: MastodonFake
    bluesky: BlueskyFake
    team: SlackWebhookFake
    notice: Path
    people: Path
    web: Path


@pytest.fixture
def every(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sendgrid_fake: SendGridFake, twilio_fake: TwilioFake,
    x_fake: XFake, mastodon_fake: MastodonFake, bluesky_fake: BlueskyFake, team_fake: SlackWebhookFake,
) -> Every:
    use_fakes(monkeypatch, sendgrid=sendgrid_fake, twilio=twilio_fake, x=x_fake, mastodon=mastodon_fake,
              bluesky=bluesky_fake, team=team_fake)
    monkeypatch.setenv("BROADCAST_TEAM_URLS", f"{team_fake.slack_url('ops')} {team_fake.slack_url('comms')}")
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("BROADCAST_NO_WAIT", "1")
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@jamiibank.example")
    notice = tmp_path / "bank.yaml"
    notice.write_text(BANK.read_text(encoding="utf-8") + "social:\n  languages: [en, sw, sl]\n", encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    return Every(sendgrid_fake, twilio_fake, x_fake, mastodon_fake, bluesky_fake, team_fake, notice, people,
                 tmp_path / "www")


def send(every: Every, channels: tuple[str, ...] = CHANNELS) -> dict[str, Any]:
    args = ["send", str(every.notice), "--contacts", str(every.people), "--channel", ",".join(channels),
            "--web-dir", str(every.web), "--yes", "--json"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def seen(every: Every) -> dict[str, list[tuple[str, str]]]:
    """What each fake holds, per channel: one (language, full text) per message, a thread's posts joined."""
    notice = yaml.safe_load(every.notice.read_text(encoding="utf-8"))
    language_of = {row.split(",")[1]: row.split(",")[3] for row in PEOPLE.splitlines()[1:]}
    language_of.update({row.split(",")[2]: row.split(",")[3] for row in PEOPLE.splitlines()[1:]})
    sms = [(language_of[d.recipient], d.payload["body"]) for d in every.twilio.deliveries]
    email = [(language_of[d.recipient], d.payload["text"]) for d in every.sendgrid.deliveries]

    def threads(deliveries: list[Any], parent: str, key: str, language: Any) -> list[tuple[str, str]]:
        roots: dict[str, list[Any]] = {}
        owner: dict[str, str] = {}
        for d in deliveries:
            up = d.payload[parent]
            root = owner[up] if up else d.payload[key]
            owner[d.payload[key]] = root
            roots.setdefault(root, []).append(d)
        return [(language(posts[0]), "\n".join(p.recipient for p in posts)) for posts in roots.values()]

    headline = {v: k for k, v in notice["headline"].items()}
    x = threads(every.x.deliveries, "in_reply_to_tweet_id", "id",
                lambda d: next(lang for text, lang in headline.items() if text in d.recipient))
    mastodon = threads(every.mastodon.deliveries, "in_reply_to_id", "id", lambda d: d.payload["language"])
    bluesky = threads(every.bluesky.deliveries, "parent", "uri", lambda d: d.payload["record"]["langs"][0])
    team = [("en", json.dumps(d.payload, ensure_ascii=False)) for d in every.team.deliveries]
    # a call is in the language its <Say> elements are read in, by the contact's language
    voice = []
    for call in every.twilio.calls:
        _, spoken = says(call["twiml"])
        voice.append((language_of[call["to"]], " ".join(text for _, _, text in spoken), spoken[0][0]))
    web = [(p.name.split(".")[1], p.read_text(encoding="utf-8")) for p in sorted(every.web.glob("banner.*.html"))]
    return {"email": email, "sms": sms, "social": x, "web": web, "mastodon": mastodon, "bluesky": bluesky,
            "team": team, "voice": [(lang, text) for lang, text, _ in voice], "voice read in": voice}


def table(summary: dict[str, Any], at_fakes: dict[str, list[tuple[str, str]]]) -> str:
    lines = ["| channel | planned | sent | seen at the fake | languages seen |", "|---|---|---|---|---|"]
    for channel in CHANNELS:
        row = summary["channels"][channel]
        if channel == "voice":
            read_in = Counter(f"{lang}→{spoken[:2]}" for lang, _, spoken in at_fakes["voice read in"])
            languages = read_in
            lines.append(f"| {channel} | {row['planned']} | {row['sent']} | {len(at_fakes[channel])} | "
                         f"{', '.join(f'{k} {v}' for k, v in sorted(languages.items()))} |")
            continue
        languages = Counter(lang for lang, _ in at_fakes[channel])
        lines.append(f"| {channel} | {row['planned']} | {row['sent']} | {len(at_fakes[channel])} | "
                     f"{', '.join(f'{k} {v}' for k, v in sorted(languages.items()))} |")
    return "\n".join(lines)


def test_every_channel_sends_once_in_each_language_naming_every_support_channel_and_a_rerun_sends_nothing(
    every: Every, request: pytest.FixtureRequest
) -> None:
    summary = send(every)
    at_fakes = seen(every)
    if request.config.getoption("capture") == "no":  # pytest -s prints the table of planned, sent and seen
        print("\n" + table(summary, at_fakes))
    notice = yaml.safe_load(every.notice.read_text(encoding="utf-8"))
    expected = {"email": 6, "sms": 6, "social": 3, "web": 3, "mastodon": 3, "bluesky": 3, "team": 2, "voice": 3}
    for channel, n in expected.items():
        row = summary["channels"][channel]
        assert row["planned"] == row["sent"] == len(at_fakes[channel]) == n, (channel, row, len(at_fakes[channel]))
    # Twilio has no Swahili or Slovenian voice: those contacts are called in English, and the report says so
    assert sorted((lang, read_in[:2]) for lang, _, read_in in at_fakes.pop("voice read in")) == [
        ("en", "en"), ("sl", "en"), ("sw", "en")]
    for channel, messages in at_fakes.items():
        languages = Counter(lang for lang, _ in messages)
        if channel == "team":
            assert languages == {"en": 2}  # staff read the notice's first language
        else:
            assert set(languages) == set(LANGUAGES) and len(set(languages.values())) == 1, (channel, languages)
        for lang, text in messages:
            lang = "en" if channel == "voice" else lang
            # the headline in the message's own language, and how to reach every support channel
            assert notice["headline"][lang] in text or json.dumps(notice["headline"][lang])[1:-1] in text, (channel, lang)
            for support in notice["channels"]:
                # an SMS writes a link without its https:// to save characters
                assert support["contact"].removeprefix("https://") in text, (channel, lang, support["id"])
    fakes = (every.sendgrid, every.twilio, every.x, every.mastodon, every.bluesky, every.team)
    assert all(f.duplicates() == {} and f.invalid == [] for f in fakes)

    posted = [len(f.deliveries) for f in fakes] + [len(every.twilio.calls)]
    again = send(every)
    assert [len(f.deliveries) for f in fakes] + [len(every.twilio.calls)] == posted
    assert all(again["channels"][c]["sent"] == 0 for c in CHANNELS), again["channels"]


def _killed_mid_thread(every: Every, tmp_path: Path) -> None:
    """A `broadcast send` on Mastodon and Bluesky, killed with SIGKILL while each fake holds its third post: two
    posts of a thread are up, and the run that made them is gone without a word to its ledger."""
    held = {"mastodon": every.mastodon, "bluesky": every.bluesky}
    every.mastodon.hold_nth("POST", "/api/v1/statuses", 3)
    every.bluesky.hold_nth("POST", "/com.atproto.repo.createRecord", 3)
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "broadcast", "send", str(every.notice), "--contacts", str(every.people),
             "--channel", "mastodon,bluesky", "--yes", "--json"],
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out, stderr=out, cwd=tmp_path,
        )
        deadline = time.monotonic() + 60
        while not all(f.holding for f in held.values()) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, log.read_text(errors="replace")
        assert all(f.holding for f in held.values()), "the run did not reach a third post in time"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    for fake in held.values():
        fake.release()


def test_a_send_killed_mid_thread_on_mastodon_and_bluesky_is_resumed_without_a_duplicate_post(
    every: Every, tmp_path: Path
) -> None:
    _killed_mid_thread(every, tmp_path)
    assert len(every.mastodon.deliveries) == 2 and len(every.bluesky.deliveries) == 2
    summary = send(every, ("mastodon", "bluesky"))
    # 3 languages × 3 Mastodon posts and × 5 Bluesky posts: each post once, the two from the killed run included
    for channel, fake, posts in (("mastodon", every.mastodon, 9), ("bluesky", every.bluesky, 15)):
        assert summary["channels"][channel]["sent"] == 3, json.dumps(summary["channels"], indent=1)
        texts = [d.recipient for d in fake.deliveries]
        assert len(texts) == posts and len(set(texts)) == posts, (channel, texts)
        assert fake.duplicates() == {} and fake.invalid == []
    # the killed thread went on from its second post: every thread is one unbroken chain of replies
    at_fakes = seen(every)
    assert sorted(lang for lang, _ in at_fakes["mastodon"]) == sorted(LANGUAGES)
    assert sorted(lang for lang, _ in at_fakes["bluesky"]) == sorted(LANGUAGES)
    again = send(every, ("mastodon", "bluesky"))
    assert again["channels"]["mastodon"]["sent"] == again["channels"]["bluesky"]["sent"] == 0
