"""The delivery ledger on its own: triage, claims, settling, suppressions, crashes and concurrent runs."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from broadcast.errors import LedgerError
from broadcast.ledger import Ledger, deliveries, metadata, now, parse_duration, runs
from broadcast.message import Decision, Message, Receipt, Rendering

RENDERING = Rendering("sms", "en", text="Boil water before drinking.")


def message(n: int, version: str = "v1", channel: str = "sms") -> Message:
    recipient = f"+3864155{n:04d}"
    return Message(
        notice_id="water", channel=channel, version=version, recipient=recipient, language="en",
        rendering=RENDERING, contact_key=f"phone:{recipient}",
    )


def sent(m: Message, status: str = "sent", **kw: object) -> Receipt:
    return Receipt(m.id, m.channel, m.recipient, status, provider_id="SM1" if status == "sent" else None, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = request.getfixturevalue("postgres_url")
    # each test starts from empty tables on the shared server
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture()
def ledger(ledger_url: str) -> Ledger:
    book = Ledger(ledger_url)
    yield book
    book.close()


def run_once(ledger: Ledger, messages: list[Message], status: str = "sent", **triage: object) -> list[Message]:
    decisions = [d for d in ledger.triage(messages, **triage) if d.send]  # type: ignore[arg-type]
    ledger.start_run("water")
    owned = ledger.claim(decisions)
    ledger.settle([sent(m, status) for m in owned])
    ledger.finish_run()
    return owned


def test_rerun_sends_nothing_and_new_contacts_only(ledger: Ledger) -> None:
    first = [message(i) for i in range(5)]
    assert len(run_once(ledger, first)) == 5
    again = list(ledger.triage(first + [message(99)]))
    assert [d.send for d in again] == [False] * 5 + [True]
    assert {d.reason for d in again[:5]} == {"already sent"}


def test_transient_failures_are_sent_again_permanent_ones_are_not(ledger: Ledger) -> None:
    a, b = message(1), message(2)
    ledger.start_run("water")
    ledger.claim([Decision(a, True), Decision(b, True)])
    ledger.settle([sent(a, "retry", reason="503"), sent(b, "failed", reason="invalid phone number (Twilio 21211)")])
    ledger.finish_run()
    decided = {d.message.id: d for d in ledger.triage([a, b])}
    assert decided[a.id].send is True
    assert decided[b.id].send is False and "21211" in decided[b.id].reason


def test_resend_after_reminds_only_old_sends(ledger: Ledger) -> None:
    m = message(1)
    run_once(ledger, [m])
    assert [d.send for d in ledger.triage([m], resend_after=timedelta(hours=1))] == [False]
    with ledger.engine.begin() as conn:
        conn.execute(deliveries.update().values(sent_at=now() - timedelta(hours=2)))
    decision = next(ledger.triage([m], resend_after=timedelta(hours=1)))
    assert decision.send and decision.reason == "reminder"
    assert len(run_once(ledger, [m], resend_after=timedelta(hours=1))) == 1
    assert [d.send for d in ledger.triage([m], resend_after=timedelta(hours=1))] == [False]


def test_new_version_is_a_new_message_and_is_reported_as_earlier_sent(ledger: Ledger) -> None:
    run_once(ledger, [message(1, "v1")])
    assert ledger.sent_versions("water") == {("sms", "en"): {"v1"}}
    assert [d.send for d in ledger.triage([message(1, "v2")])] == [True]


def test_a_row_recorded_under_the_channels_whole_version_counts_for_the_same_content(ledger: Ledger) -> None:
    # before versions were per language, a message carried the channel's version over every language; a ledger
    # from then must not send the same content again, and must still send changed content
    run_once(ledger, [message(1, "whole")])
    same = replace(message(1, "en-v1"), equivalents=("whole", "en-v1"))
    assert [(d.send, d.reason) for d in ledger.triage([same])] == [(False, "already sent")]
    changed = replace(message(1, "en-v2"), equivalents=("other", "en-v2"))
    assert [d.send for d in ledger.triage([changed])] == [True]


def test_stop_replies_become_suppressions(ledger: Ledger) -> None:
    m = message(1)
    ledger.start_run("water")
    ledger.claim([Decision(m, True)])
    ledger.settle([sent(m, "failed", reason="replied STOP", suppress=True)])
    ledger.finish_run()
    other_version = message(1, "v2")
    assert next(ledger.triage([other_version])).reason == "suppressed"


def test_crashed_run_leaves_unknowns_that_are_not_resent_without_asking(ledger: Ledger) -> None:
    m = message(1)
    ledger.start_run("water")
    ledger.claim([Decision(m, True)])
    # the process dies here: make the run look like a dead process on this host
    with ledger.engine.begin() as conn:
        conn.execute(runs.update().values(pid=_dead_pid()))
    ledger._beat.set()  # noqa: SLF001 - stop this test's heartbeat as a crash would
    ledger.run_id = None  # what the next process sees
    decision = next(ledger.triage([m]))
    assert decision.send is False and decision.unknown and "--retry-unknown" in decision.reason
    status = ledger.status("water")
    assert status["rows"][0]["unknown"] == 1
    decision = next(ledger.triage([m], retry_unknown=True))
    assert decision.send and decision.unknown
    ledger.start_run("water")
    assert ledger.claim([decision]) == [m]


def test_a_live_run_holds_its_rows(ledger: Ledger, tmp_path: Path) -> None:
    m = message(1)
    ledger.start_run("water")
    ledger.claim([Decision(m, True)])
    other = Ledger(ledger.url)
    try:
        assert next(other.triage([m])).reason == "being sent by another run"
        other.start_run("water")
        assert other.claim([Decision(m, True)]) == []
    finally:
        other.close()


def _claim_all(url: str, n: int, queue: multiprocessing.Queue) -> None:  # runs in a child process
    book = Ledger(url)
    book.start_run("water")
    owned = book.claim([Decision(message(i), True) for i in range(n)])
    book.settle([sent(m) for m in owned])
    queue.put([m.id for m in owned])
    book.close()


def test_two_processes_never_claim_the_same_message(ledger_url: str) -> None:
    url = ledger_url
    Ledger(url).close()
    queue: multiprocessing.Queue = multiprocessing.Queue()
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_claim_all, args=(url, 2000, queue)) for _ in range(2)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    first, second = map(set, results)
    assert not first & second
    assert len(first | second) == 2000


def test_bad_urls_are_ledger_errors(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="not a database URL"):
        Ledger("not a url")
    with pytest.raises(LedgerError, match="driver"):
        Ledger("postgresql+nosuchdriver://x@127.0.0.1/db")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1.5h", 5400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "-1h", "1w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def _dead_pid() -> int:
    pid = os.getpid() + 100000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


# -- long values: the same on SQLite and PostgreSQL ------------------------------------------------------

LONG_HOST = "build-runner-" + "x" * 120 + ".internal.example"
LONG_LANGUAGE = "sl-Latn-SI-" + "-".join(["nedis"] * 12)  # a valid BCP 47 shape, longer than 35 characters
LONG_PATH = "/srv/" + "/".join(["very-long-folder-name"] * 14) + "/banner.sl.html"


def test_long_host_language_and_paths_are_recorded_on_both_databases(ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: LONG_HOST)
    book = Ledger(ledger_url)
    try:
        m = message(7)
        m = replace(m, language=LONG_LANGUAGE)
        book.suppress([("sms", "+38641559999", "listed in a suppression file", LONG_PATH)])
        book.start_run("water")
        [owned] = book.claim([Decision(m, True)])
        book.settle([Receipt(owned.id, "sms", owned.recipient, "sent", provider_id=LONG_PATH)])
        book.finish_run()
        assert book.status("water")["rows"][0]["sent"] == 1
        assert next(book.triage([m])).reason == "already sent"
        with book.engine.connect() as conn:
            row = conn.execute(sa.select(deliveries).where(deliveries.c.message_id == m.id)).one()
            assert (row.language, row.provider_id) == (LONG_LANGUAGE, LONG_PATH)
            assert conn.execute(sa.select(runs.c.host).where(runs.c.run_id == book.run_id)).scalar() == LONG_HOST
    finally:
        book.close()


def test_a_postgresql_ledger_made_with_narrow_columns_is_widened_in_place(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the tables as earlier versions of broadcast created them
    old = sa.MetaData()
    for table in metadata.sorted_tables:
        narrow = {"message_id": 512, "notice": 80, "recipient": 320, "contact": 330, "language": 35,
                  "provider_id": 200, "run_id": 64, "source": 200, "host": 255}
        columns = [
            sa.Column(c.name, sa.String(narrow[c.name]) if c.name in narrow else c.type, primary_key=c.primary_key,
                      nullable=c.nullable)
            for c in table.columns
        ]
        sa.Table(table.name, old, *columns)
    engine = sa.create_engine(postgres_url)
    metadata.drop_all(engine)
    old.create_all(engine)
    earlier = message(1)
    with engine.begin() as conn:
        conn.execute(deliveries.insert().values(
            message_id=earlier.id, notice="water-earlier", version="v1", channel="sms", recipient=earlier.recipient,
            contact=earlier.contact_key, language="en", status="sent", attempts=1, first_at=now(), last_at=now(),
            sent_at=now(),
        ))
    assert sa.inspect(engine).get_columns("runs")[2]["type"].length == 255
    engine.dispose()

    test_long_host_language_and_paths_are_recorded_on_both_databases(postgres_url, monkeypatch)
    engine = sa.create_engine(postgres_url)
    try:
        widths = {
            (table, c["name"]): getattr(c["type"], "length", None)
            for table in ("deliveries", "runs", "suppressions") for c in sa.inspect(engine).get_columns(table)
        }
        assert widths[("runs", "host")] is None and widths[("deliveries", "language")] is None
        # what the earlier version recorded is still there, and still counts
        book = Ledger(postgres_url)
        assert next(book.triage([earlier])).reason == "already sent"
        book.close()
    finally:
        metadata.drop_all(engine)
        engine.dispose()
