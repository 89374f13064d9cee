"""The X adapter, driven through the real tweepy client against the local X fake: threads, auth, faults, retries."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.channels import live_channel
from broadcast.channels.x import SocialSettings, XChannel
from broadcast.cli import main
from broadcast.config import Secret
from broadcast.errors import ChannelError
from broadcast.message import Message, Receipt, Rendering
from broadcast.send import RetryPolicy, deliver
from tests.conftest import CONTACTS, EXAMPLE
from tests.fakes import credentials
from tests.fakes.fixtures import use_fakes
from tests.fakes.server import Fault, Faults, RecordedRequest, Reply
from tests.fakes.x import XFake


def settings(fake: XFake | None, *, bearer: bool = False, base_url: str | None = None, **wrong: str) -> SocialSettings:
    values = {
        "consumer_key": credentials.X_CONSUMER_KEY,
        "consumer_secret": credentials.X_CONSUMER_SECRET,
        "access_token": credentials.X_ACCESS_TOKEN,
        "access_token_secret": credentials.X_ACCESS_TOKEN_SECRET,
        "bearer_token": credentials.X_BEARER_TOKEN,
        **wrong,
    }
    oauth1 = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
    secrets = {name: (None if bearer and name in oauth1 else Secret(value)) for name, value in values.items()}
    return SocialSettings(**secrets, base_url=base_url or (fake.url if fake else None))


def message(*posts: str, lang: str = "en", version: str = "v1") -> Message:
    rendering = Rendering(channel="social", language=lang, posts=posts)
    recipient = f"x:{lang}"
    return Message(
        notice_id="notice-1", channel="social", version=version, recipient=recipient, language=lang,
        rendering=rendering, contact_key=recipient,
    )


def thread_of(n: int, lang: str = "en") -> Message:
    return message(*(f"Water advisory in {lang}, part {i} ({i}/{n})" for i in range(1, n + 1)), lang=lang)


def chain(fake: XFake) -> list[str | None]:
    """Each post's parent, in the order the fake accepted them."""
    return [d.payload["in_reply_to_tweet_id"] for d in fake.deliveries]


def lookups(fake: XFake) -> list[str | None]:
    """The since_id of each look-up of the account's posts, in order (None: the newest posts)."""
    return [r.query.get("since_id") for r in fake.requests if r.path == f"/2/users/{fake.user_id}/tweets"]


def assert_whole_thread(fake: XFake, whole: Message) -> list[str]:
    """Every post of ``whole`` on X once, in order, each replying to the one before; returns their ids."""
    ids = [d.payload["id"] for d in fake.deliveries]
    assert [d.recipient for d in fake.deliveries] == list(whole.rendering.posts)
    assert chain(fake) == [None, *ids[:-1]] and fake.duplicates() == {} and fake.invalid == []
    return ids


@pytest.fixture
def channel(x_fake: XFake) -> Iterator[XChannel]:
    with XChannel(settings(x_fake)) as opened:
        yield opened  # type: ignore[misc]
    assert x_fake.invalid == []


class LosesAnswer(XFake):
    """The X fake, taking one chosen post on its first arrival and losing the answer (``drop_after``/``timeout_after``)."""

    def __init__(self, text: str, kind: str = "drop_after", **kwargs: Any) -> None:
        self.lose_text, self.kind, self.lost = text, kind, False
        super().__init__(**kwargs)

    def _next_fault(self, request: RecordedRequest) -> Fault | None:
        if not self.lost and request.method == "POST" and (request.body or {}).get("text") == self.lose_text:
            self.lost = True
            return Fault(self.kind)
        return super()._next_fault(request)


class NoTimeline(LosesAnswer):
    """Loses one post's answer, and refuses to list the account's posts, as X does for an app without read access."""

    def route(self, request: RecordedRequest) -> Reply:
        if request.path.endswith("/tweets") and request.method == "GET":
            return self.error_reply(403, "You currently have access to a subset of X API V2 endpoints only.")
        return super().route(request)


class FlakyTimeline(LosesAnswer):
    """Loses one post's answer, and answers the first look-up of the account's posts 503."""

    def _next_fault(self, request: RecordedRequest) -> Fault | None:
        if request.path.endswith("/tweets") and request.method == "GET" and not self.faults_injected["503"]:
            return Fault("503", 503)
        return super()._next_fault(request)


class Outage(XFake):
    """The X fake, answering 503 to the post ending in ``suffix`` for as long as ``down`` is True."""

    def __init__(self, suffix: str) -> None:
        self.suffix, self.down = suffix, True
        super().__init__()

    def route(self, request: RecordedRequest) -> Reply:
        if self.down and request.method == "POST" and (request.body or {}).get("text", "").endswith(self.suffix):
            return self.error_reply(503, "Service Unavailable")
        return super().route(request)


class FailOnce(XFake):
    """The X fake, answering one chosen post's first arrival badly: before or after accepting it."""

    def __init__(self, text: str, *, after: bool = False, status: int = 503) -> None:
        self.fail_text, self.after, self.status, self.failed = text, after, status, False
        super().__init__()

    def route(self, request: RecordedRequest) -> Reply:
        if self.failed or (request.body or {}).get("text") != self.fail_text:
            return super().route(request)
        self.failed = True
        if not self.after:
            return self.error_reply(self.status, "Service Unavailable")
        super().route(request)  # X created the post, then the answer failed
        return self.error_reply(self.status, "Service Unavailable")


# -- posting -------------------------------------------------------------------------------------


def test_single_post(channel: XChannel, x_fake: XFake) -> None:
    [receipt] = channel.send([message("Boil your tap water. More: https://lakeside.example")])
    [tweet] = x_fake.tweets.values()
    assert receipt == Receipt("notice-1/social/v1/x:en", "social", "x:en", "sent", provider_id=tweet["id"], thread=(tweet["id"],))
    assert tweet["in_reply_to_tweet_id"] is None and x_fake.deliveries[0].payload["auth"] == "oauth1"


def test_thread_of_three_is_chained_by_reply(channel: XChannel, x_fake: XFake) -> None:
    [receipt] = channel.send([thread_of(3)])
    ids = [d.payload["id"] for d in x_fake.deliveries]
    assert len(ids) == 3 and chain(x_fake) == [None, ids[0], ids[1]]
    assert receipt.status == "sent" and receipt.provider_id == ids[0]
    assert receipt.reason == f"thread of 3 posts: {', '.join(ids)}"


def test_oauth2_user_token_is_sent_as_bearer(x_fake: XFake) -> None:
    with XChannel(settings(x_fake, bearer=True)) as channel:
        [receipt] = channel.send([thread_of(2)])
    assert receipt.status == "sent"
    assert [d.payload["auth"] for d in x_fake.deliveries] == ["bearer", "bearer"]
    assert all(r.headers["authorization"] == f"Bearer {credentials.X_BEARER_TOKEN}" for r in x_fake.requests)
    assert x_fake.invalid == []


def test_registry_builds_the_adapter(x_fake: XFake) -> None:
    channel = live_channel("social", settings(x_fake))
    assert isinstance(channel, XChannel) and channel.max_batch == 1 and channel.max_concurrency == 1
    assert credentials.X_CONSUMER_SECRET not in repr(channel)


def test_too_long_post_fails_before_anything_is_posted(channel: XChannel, x_fake: XFake) -> None:
    # 150 CJK characters weigh 300: under 280 characters, over 280 weighted
    [receipt] = channel.send([message("Short first post (1/2)", "水" * 150 + " (2/2)")])
    assert receipt.status == "failed"
    assert "post 2 of 2 is 306 weighted characters, over X's 280" in receipt.reason
    assert "nothing was posted" in receipt.reason and x_fake.requests == []


def test_posts_of_several_languages_go_one_after_another(channel: XChannel, x_fake: XFake) -> None:
    outcome = deliver([thread_of(2, "en"), thread_of(2, "ar")], {"social": channel})
    assert outcome.counts["social"]["sent"] == 2
    ids = [d.payload["id"] for d in x_fake.deliveries]
    assert chain(x_fake) == [None, ids[0], None, ids[2]] and x_fake.max_concurrency == 1


# -- credentials and refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bearer", "wrong", "hint"),
    [
        (False, {"consumer_secret": "wrong-consumer-secret-0123"}, "Read and Write permission"),
        (True, {"bearer_token": "wrong-bearer-token-0123456"}, "OAuth 2.0 user access token"),
    ],
)
def test_401_stops_the_channel_with_a_hint(x_fake: XFake, bearer: bool, wrong: dict[str, str], hint: str) -> None:
    with XChannel(settings(x_fake, bearer=bearer, **wrong)) as channel, pytest.raises(ChannelError) as raised:
        channel.send([message("hello")])
    assert "X refused the credentials (401)" in raised.value.message and hint in raised.value.hint
    assert x_fake.tweets == {} and x_fake.invalid == []
    assert not any(secret in str(raised.value) for secret in (*credentials.SECRETS, *wrong.values()))


def test_other_403_stops_the_channel_with_xs_detail(channel: XChannel, x_fake: XFake) -> None:
    x_fake.script([403])
    outcome = deliver([message("hello"), message("again", lang="sw")], {"social": channel})
    assert "X refused to post (403): Forbidden" in outcome.stopped["social"]
    assert outcome.counts["social"]["sent"] == 0 and len(outcome.failures) == 2 and x_fake.tweets == {}


def test_a_thread_already_on_x_is_skipped_with_its_ids(channel: XChannel, x_fake: XFake) -> None:
    # the same posts under a new notice version: every post is refused as duplicate content and found
    channel.send([thread_of(2)])
    ids = [d.payload["id"] for d in x_fake.deliveries]
    [receipt] = channel.send([replace(thread_of(2), version="v2")])
    assert receipt.status == "skipped" and receipt.provider_id == ids[0]
    assert receipt.reason == f"already posted on X (duplicate content): thread of 2 posts: {', '.join(ids)}"
    assert len(x_fake.tweets) == 2 and lookups(x_fake) == [None, ids[0]]


def test_a_single_post_already_on_x_is_skipped(channel: XChannel, x_fake: XFake) -> None:
    channel.send([message("Boil your tap water.")])
    [receipt] = channel.send([message("Boil your tap water.", version="v2")])
    assert receipt.status == "skipped" and receipt.reason == "already posted on X (duplicate content)"
    assert receipt.provider_id == x_fake.deliveries[0].payload["id"] and len(x_fake.tweets) == 1


# -- transient faults and retries ------------------------------------------------------------------


def test_429_waits_for_the_rate_limit_reset_then_sends(channel: XChannel, x_fake: XFake) -> None:
    reset = int(time.time()) + 30
    x_fake.script([(429, {"x-rate-limit-reset": str(reset)})])
    [receipt] = channel.send([message("hello")])
    assert receipt.status == "retry" and "X rate limit reached (429)" in receipt.reason
    assert 25 <= receipt.retry_after <= 30

    x_fake.script([429])  # the fake's own headers: reset one second from now
    outcome = deliver([message("hello", lang="sw")], {"social": channel})
    assert outcome.counts["social"] == {"sent": 1} and x_fake.faults_injected["429"] == 2
    assert len(x_fake.tweets) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(channel: XChannel, x_fake: XFake, status: int) -> None:
    x_fake.script([status, status])
    [receipt] = channel.send([message("hello")])
    assert receipt.status == "retry" and "X server error" in receipt.reason
    outcome = deliver([message("hello")], {"social": channel})
    assert outcome.counts["social"] == {"sent": 1} and len(x_fake.tweets) == 1


def test_gives_up_after_the_policy_attempts(channel: XChannel, x_fake: XFake) -> None:
    x_fake.script([503] * 3)
    outcome = deliver([message("hello")], {"social": channel}, policy=RetryPolicy(attempts=3, wait=False))
    [failure] = outcome.failures
    assert failure.status != "sent" and failure.reason.startswith("gave up after 3 attempts: X server error")
    assert x_fake.tweets == {}


def test_thread_failing_on_post_two_continues_on_retry() -> None:
    whole = thread_of(3)
    with FailOnce(whole.rendering.posts[1]) as fake, XChannel(settings(fake)) as channel:
        [first] = channel.send([whole])
        first_id = fake.deliveries[0].payload["id"]
        assert first.status == "retry" and f"post 1 of 3 already on X ({first_id})" in first.reason
        assert first.provider_id == first_id
        outcome = deliver([whole], {"social": channel})
        ids = [d.payload["id"] for d in fake.deliveries]
        assert outcome.counts["social"] == {"sent": 1}
        assert [d.recipient for d in fake.deliveries] == list(whole.rendering.posts)
        assert chain(fake) == [None, ids[0], ids[1]] and fake.duplicates() == {} and fake.invalid == []


def test_accepted_post_with_a_5xx_answer_continues_the_thread() -> None:
    # X created post 2 but answered 503: the retry meets "duplicate content", finds post 2 and goes on from it
    whole = thread_of(3)
    with FailOnce(whole.rendering.posts[1], after=True) as fake, XChannel(settings(fake)) as channel:
        received: list[Receipt] = []
        outcome = deliver([whole], {"social": channel}, on_receipts=received.extend)
        [receipt] = received
        ids = assert_whole_thread(fake, whole)
    assert outcome.counts["social"] == {"sent": 1} and len(ids) == 3
    assert receipt.provider_id == ids[0] and receipt.reason == f"thread of 3 posts: {', '.join(ids)}"
    assert lookups(fake) == [ids[0]]


@pytest.mark.parametrize("lost", [0, 1, 3], ids=["first", "middle", "last"])
@pytest.mark.parametrize("bearer", [False, True], ids=["oauth1", "bearer"])
def test_a_lost_answer_on_any_post_still_posts_the_whole_thread(lost: int, bearer: bool) -> None:
    whole = thread_of(4)
    with LosesAnswer(whole.rendering.posts[lost]) as fake, XChannel(settings(fake, bearer=bearer)) as channel:
        received: list[Receipt] = []
        outcome = deliver([whole], {"social": channel}, on_receipts=received.extend)
        ids = assert_whole_thread(fake, whole)
    assert fake.faults_injected == {"drop_after": 1} and outcome.counts["social"] == {"sent": 1}
    assert received[0].provider_id == ids[0] and received[0].reason == f"thread of 4 posts: {', '.join(ids)}"
    # one look-up, for the lost post's id, among the posts newer than the one it replies to
    assert lookups(fake) == [ids[lost - 1] if lost else None]
    assert [r.path for r in fake.requests].count("/2/users/me") == 1


def test_a_look_up_that_fails_for_a_moment_is_retried() -> None:
    whole = thread_of(3)
    with FlakyTimeline(whole.rendering.posts[1], "timeout_after", faults=Faults(timeout_delay=0.6)) as fake, \
            XChannel(settings(fake), timeout=0.3) as channel:
        [lost] = channel.send([whole])
        first_id = fake.deliveries[0].payload["id"]
        assert lost.status == "retry" and lost.reason.startswith("no answer from X (ReadTimeout)")
        [flaky] = channel.send([whole])
        assert flaky.status == "retry" and flaky.provider_id == first_id
        assert flaky.reason == (
            "post 2 of 3 is on X already (duplicate content); looking up its id met an X server error: "
            f"Service Unavailable; post 1 of 3 already on X ({first_id})"
        )
        [receipt] = channel.send([whole])
        ids = assert_whole_thread(fake, whole)
    assert receipt.status == "sent" and receipt.reason == f"thread of 3 posts: {', '.join(ids)}"
    assert lookups(fake) == [first_id, first_id]


def test_a_post_that_x_shows_rewritten_is_still_found() -> None:
    # X's timeline shows links as t.co links and & < > as HTML entities; the post must still match what was sent
    whole = message("Boil water & wait <1 h>: https://lakeside.org/notice (1/2)", "Updates on lakeside.org (2/2)")
    with LosesAnswer(whole.rendering.posts[0]) as fake, XChannel(settings(fake)) as channel:
        outcome = deliver([whole], {"social": channel})
        assert_whole_thread(fake, whole)
    assert outcome.counts["social"] == {"sent": 1}


def test_a_rerun_after_a_crash_mid_thread_resumes_the_thread(x_fake: XFake) -> None:
    whole = thread_of(4)
    # the run that crashed: posts 1-2 went out, and nothing of the thread was kept
    with XChannel(settings(x_fake)) as crashed:
        crashed.send([message(*whole.rendering.posts[:2])])
    with XChannel(settings(x_fake)) as rerun:
        [receipt] = rerun.send([whole])
    ids = assert_whole_thread(x_fake, whole)
    assert receipt.status == "sent" and receipt.provider_id == ids[0]
    assert receipt.reason == f"thread of 4 posts: {', '.join(ids)} (2 of them already on X from an earlier attempt)"
    assert lookups(x_fake) == [None, ids[0]]


def test_cli_rerun_finishes_a_thread_an_earlier_run_left_halfway(monkeypatch: pytest.MonkeyPatch) -> None:
    with Outage("(4/7)") as fake:
        use_fakes(monkeypatch, x=fake)
        first = json.loads(send_social().stdout)
        assert len(fake.deliveries) == 3 and first["channels"]["social"]["sent"] == 0
        fake.down = False
        second = json.loads(send_social().stdout)
        ids = [d.payload["id"] for d in fake.deliveries]
    assert second["channels"]["social"]["sent"] == 1
    assert len(ids) == 7 and chain(fake) == [None, *ids[:-1]] and fake.duplicates() == {} and fake.invalid == []


def test_a_lost_answer_mid_thread_that_cannot_be_looked_up_is_unknown_not_sent() -> None:
    whole = thread_of(3)
    with NoTimeline(whole.rendering.posts[1]) as fake, XChannel(settings(fake)) as channel:
        received: list[Receipt] = []
        outcome = deliver([whole], {"social": channel}, on_receipts=received.extend)
        ids = [d.payload["id"] for d in fake.deliveries]
    assert outcome.counts["social"] == {"unknown": 1} and len(ids) == 2 and fake.duplicates() == {}
    [receipt] = received
    assert receipt.status == "unknown" and receipt.provider_id == ids[0]
    assert receipt.reason == (
        f"thread incomplete: post 1 of 3 is on X ({ids[0]}); post 2 is already on X (duplicate content), but its id "
        "is unknown (X refused to list the account's posts (403: You currently have access to a subset of X API V2 "
        "endpoints only.)), so post 3 had nothing to reply to and was not posted; re-run with --retry-unknown to "
        "look again and finish the thread, or add post 3 by hand as a reply to post 2"
    )


def test_a_lost_answer_on_the_last_post_that_cannot_be_looked_up_is_sent_with_the_id_missing() -> None:
    whole = thread_of(3)
    with NoTimeline(whole.rendering.posts[2]) as fake, XChannel(settings(fake)) as channel:
        received: list[Receipt] = []
        deliver([whole], {"social": channel}, on_receipts=received.extend)
        [receipt] = received
        ids = assert_whole_thread(fake, whole)
    assert receipt.status == "sent" and receipt.provider_id == ids[0]
    assert receipt.reason.startswith(
        f"all 3 posts are on X ({ids[0]}, {ids[1]} and post 3, whose id is unknown: X's answer to it was lost and "
        "X refused to list the account's posts (403: "
    )


def test_a_post_duplicating_one_from_another_thread_fails_the_thread(channel: XChannel, x_fake: XFake) -> None:
    # an earlier notice version's thread; the new one changes post 1, so X refuses its unchanged post 2
    channel.send([message("Boil water advisory (1/2)", "Boil until further notice (2/2)")])
    new = message("Boil water advisory, updated (1/2)", "Boil until further notice (2/2)", version="v2")
    [receipt] = channel.send([new])
    new_id = x_fake.deliveries[-1].payload["id"]
    assert receipt.status == "failed" and receipt.provider_id == new_id and len(x_fake.tweets) == 3
    assert receipt.reason == (
        f"thread incomplete: post 1 of 2 is on X ({new_id}); X refused post 2 as duplicate content of an older post "
        f"(the account has no post with this text newer than post 1 ({new_id})), so post 2 was not posted; change "
        "post 2's text in the notice and send again, or add post 2 by hand"
    )


@pytest.mark.parametrize("fault", ["drop_after", "timeout_after"])
def test_lost_answer_on_a_single_post_is_sent_not_skipped(x_fake: XFake, fault: str) -> None:
    x_fake.script([fault])
    received: list[Receipt] = []
    with XChannel(settings(x_fake), timeout=0.3) as channel:
        outcome = deliver([message("hello")], {"social": channel}, on_receipts=received.extend)
    assert outcome.counts["social"] == {"sent": 1} and len(x_fake.tweets) == 1 and x_fake.faults_injected[fault] == 1
    [tweet] = x_fake.tweets.values()
    assert received[0].provider_id == tweet["id"] and received[0].reason is None


@pytest.mark.parametrize("fault", ["drop_before", "timeout_before"])
def test_lost_request_is_retried_and_posted_once(x_fake: XFake, fault: str) -> None:
    x_fake.script([fault])
    received: list[Receipt] = []
    with XChannel(settings(x_fake), timeout=0.3) as channel:
        outcome = deliver([thread_of(2)], {"social": channel}, on_receipts=received.extend)
    assert outcome.counts["social"] == {"sent": 1} and x_fake.duplicates() == {} and len(x_fake.tweets) == 2
    assert received[0].provider_id == x_fake.deliveries[0].payload["id"]


def test_connection_refused_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with XChannel(settings(None, base_url=f"http://127.0.0.1:{port}")) as channel:
        [receipt] = channel.send([message("hello")])
    assert receipt.status == "retry" and receipt.reason == "no answer from X (ConnectionError)"


# -- end to end --------------------------------------------------------------------------------



def send_social(*extra: str) -> Any:
    args = ["send", str(EXAMPLE), "--contacts", str(CONTACTS), "--channel", "social", "--yes", "--json"]
    return CliRunner().invoke(main, [*extra, *args], catch_exceptions=False)


def test_cli_posts_the_boil_water_thread(monkeypatch: pytest.MonkeyPatch, x_fake: XFake) -> None:
    use_fakes(monkeypatch, x=x_fake)
    result = send_social()
    assert result.exit_code == 0, result.output
    social = json.loads(result.stdout)["channels"]["social"]
    roots = [d for d in x_fake.deliveries if d.payload["in_reply_to_tweet_id"] is None]
    assert social["sent"] == len(roots) == 1 and social["failed"] == social["unknown"] == 0
    ids = [d.payload["id"] for d in x_fake.deliveries]
    assert len(ids) == 7 and chain(x_fake) == [None, *ids[:-1]]
    assert x_fake.deliveries[-1].recipient.endswith("(7/7)") and x_fake.invalid == []


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("bearer", [False, True])
def test_cli_verbose_output_holds_no_secret(monkeypatch: pytest.MonkeyPatch, x_fake: XFake, bearer: bool) -> None:
    use_fakes(monkeypatch, x=x_fake)
    if bearer:
        for name in ("X_CONSUMER_KEY", "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("X_BEARER_TOKEN", credentials.X_BEARER_TOKEN)
    result = send_social("--verbose")
    assert result.exit_code == 0, result.output
    assert "DEBUG broadcast.send: social" in result.output  # our debug log ran; tweepy's (headers and all) stays off
    assert not [s for s in credentials.SECRETS if s in result.output]
    assert {d.payload["auth"] for d in x_fake.deliveries} == {"bearer" if bearer else "oauth1"}


def test_cli_bad_credentials_stop_social_without_leaking(monkeypatch: pytest.MonkeyPatch, x_fake: XFake) -> None:
    use_fakes(monkeypatch, x=x_fake)
    monkeypatch.setenv("X_ACCESS_TOKEN_SECRET", "wrong-x-secret-access-token-secret")
    result = send_social()
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["channels"]["social"]["sent"] == 0 and "401" in summary["stopped"]["social"]
    assert "wrong-x-secret-access-token-secret" not in result.output and x_fake.tweets == {}
