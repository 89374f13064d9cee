"""The Bluesky adapter, driven through the real atproto client against the local PDS fake (lexicon-validated)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from broadcast.channels import REGISTRY
from broadcast.channels.bluesky import BlueskyChannel, BlueskySettings, split_posts
from broadcast.cli import main
from broadcast.config import Secret, channel_settings
from broadcast.errors import ChannelError, ConfigError
from broadcast.message import Message, Rendering
from broadcast.send import deliver
from tests.fakes.bluesky import BlueskyFake, graphemes
from tests.fakes.fixtures import use_fakes
from tests.fakes.server import Fault, RecordedRequest


def settings(fake: BlueskyFake, **wrong: str) -> BlueskySettings:
    return BlueskySettings(fake.handle, Secret(wrong.get("password", fake.app_password)), wrong.get("url", fake.url))


def message(*posts: str, lang: str = "en", version: str = "v1", reply_to: str | None = None) -> Message:
    rendering = Rendering(channel="bluesky", language=lang, posts=posts)
    return Message(notice_id="notice-1", channel="bluesky", version=version, recipient=f"bluesky:{lang}",
                   language=lang, rendering=rendering, reply_to=reply_to)


def thread_of(n: int, lang: str = "en") -> Message:
    return message(*(f"Water advisory in {lang}, part {i} ({i}/{n})" for i in range(1, n + 1)), lang=lang)


def assert_whole_thread(fake: BlueskyFake, whole: Message) -> list[str]:
    uris = [d.payload["uri"] for d in fake.deliveries]
    assert [d.recipient for d in fake.deliveries] == list(whole.rendering.posts)
    assert [d.payload["parent"] for d in fake.deliveries] == [None, *uris[:-1]]
    assert {d.payload["record"]["reply"]["root"]["uri"] for d in fake.deliveries[1:]} <= {uris[0]}
    assert fake.duplicates() == {} and fake.invalid == []
    return uris


@pytest.fixture
def channel(bluesky_fake: BlueskyFake) -> Iterator[BlueskyChannel]:
    with BlueskyChannel(settings(bluesky_fake)) as opened:
        yield opened  # type: ignore[misc]
    assert bluesky_fake.invalid == []


def test_thread_replies_with_root_and_parent_and_langs(channel: BlueskyChannel, bluesky_fake: BlueskyFake) -> None:
    whole = thread_of(3, "sl")
    [receipt] = channel.send([whole])
    uris = assert_whole_thread(bluesky_fake, whole)
    assert receipt.status == "sent" and receipt.thread == tuple(uris)
    assert {tuple(d.payload["record"]["langs"]) for d in bluesky_fake.deliveries} == {("sl",)}
    assert bluesky_fake.sessions == 1


def test_links_get_facets_with_utf8_byte_offsets(channel: BlueskyChannel, bluesky_fake: BlueskyFake) -> None:
    text = "Čebelnjak: preverite https://jamiibank.example/secure — ali jamiibank.com/chat"
    channel.send([message(text, lang="sl")])
    [record] = [d.payload["record"] for d in bluesky_fake.deliveries]
    raw = text.encode()
    links = {raw[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode(): f["features"][0]["uri"] for f in record["facets"]}
    assert links == {"https://jamiibank.example/secure": "https://jamiibank.example/secure",
                     "jamiibank.com/chat": "https://jamiibank.com/chat"}


def test_a_rerun_posts_nothing(channel: BlueskyChannel, bluesky_fake: BlueskyFake) -> None:
    [first] = channel.send([thread_of(2)])
    [again] = channel.send([thread_of(2)])
    assert again.status == "skipped" and again.thread == first.thread and len(bluesky_fake.deliveries) == 2


def test_a_rerun_after_a_crash_mid_thread_resumes_without_duplicates(bluesky_fake: BlueskyFake) -> None:
    whole = thread_of(4)
    with BlueskyChannel(settings(bluesky_fake)) as crashed:
        crashed.send([message(*whole.rendering.posts[:2])])
    with BlueskyChannel(settings(bluesky_fake)) as rerun:
        [receipt] = rerun.send([whole])
    uris = assert_whole_thread(bluesky_fake, whole)
    assert receipt.status == "sent" and receipt.thread == tuple(uris)
    assert receipt.reason.endswith("(2 of them already on Bluesky from an earlier attempt)")


class LosesAnswer(BlueskyFake):
    """The PDS fake, creating the post with this text on its first arrival and losing the answer."""

    def __init__(self, text: str) -> None:
        self.lose_text, self.lost = text, False
        super().__init__()

    def _next_fault(self, request: RecordedRequest) -> Fault | None:
        record = (request.body or {}).get("record") if isinstance(request.body, dict) else None
        if not self.lost and record and record.get("text") == self.lose_text:
            self.lost = True
            return Fault("drop_after")
        return super()._next_fault(request)


@pytest.mark.parametrize("lost", [0, 1, 2])
def test_a_lost_answer_on_any_post_is_retried_without_a_duplicate(lost: int) -> None:
    whole = thread_of(3)
    with LosesAnswer(whole.rendering.posts[lost]) as fake, BlueskyChannel(settings(fake), timeout=0.5) as channel:
        outcome = deliver([whole], {"bluesky": channel})
        assert outcome.counts["bluesky"] == {"sent": 1} and fake.lost
        assert_whole_thread(fake, whole)


def test_an_update_replies_to_the_previous_thread_with_its_root(channel: BlueskyChannel, bluesky_fake: BlueskyFake) -> None:
    [first] = channel.send([thread_of(2)])
    [update] = channel.send([message("UPDATE: boil water", version="v2", reply_to=first.thread[-1])])
    reply = bluesky_fake.deliveries[-1].payload["record"]["reply"]
    assert reply["parent"]["uri"] == first.thread[-1] and reply["root"]["uri"] == first.thread[0]
    assert update.status == "sent" and update.reason.startswith("in reply to ")


def test_withdraw_deletes_the_thread(channel: BlueskyChannel, bluesky_fake: BlueskyFake) -> None:
    [sent] = channel.send([thread_of(2)])
    [gone] = channel.withdraw([replace(thread_of(2), posted=sent.thread)], "cancelled")
    assert gone.status == "sent" and bluesky_fake.records == {}
    assert bluesky_fake.deleted == [uri.rsplit("/", 1)[-1] for uri in sent.thread]


def test_posts_keep_within_300_graphemes_with_long_links() -> None:
    text = "\n\n".join(f"Part {i}: boil water. See https://example.org/{'a' * 80}/{i}" for i in range(12))
    posts = split_posts(text, 300)
    assert len(posts) > 1 and all(graphemes(p) <= 300 and len(p) <= 300 for p in posts)


def test_bad_app_password_stops_the_channel_naming_the_variables(bluesky_fake: BlueskyFake) -> None:
    with BlueskyChannel(settings(bluesky_fake, password="wrong-bsky-password-0123")) as channel:
        with pytest.raises(ChannelError) as stopped:
            channel.send([thread_of(1)])
    assert "BLUESKY_APP_PASSWORD" in stopped.value.message and "app password" in stopped.value.hint
    assert "wrong-bsky-password-0123" not in stopped.value.message and bluesky_fake.deliveries == []


def test_wrong_pds_url_stops_the_channel_naming_the_variable(bluesky_fake: BlueskyFake) -> None:
    with BlueskyChannel(settings(bluesky_fake, url="http://127.0.0.1:9")) as channel:
        with pytest.raises(ChannelError) as stopped:
            channel.send([thread_of(1)])
    assert "BLUESKY_PDS_URL" in stopped.value.message and "BLUESKY_PDS_URL" in stopped.value.hint


def test_settings_name_what_is_missing_and_default_the_pds() -> None:
    with pytest.raises(ConfigError) as missing:
        channel_settings([BlueskyChannel], env={})
    assert "BLUESKY_HANDLE" in missing.value.message and "BLUESKY_APP_PASSWORD" in missing.value.message
    got = channel_settings([BlueskyChannel], env={"BLUESKY_HANDLE": "a.bsky.social", "BLUESKY_APP_PASSWORD": "abcd-efgh-ijkl-mnop"})
    assert got["bluesky"].pds_url == "https://bsky.social"


# -- end to end --------------------------------------------------------------------------------

BANK = Path(__file__).resolve().parent / "data" / "notices" / "bank-breach.yaml"
PEOPLE = "name,email,phone,language\nAnn,ann@mail.example,+447911123401,en\n"


@pytest.fixture
def bank(monkeypatch: pytest.MonkeyPatch, bluesky_fake: BlueskyFake, tmp_path: Path) -> tuple[Path, Path]:
    """The en/sw/sl bank notice, posting in all three languages, a ledger of the test's own, and the fake's variables."""
    # the registry line, as the lead adds it to broadcast/channels/__init__.py (a no-op once it is there)
    monkeypatch.setitem(REGISTRY, BlueskyChannel.name, BlueskyChannel)
    use_fakes(monkeypatch, bluesky=bluesky_fake)
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    notice = tmp_path / "bank.yaml"
    notice.write_text(BANK.read_text(encoding="utf-8") + "social:\n  languages: [en, sw, sl]\n", encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    return notice, people


def send(notice: Path, people: Path, *extra: str) -> Any:
    args = ["send", str(notice), "--contacts", str(people), "--channel", "bluesky", "--yes", "--json", *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_posts_each_language_once_naming_every_support_channel_and_a_rerun_posts_nothing(
    bank: tuple[Path, Path], bluesky_fake: BlueskyFake
) -> None:
    result = send(*bank)
    assert result.exit_code == 0, result.output
    notice = yaml.safe_load(bank[0].read_text(encoding="utf-8"))
    langs = [d.payload["record"]["langs"][0] for d in bluesky_fake.deliveries if d.payload["parent"] is None]
    assert sorted(langs) == ["en", "sl", "sw"] and json.loads(result.stdout)["channels"]["bluesky"]["sent"] == 3
    for language in langs:
        text = "\n".join(d.recipient for d in bluesky_fake.deliveries if d.payload["record"]["langs"] == [language])
        assert all(channel["contact"] in text for channel in notice["channels"]), language
        assert notice["headline"][language] in text
    links = [f for d in bluesky_fake.deliveries for f in d.payload["record"].get("facets", [])]
    assert links and bluesky_fake.duplicates() == {} and bluesky_fake.invalid == []
    posted = len(bluesky_fake.deliveries)
    again = send(*bank)
    assert again.exit_code == 0 and len(bluesky_fake.deliveries) == posted
    assert json.loads(again.stdout)["channels"]["bluesky"]["sent"] == 0


def test_cli_an_edited_notice_replies_to_the_previous_thread(bank: tuple[Path, Path], bluesky_fake: BlueskyFake) -> None:
    notice, people = bank
    assert send(notice, people).exit_code == 0
    en = [d.payload["uri"] for d in bluesky_fake.deliveries if d.payload["record"]["langs"] == ["en"]]
    before = len(bluesky_fake.deliveries)
    text = notice.read_text(encoding="utf-8")
    summary = yaml.safe_load(text)["summary"]["en"]
    notice.write_text(text.replace(summary, summary + " New: cards are replaced for free.", 1), encoding="utf-8")
    assert send(notice, people).exit_code == 0
    update = bluesky_fake.deliveries[before:]
    reply = update[0].payload["record"]["reply"]
    assert reply["parent"]["uri"] == en[-1] and reply["root"]["uri"] == en[0] and update[0].recipient.startswith("UPDATE: ")
    assert {d.payload["record"]["langs"][0] for d in update} == {"en"} and bluesky_fake.invalid == []


def test_cli_bad_app_password_is_a_clear_error_without_a_traceback(
    bank: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, bluesky_fake: BlueskyFake
) -> None:
    monkeypatch.setenv("BLUESKY_APP_PASSWORD", "wrong-bsky-secret-password-0123")
    result = send(*bank)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "BLUESKY_APP_PASSWORD" in json.loads(result.stdout)["stopped"]["bluesky"]
    assert "wrong-bsky-secret-password-0123" not in result.output and bluesky_fake.records == {}


def test_the_preview_page_counts_each_bluesky_post_of_300_as_bluesky_does_not_in_xs_weighting(tmp_path: Path) -> None:
    import re

    from broadcast.check import check
    from broadcast.text import weighted_length
    from tests.conftest import CONTACTS, STORM

    out = tmp_path / "preview"
    previewed = CliRunner().invoke(
        main, ["preview", str(STORM), "--contacts", str(CONTACTS), "--out", str(out), "--force", "--channel", "bluesky"],
        catch_exceptions=False,
    )
    assert previewed.exit_code == 0, previewed.output
    shown = [int(n) for n in re.findall(r'class="weight">(\d+)/300<', (out / "index.html").read_text(encoding="utf-8"))]
    renders = check(STORM, channels=["bluesky"]).renders
    posts = [p for lang in BlueskyChannel.languages(renders.notice) for p in renders.get("bluesky", lang).posts]
    assert shown == [BlueskyChannel.post_length(p) for p in posts]
    # the count is code points: never fewer than Bluesky's graphemes (the Arabic posts' marks make it more), so a
    # post the page shows within 300 is never refused
    assert all(n >= graphemes(p) for n, p in zip(shown, posts, strict=True)) and max(shown) <= 300
    # a link counts in full on Bluesky and 23 on X: the storm notice's links make the two counts differ
    assert shown != [weighted_length(p) for p in posts]
    assert f"of {BlueskyChannel.max_post_weight}" in previewed.output
