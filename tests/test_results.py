"""Delivery results and replies in the ledger: every state move, duplicates, bounces, STOP and START (results.record)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from broadcast.ledger import Ledger, metadata
from broadcast.message import Message, Receipt, Rendering
from broadcast.results import Applied, Event, action, keyword, normalize, record

#: after the test sends: a reply is matched to a message sent before it
#: the events' clock starts a minute after each test starts (set by _clock): a time taken when the module was
#: collected would be minutes behind the messages a test sends later in a full run, and no reply would find them
T0 = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _clock() -> None:
    global T0
    T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
SMS = Rendering("sms", "en", text="Boil water before drinking.")
EMAIL = Rendering("email", "en", subject="Boil water", text="Boil water before drinking.")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        metadata.drop_all(engine)
        engine.dispose()
    book = Ledger(url)
    yield book
    book.close()


def sms(n: int, notice: str = "water") -> Message:
    number = f"+3864155{n:04d}"
    return Message(notice_id=notice, channel="sms", version="v1", recipient=number, language="en", rendering=SMS,
                   contact_key=f"phone:{number}")


def email(n: int) -> Message:
    address = f"person{n}@example.org"
    return Message(notice_id="water", channel="email", version="v1", recipient=address, language="en",
                   rendering=EMAIL, contact_key=f"email:{address}", key=address.lower())


def sent(ledger: Ledger, messages: list[Message], provider_id: str | None = None) -> None:
    """Send through the ledger as a run does: claim, then settle with the provider's ids."""
    from broadcast.message import Decision

    if ledger.run_id is None:
        ledger.start_run("water")
    owned = ledger.claim([Decision(m, True) for m in messages])
    ledger.settle([
        Receipt(m.id, m.channel, m.recipient, "sent", provider_id=provider_id or f"SM{m.recipient[-4:]}") for m in owned
    ])


def state(ledger: Ledger, recipient: str) -> dict:
    return next(row for row in ledger.outcomes("water") if row["recipient"] == recipient)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- message states ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "final"),
    [
        (["accepted"], "accepted"),
        (["accepted", "queued"], "queued"),
        (["queued", "sent"], "sent"),
        (["queued", "sent", "delivered"], "delivered"),
        (["sent", "undelivered"], "undelivered"),
        (["sent", "failed"], "failed"),
        (["deferred", "delivered"], "delivered"),
        (["deferred", "bounced"], "bounced"),
        (["queued", "dropped"], "dropped"),
        # a state only moves forward: late or repeated earlier states change nothing
        (["delivered", "sent"], "delivered"),
        (["undelivered", "queued"], "undelivered"),
        (["sent", "deferred"], "sent"),
        # the first final state reported stands
        (["delivered", "undelivered"], "delivered"),
    ],
)
def test_a_message_state_moves_only_forward(ledger: Ledger, kinds: list[str], final: str) -> None:
    m = sms(1)
    sent(ledger, [m])
    applied = record(ledger, [Event("sms", k, at(i), provider_id="SM0001", reason=f"r{i}") for i, k in enumerate(kinds)])
    row = state(ledger, m.recipient)
    assert row["state"] == final
    # the time and the provider's reason of the state that stands are kept
    index = kinds.index(final)
    assert row["state_at"] == at(index) and row["state_reason"] == f"r{index}"
    assert applied.recorded == len(kinds) and applied.duplicates == 0
    assert applied.advanced + applied.kept == len(kinds)
    # the ledger's own status (what send and triage read) is untouched
    assert row["status"] == "sent"


def test_events_are_applied_oldest_first_whatever_order_they_come_in(ledger: Ledger) -> None:
    m = sms(1)
    sent(ledger, [m])
    record(ledger, [Event("sms", "delivered", at(2), provider_id="SM0001"), Event("sms", "sent", at(1), provider_id="SM0001")])
    assert state(ledger, m.recipient)["state"] == "delivered"


def test_the_same_event_twice_changes_nothing(ledger: Ledger) -> None:
    m = sms(1)
    sent(ledger, [m])
    event = Event("sms", "undelivered", at(1), provider_id="SM0001", reason="30003")
    first = record(ledger, [event])
    again = record(ledger, [event, event])
    assert first == Applied(recorded=1, advanced=1)
    assert again == Applied(duplicates=2)
    # a provider event id is the key when there is one: the same id at another time is still the same event
    bounce = Event("email", "bounced", at(1), provider_id="X1", recipient="a@example.org", event_id="sg-1")
    record(ledger, [bounce])
    assert record(ledger, [Event("email", "bounced", at(5), provider_id="X1", recipient="a@example.org",
                                 event_id="sg-1")]) == Applied(duplicates=1)
    assert len(ledger.suppressions_of("email")) == 1


def test_an_email_event_finds_its_recipient_under_a_batch_id(ledger: Ledger) -> None:
    # SendGrid gives one X-Message-Id for a request of many recipients: the recipient tells them apart
    first, second = email(1), email(2)
    sent(ledger, [first, second], provider_id="batch-1")
    record(ledger, [Event("email", "delivered", at(1), provider_id="batch-1", recipient="PERSON2@example.org")])
    assert state(ledger, second.recipient)["state"] == "delivered"
    assert state(ledger, first.recipient)["state"] == ""


def test_an_event_about_no_message_of_this_ledger_is_counted_unmatched(ledger: Ledger) -> None:
    applied = record(ledger, [Event("sms", "delivered", at(1), provider_id="SMelsewhere")])
    assert applied == Applied(recorded=1, unmatched=1)


def test_an_event_time_must_carry_its_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        Event("sms", "delivered", datetime(2026, 11, 28, 9, 0), provider_id="SM1")


# -- suppressions ---------------------------------------------------------------------------------------------------


def test_a_hard_bounce_suppresses_the_address_with_the_providers_reason(ledger: Ledger) -> None:
    m = email(1)
    sent(ledger, [m], provider_id="batch-1")
    applied = record(ledger, [Event("email", "bounced", at(1), provider_id="batch-1", recipient=m.recipient,
                                    reason="550 5.1.1 mailbox does not exist")])
    assert applied.suppressed == 1
    (row,) = ledger.suppressions_of("email")
    assert row["recipient"] == m.recipient and "550 5.1.1" in row["reason"]
    assert m.recipient in ledger.suppressed()["email"]
    # a soft failure is no reason to stop writing to someone
    other = email(2)
    sent(ledger, [other], provider_id="batch-2")
    record(ledger, [Event("email", "deferred", at(2), provider_id="batch-2", recipient=other.recipient)])
    assert other.recipient not in ledger.suppressed()["email"]


def test_spam_reports_and_unsubscribes_suppress_the_address(ledger: Ledger) -> None:
    first, second = email(1), email(2)
    sent(ledger, [first, second], provider_id="batch-1")
    record(ledger, [
        Event("email", "spamreport", at(1), provider_id="batch-1", recipient=first.recipient),
        Event("email", "unsubscribe", at(1), provider_id="batch-1", recipient=second.recipient),
    ])
    assert ledger.suppressed()["email"] == {first.recipient, second.recipient}
    # neither is a delivery state
    assert state(ledger, first.recipient)["state"] == ""


@pytest.mark.parametrize("word", ["STOP", "stop", " Stop. ", "STOPALL", "UNSUBSCRIBE", "cancel", "End", "QUIT"])
def test_a_stop_reply_suppresses_the_number(ledger: Ledger, word: str) -> None:
    m = sms(1)
    sent(ledger, [m])
    applied = record(ledger, [Event("sms", "reply", at(1), recipient=m.recipient, text=word, event_id="SMin1")])
    assert applied == Applied(recorded=1, replies=1, suppressed=1)
    assert ledger.suppressed()["sms"] == {m.recipient}
    (reply,) = ledger.replies("water")
    assert reply["action"] == "opt-out" and reply["text"] == word


def test_stop_then_start_lifts_the_suppression_but_not_one_from_a_file(ledger: Ledger) -> None:
    replied, listed = sms(1), sms(2)
    sent(ledger, [replied, listed])
    ledger.suppress([("sms", listed.recipient, "listed in a suppression file", "optout.csv")])
    record(ledger, [
        Event("sms", "reply", at(1), recipient=replied.recipient, text="STOP", event_id="SMin1"),
        Event("sms", "reply", at(1), recipient=listed.recipient, text="STOP", event_id="SMin2"),
    ])
    assert ledger.suppressed()["sms"] == {replied.recipient, listed.recipient}
    applied = record(ledger, [
        Event("sms", "reply", at(2), recipient=replied.recipient, text="start", event_id="SMin3"),
        Event("sms", "reply", at(2), recipient=listed.recipient, text="UNSTOP", event_id="SMin4"),
    ])
    assert applied.unsuppressed == 1
    assert ledger.suppressed()["sms"] == {listed.recipient}
    # STOP again after START holds again
    record(ledger, [Event("sms", "reply", at(3), recipient=replied.recipient, text="Stop", event_id="SMin5")])
    assert ledger.suppressed()["sms"] == {replied.recipient, listed.recipient}


def test_a_start_older_than_the_stop_does_not_lift_it(ledger: Ledger) -> None:
    m = sms(1)
    sent(ledger, [m])
    record(ledger, [Event("sms", "reply", at(5), recipient=m.recipient, text="STOP", event_id="SMin2")])
    # reported late (a webhook retried): the person wrote YES before they wrote STOP
    record(ledger, [Event("sms", "reply", at(1), recipient=m.recipient, text="YES", event_id="SMin1")])
    assert ledger.suppressed()["sms"] == {m.recipient}


def test_a_twilio_opt_out_learned_at_send_is_lifted_by_start(ledger: Ledger) -> None:
    m = sms(1)
    ledger.start_run("water")
    from broadcast.message import Decision

    (owned,) = ledger.claim([Decision(m, True)])
    ledger.settle([Receipt(owned.id, "sms", m.recipient, "failed", reason="21610: unsubscribed", suppress=True)])
    assert ledger.suppressed()["sms"] == {m.recipient}
    record(ledger, [Event("sms", "reply", datetime.now(UTC) + timedelta(minutes=1), recipient=m.recipient,
                          text="START", event_id="SMin1")])
    assert "sms" not in ledger.suppressed()


def test_unsuppress_lifts_only_reply_suppressions(ledger: Ledger) -> None:
    ledger.suppress([("sms", "+38641550001", "replied STOP", "reply"), ("sms", "+38641550002", "listed", "optout.csv")])
    assert ledger.unsuppress("sms", ["+38641550001", "+38641550002"]) == 1
    assert ledger.suppressed()["sms"] == {"+38641550002"}


# -- replies ---------------------------------------------------------------------------------------------------------


def test_a_reply_is_kept_with_the_notice_last_sent_to_its_sender(ledger: Ledger) -> None:
    m = sms(1)
    sent(ledger, [m])
    record(ledger, [Event("sms", "reply", datetime.now(UTC) + timedelta(seconds=5), recipient=m.recipient,
                          text="Is the water safe for a baby?", event_id="SMin1")])
    (reply,) = ledger.replies("water")
    assert (reply["sender"], reply["contact"], reply["language"], reply["action"]) == (
        m.recipient, m.contact_key, "en", "")
    assert reply["text"] == "Is the water safe for a baby?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", "SAFE"), (" 1. ", "SAFE"), ("Safe!", "SAFE"), ("SALAMÁ", "SAFE"), ("salama", "SAFE"), ("Våren", "SAFE"),
     ("ｓａｆｅ", "SAFE"), ("2", "HELP"), ("I am safe", None), ("STOP", None), ("", None)],
)
def test_replies_match_keywords_whatever_the_case_accents_and_punctuation(text: str, expected: str | None) -> None:
    keywords = {"SAFE": ["1", "safe", "salama", "varen"], "HELP": ["2", "Hilfe"]}
    assert keyword(text, keywords) == expected


def test_stop_and_start_words_are_read_before_anything_else() -> None:
    assert [action(t) for t in ("STOP", "stopall!", "Quit", "start", "Yes", "stop please", "1")] == [
        "opt-out", "opt-out", "opt-out", "opt-in", "opt-in", "", ""]
    assert normalize("  Salamá!! ") == "salama"


# -- older ledgers ---------------------------------------------------------------------------------------------------


def test_a_ledger_made_before_results_opens_and_gains_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Ledger(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in ("events", "outcomes", "replies", "sync_cursors"):
            conn.execute(sa.text(f"DROP TABLE {name}"))
    engine.dispose()
    old = Ledger(url, read_only=True)
    assert old.replies("water") == [] and old.outcomes("water") == [] and old.cursor("water", "sms") is None
    old.engine.dispose()
    book = Ledger(url)
    sent(book, [sms(1)])
    assert record(book, [Event("sms", "delivered", at(1), provider_id="SM0001")]).advanced == 1
    book.close()


def test_a_notice_without_reply_or_follow_up_keeps_its_release_digest() -> None:
    # the digest of a notice sent before these fields existed must not change, or its next run would be a new release
    from broadcast.lifecycle import digest
    from broadcast.notice import load_notice
    from tests.conftest import EXAMPLE

    notice = load_notice(EXAMPLE)
    assert "reply" not in notice.model_dump() and "follow_up" not in notice.model_dump()
    assert digest(notice) == digest(notice.model_copy(update={"reply": None, "follow_up": []}))
