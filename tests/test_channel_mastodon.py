"""The Mastodon adapter, driven through the real Mastodon.py client against the local Mastodon fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from broadcast.channels import REGISTRY, live_channel
from broadcast.channels.mastodon import MastodonChannel, MastodonSettings, split_statuses, status_length
from broadcast.cli import main
from broadcast.config import Secret, channel_settings
from broadcast.errors import ChannelError, ConfigError
from broadcast.message import Message, Rendering
from broadcast.send import deliver
from tests.fakes.fixtures import use_fakes
from tests.fakes.mastodon import MastodonFake


def settings(fake: MastodonFake, **wrong: str) -> MastodonSettings:
    return MastodonSettings(wrong.get("url", fake.url), Secret(wrong.get("token", fake.access_token)))


def message(*posts: str, lang: str = "en", version: str = "v1", reply_to: str | None = None) -> Message:
    rendering = Rendering(channel="mastodon", language=lang, posts=posts)
    return Message(notice_id="notice-1", channel="mastodon", version=version, recipient=f"mastodon:{lang}",
                   language=lang, rendering=rendering, reply_to=reply_to)


def thread_of(n: int, lang: str = "en") -> Message:
    return message(*(f"Water advisory in {lang}, part {i} ({i}/{n})" for i in range(1, n + 1)), lang=lang)


def chain(fake: MastodonFake) -> list[str | None]:
    return [d.payload["in_reply_to_id"] for d in fake.deliveries]


@pytest.fixture
def channel(mastodon_fake: MastodonFake) -> Iterator[MastodonChannel]:
    with MastodonChannel(settings(mastodon_fake)) as opened:
        yield opened  # type: ignore[misc]
    assert mastodon_fake.invalid == []


def test_thread_is_chained_public_with_its_language_and_a_key_per_post(channel: MastodonChannel, mastodon_fake: MastodonFake) -> None:
    [receipt] = channel.send([thread_of(3, "sw")])
    ids = [d.payload["id"] for d in mastodon_fake.deliveries]
    assert receipt.status == "sent" and receipt.thread == tuple(ids) and receipt.provider_id == ids[0]
    assert chain(mastodon_fake) == [None, *ids[:-1]]
    assert {d.payload["visibility"] for d in mastodon_fake.deliveries} == {"public"}
    assert {d.payload["language"] for d in mastodon_fake.deliveries} == {"sw"}
    keys = [d.payload["idempotency_key"] for d in mastodon_fake.deliveries]
    assert len(set(keys)) == 3 and all(keys)


def test_a_retry_after_a_lost_answer_posts_nothing_twice(mastodon_fake: MastodonFake) -> None:
    with MastodonChannel(settings(mastodon_fake), timeout=0.5) as channel:
        channel.send([])  # nothing to post: reads nothing
        channel._instance_limit()  # the instance is read; the next request is post 1
        mastodon_fake.script(["drop_after"])  # post 1 is made, its answer lost
        outcome = deliver([thread_of(2)], {"mastodon": channel})
    assert outcome.counts["mastodon"] == {"sent": 1}
    assert len(mastodon_fake.statuses) == 2 and mastodon_fake.duplicates() == {} and mastodon_fake.invalid == []


def test_a_rerun_after_a_crash_mid_thread_resumes_without_duplicates(mastodon_fake: MastodonFake) -> None:
    whole = thread_of(4)
    # the run that crashed after posts 1-2: the same message, its first two posts, same keys
    crashed = message(*whole.rendering.posts[:2])
    with MastodonChannel(settings(mastodon_fake)) as channel:
        channel.send([crashed])
    with MastodonChannel(settings(mastodon_fake)) as channel:
        [receipt] = channel.send([whole])
    ids = [d.payload["id"] for d in mastodon_fake.deliveries]
    assert [d.recipient for d in mastodon_fake.deliveries] == list(whole.rendering.posts)
    assert chain(mastodon_fake) == [None, *ids[:-1]] and receipt.thread == tuple(ids) and len(ids) == 4


def test_an_update_replies_to_the_previous_thread(channel: MastodonChannel, mastodon_fake: MastodonFake) -> None:
    [first] = channel.send([thread_of(2)])
    [update] = channel.send([message("UPDATE: boil water (1/1)", version="v2", reply_to=first.thread[-1])])
    assert mastodon_fake.deliveries[-1].payload["in_reply_to_id"] == first.thread[-1]
    assert update.reason.startswith(f"in reply to {first.thread[-1]}")


def test_a_post_over_the_instance_limit_is_refused_before_anything_is_posted() -> None:
    with MastodonFake(max_characters=100) as fake, MastodonChannel(settings(fake)) as channel:
        [receipt] = channel.send([message("short (1/2)", "x" * 150 + " (2/2)")])
    assert receipt.status == "failed" and "over this instance's limit of 100" in receipt.reason
    assert fake.deliveries == []


def test_links_count_23_and_threads_keep_within_500() -> None:
    text = "\n\n".join(f"Paragraph {i}: boil water. Details https://example.org/{'a' * 60}/{i}" for i in range(30))
    posts = split_statuses(text, 500)
    assert len(posts) > 1 and all(status_length(p) <= 500 for p in posts)
    assert status_length("see https://example.org/" + "a" * 100) == 4 + 23


def test_bad_token_stops_the_channel_naming_the_variable(mastodon_fake: MastodonFake) -> None:
    with MastodonChannel(settings(mastodon_fake, token="wrong-mastodon-token-0123")) as channel:
        with pytest.raises(ChannelError) as stopped:
            channel.send([thread_of(1)])
    assert "401" in stopped.value.message and "MASTODON_ACCESS_TOKEN" in stopped.value.hint
    assert "wrong-mastodon-token-0123" not in stopped.value.message + stopped.value.hint


def test_wrong_instance_url_stops_the_channel_naming_the_variable(mastodon_fake: MastodonFake) -> None:
    with MastodonChannel(settings(mastodon_fake, url=mastodon_fake.url + "/not-mastodon")) as channel:
        with pytest.raises(ChannelError) as stopped:
            channel.send([thread_of(1)])
    assert "MASTODON_API_BASE_URL" in stopped.value.message and mastodon_fake.deliveries == []


def test_an_instance_that_cannot_be_reached_stops_the_channel_naming_the_variable() -> None:
    with MastodonChannel(MastodonSettings("http://127.0.0.1:9", Secret("t" * 20))) as channel:
        with pytest.raises(ChannelError) as stopped:
            channel.send([thread_of(1)])
    assert "MASTODON_API_BASE_URL=http://127.0.0.1:9 cannot be reached" in stopped.value.message
    assert "MASTODON_API_BASE_URL" in stopped.value.hint


def test_settings_name_what_is_missing() -> None:
    with pytest.raises(ConfigError) as missing:
        channel_settings([MastodonChannel], env={})
    assert "MASTODON_API_BASE_URL" in missing.value.message and "MASTODON_ACCESS_TOKEN" in missing.value.message
    with pytest.raises(ConfigError) as bad:
        channel_settings([MastodonChannel], env={"MASTODON_API_BASE_URL": "mastodon.social", "MASTODON_ACCESS_TOKEN": "t" * 20})
    assert "MASTODON_API_BASE_URL" in bad.value.message


def test_withdraw_deletes_the_thread(channel: MastodonChannel, mastodon_fake: MastodonFake) -> None:
    [sent] = channel.send([thread_of(2)])
    [gone] = channel.withdraw([replace(thread_of(2), posted=sent.thread)], "cancelled")
    assert gone.status == "sent" and mastodon_fake.deleted == list(sent.thread) and mastodon_fake.statuses == {}


# -- end to end --------------------------------------------------------------------------------

BANK = Path(__file__).resolve().parent / "data" / "notices" / "bank-breach.yaml"
PEOPLE = "name,email,phone,language\nAnn,ann@mail.example,+447911123401,en\n"


@pytest.fixture
def bank(monkeypatch: pytest.MonkeyPatch, mastodon_fake: MastodonFake, tmp_path: Path) -> tuple[Path, Path]:
    """The en/sw/sl bank notice, posting in all three languages, a ledger of the test's own, and the fake's variables."""
    # the registry line, as the lead adds it to broadcast/channels/__init__.py (a no-op once it is there)
    monkeypatch.setitem(REGISTRY, MastodonChannel.name, MastodonChannel)
    use_fakes(monkeypatch, mastodon=mastodon_fake)
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    notice = tmp_path / "bank.yaml"
    notice.write_text(BANK.read_text(encoding="utf-8") + "social:\n  languages: [en, sw, sl]\n", encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    return notice, people


def send(notice: Path, people: Path, *extra: str) -> Any:
    args = ["send", str(notice), "--contacts", str(people), "--channel", "mastodon", "--yes", "--json", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_posts_each_language_once_naming_every_support_channel_and_a_rerun_posts_nothing(
    bank: tuple[Path, Path], mastodon_fake: MastodonFake
) -> None:
    result = send(*bank)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["channels"]["mastodon"]
    notice = yaml.safe_load(bank[0].read_text(encoding="utf-8"))
    roots = [d.payload["language"] for d in mastodon_fake.deliveries if d.payload["in_reply_to_id"] is None]
    assert sorted(roots) == ["en", "sl", "sw"] and summary["sent"] == 3
    for language in roots:
        text = "\n".join(d.recipient for d in mastodon_fake.deliveries if d.payload["language"] == language)
        assert all(channel["contact"] in text for channel in notice["channels"]), language
        assert notice["headline"][language] in text
    assert mastodon_fake.duplicates() == {} and mastodon_fake.invalid == []
    posted = len(mastodon_fake.deliveries)
    again = send(*bank)
    assert again.exit_code == 0 and len(mastodon_fake.deliveries) == posted
    assert json.loads(again.stdout)["channels"]["mastodon"]["sent"] == 0


def test_cli_an_edited_notice_replies_to_the_previous_thread(bank: tuple[Path, Path], mastodon_fake: MastodonFake) -> None:
    notice, people = bank
    assert send(notice, people).exit_code == 0
    last = {lang: [d.payload["id"] for d in mastodon_fake.deliveries if d.payload["language"] == lang][-1] for lang in ("en", "sw", "sl")}
    before = len(mastodon_fake.deliveries)
    text = notice.read_text(encoding="utf-8")
    summary = yaml.safe_load(text)["summary"]["en"]
    notice.write_text(text.replace(summary, summary + " New: cards are replaced for free.", 1), encoding="utf-8")
    assert send(notice, people).exit_code == 0
    update = mastodon_fake.deliveries[before:]
    assert update and update[0].payload["in_reply_to_id"] == last["en"] and update[0].recipient.startswith("UPDATE: ")
    assert {d.payload["language"] for d in update} == {"en"}


def test_cli_bad_token_is_a_clear_error_without_a_traceback(
    bank: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, mastodon_fake: MastodonFake
) -> None:
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "wrong-mastodon-secret-token-0123")
    result = send(*bank)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "401" in json.loads(result.stdout)["stopped"]["mastodon"]
    assert "wrong-mastodon-secret-token-0123" not in result.output and mastodon_fake.statuses == {}


def test_registry_builds_the_adapter(monkeypatch: pytest.MonkeyPatch, mastodon_fake: MastodonFake) -> None:
    monkeypatch.setitem(REGISTRY, MastodonChannel.name, MastodonChannel)
    use_fakes(monkeypatch, mastodon=mastodon_fake)
    adapter = live_channel("mastodon", channel_settings([MastodonChannel])["mastodon"])
    assert isinstance(adapter, MastodonChannel) and mastodon_fake.access_token not in repr(adapter)


def test_a_lost_thread_is_posted_again_only_while_the_instance_keeps_its_idempotency_keys(mastodon_fake: MastodonFake) -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    recent, old = thread_of(2, "en"), thread_of(2, "sw")
    with MastodonChannel(settings(mastodon_fake)) as channel:
        fresh, stale = channel.reconcile([(recent, now - timedelta(minutes=5)), (old, now - timedelta(minutes=55))])
    assert fresh.status == "retry" and "continues the thread" in fresh.reason
    # 55 minutes ago is inside Mastodon's hour but not by the 10 minutes a thread may take to post
    assert stale.status == "unknown" and "--retry-unknown" in stale.reason
    assert mastodon_fake.requests == []  # deciding asks the instance nothing
