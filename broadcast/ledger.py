"""The delivery ledger: a durable record of every message, so re-runs never double-send and never lose anyone."""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from broadcast.errors import LedgerError
from broadcast.message import Decision, Message, Receipt
from broadcast.processes import alive

#: the ledger of a run from the working directory, before it moved beside the notice file (default_url)
DEFAULT_URL = "sqlite:///.broadcast/ledger.db"
#: rows per statement: large enough to be fast, small enough for SQLite's variable limit
CHUNK = 500
#: rows per claiming INSERT: 2,000 × 12 values stays under SQLite's 32,766 variables
CLAIM_CHUNK = 2000
#: a run that has not beaten its heart for this long is dead; its in-flight rows become unknown
STALE_AFTER = timedelta(seconds=60)
HEARTBEAT_EVERY = 10.0

metadata = sa.MetaData()

deliveries = sa.Table(
    "deliveries",
    metadata,
    # Text wherever the width is not part of the meaning: a PostgreSQL VARCHAR(n) refuses a longer value, and
    # a long host name, language tag or --web-dir path must not stop a send (see _widen)
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("notice", sa.Text, nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("contact", sa.Text, nullable=False, default=""),
    sa.Column("language", sa.Text, nullable=False, default=""),
    # inflight → sent | failed | retry | unknown | previewed; held: not sent yet, waiting for the recipient's quiet
    # hours to end (reason: the release time, ISO, UTC), which the first run after them claims like a retry
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("provider_id", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    # No other index: the key already makes (notice, version, channel, recipient) unique, since it is made of them
    # (plan.message_id), and every write finds its row by key; each index more costs every claim and settle
    # (measured: two more made claims 30% and settles 40% slower). Ledgers made before keep theirs, unused.
    sa.Index("ix_deliveries_notice_channel", "notice", "channel"),
)

#: the last post of each thread a message put on a public channel (X): an update of the notice replies to it
threads = sa.Table(
    "threads",
    metadata,
    sa.Column("message_id", sa.Text, primary_key=True),
    #: the thread's post ids in order, space-separated
    sa.Column("posts", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

#: each version of a notice as it went out: its phase and CAP message type, for `status`'s timeline and the CAP
#: feed's references; a cancellation is a release too
releases = sa.Table(
    "releases",
    metadata,
    sa.Column("notice", sa.Text, primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("phase", sa.Text, nullable=False),
    sa.Column("msg_type", sa.Text, nullable=False),
    #: a hash of the notice's content as sent: the same content sent again is the same release
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sender", sa.Text, nullable=False, default=""),
    sa.Column("identifier", sa.Text, nullable=False, default=""),
    sa.Column("note", sa.Text, nullable=False, default=""),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("recipient", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("notice", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

#: facts about the ledger itself: its id, so an approval made for another ledger is told apart (approve.py)
ledger_meta = sa.Table(
    "ledger_meta",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

#: approvals and revocations, in order per notice; rows are only ever added (a revocation is a row of its own), and
#: the (notice, number) key makes two approvers racing on one notice a conflict for the second, not a silent overwrite
approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("notice", sa.Text, primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    #: approve | revoke
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("ledger_id", sa.Text, nullable=False),
    sa.Column("approver", sa.Text, nullable=False),
    #: where the approver's identity came from: --as, BROADCAST_USER, git user.email
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
    #: JSON: "channel × language" → digest of every form of that rendering, as it would go out
    sa.Column("renderings", sa.Text, nullable=False),
    sa.Column("audience", sa.Text, nullable=False),
    sa.Column("channels", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    #: HMAC-SHA256 of the row with BROADCAST_APPROVAL_KEY, "" without a key
    sa.Column("mac", sa.Text, nullable=False, default=""),
)

#: the append-only audit log: who did what to which notice, when, from where, with what result. Counts only: no
#: recipient address and no secret is ever written here. Nothing in broadcast updates or deletes its rows, and
#: triggers refuse it (audit_triggers).
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("notice", sa.Text, nullable=False),
    #: check, preview, approve, revoke, send, cancel, stop
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("who", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    #: JSON: channel → count, and other numbers
    sa.Column("counts", sa.Text, nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

#: the database refuses to change or remove an audit row, whoever asks
_AUDIT_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS approvals_no_update BEFORE UPDATE ON approvals "
        "BEGIN SELECT RAISE(ABORT, 'approvals are append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS approvals_no_delete BEFORE DELETE ON approvals "
        "BEGIN SELECT RAISE(ABORT, 'approvals are append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION broadcast_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
        # created once: DROP/CREATE on every open would lock the table against a running send
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_append_only') THEN "
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION broadcast_append_only(); END IF; END $$",
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'approvals_append_only') THEN "
        "CREATE TRIGGER approvals_append_only BEFORE UPDATE OR DELETE ON approvals "
        "FOR EACH ROW EXECUTE FUNCTION broadcast_append_only(); END IF; END $$",
    ],
}


#: every delivery result and reply a provider reported (`sync` pulls them, `serve` is pushed them), once each: the
#: key (the provider's event id, else message id, kind and time) makes the same event twice change nothing
events = sa.Table(
    "events",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),
    #: accepted, queued, sent, delivered, undelivered, bounced, failed, dropped, deferred, … reply (results.KINDS)
    sa.Column("kind", sa.Text, nullable=False),
    #: the deliveries row it is about; None when none matched (a reply, or a message another ledger sent)
    sa.Column("message_id", sa.Text),
    sa.Column("provider_id", sa.Text, nullable=False, default=""),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

#: each message's latest state at the provider, which only moves forward (results.RANK): kept apart from
#: deliveries.status, which send and triage read ("sent" there means the provider accepted the request)
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    #: when the provider says it happened, and its reason (an error code, a bounce's SMTP answer)
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
)

#: what people wrote back, attributed to the notice last sent to them on that channel before they wrote
replies = sa.Table(
    "replies",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("notice", sa.Text, nullable=False, default=""),
    sa.Column("contact", sa.Text, nullable=False, default=""),
    sa.Column("language", sa.Text, nullable=False, default=""),
    sa.Column("text", sa.Text, nullable=False, default=""),
    #: "" for a reply a person or the notice's keywords read; "opt-out" / "opt-in" for STOP / START, never counted
    sa.Column("action", sa.Text, nullable=False, default=""),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

#: where `sync` stopped, per notice and channel, so the next one resumes there
sync_cursors = sa.Table(
    "sync_cursors",
    metadata,
    sa.Column("notice", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("position", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: the follow-ups a notice's `follow_up:` rules planned (followup.py): (rule, message) once each. A reminder is done
#: once its message was claimed after it was planned (deliveries.last_at >= at); a run aborted before that plans it again
follow_ups = sa.Table(
    "follow_ups",
    metadata,
    sa.Column("notice", sa.Text, primary_key=True),
    #: "resend" or "other_channel"
    sa.Column("action", sa.Text, primary_key=True),
    #: the message the rule looked at (the one not delivered, or not replied to)
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

#: suppression sources a START reply may lift: a STOP reply, or Twilio's 21610 (the recipient had sent STOP); a
#: suppression from a file stays whatever the recipient texts
LIFTABLE = ("reply", "provider")
#: how far a provider's clock may run ahead of ours when a reply is matched to the message it answers
REPLY_SKEW = timedelta(minutes=5)


def now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _database_errors(method: Any) -> Any:
    """A database failure inside a ledger method becomes a LedgerError that names the ledger, never the SQL
    (SQLAlchemy's message quotes the statement and its parameters: recipients' addresses)."""

    @functools.wraps(method)
    def wrapper(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sa.exc.DBAPIError, sqlite3.Error) as exc:
            raise self._failure(exc) from None

    return wrapper


class Ledger:
    """SQLAlchemy Core over SQLite (default, one file) or PostgreSQL (shared by several runners).

    ``read_only`` (status, preview) opens a SQLite file without writing to it, so a ledger on a read-only
    disk or owned by another user can still be read; such a ledger records nothing.
    """

    def __init__(self, url: str | None = None, *, read_only: bool = False) -> None:
        self.url = url or os.environ.get("BROADCAST_LEDGER") or DEFAULT_URL
        self.read_only = read_only
        if _in_memory(self.url):
            raise LedgerError(
                "an in-memory SQLite ledger (sqlite://) is forgotten when the run ends, so the next run would send "
                "to everyone again",
                hint="use a file, e.g. --ledger sqlite:///.broadcast/ledger.db, or leave --ledger out for the default",
            )
        try:
            self.engine = self._engine(self.url, read_only=read_only)
            if read_only and self.engine.dialect.name == "sqlite":
                with self.engine.connect() as conn:
                    if not sa.inspect(conn).has_table("deliveries"):
                        raise LedgerError(
                            "this SQLite file is not a broadcast ledger: it has no deliveries table",
                            file=masked_url(self.url),
                            hint="point --ledger / BROADCAST_LEDGER at the ledger broadcast wrote",
                        )
            else:
                with self.engine.begin() as conn:
                    if self.engine.dialect.name == "postgresql":
                        # two runs starting at once on a new database must not both create the tables
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262011)"))
                    metadata.create_all(conn)
                    _widen(conn)
                    for statement in _AUDIT_TRIGGERS.get(self.engine.dialect.name, []):
                        conn.execute(sa.text(statement))
        except sa.exc.ArgumentError as exc:
            raise LedgerError(
                f"not a database URL: {exc}", hint="use sqlite:///path/ledger.db or postgresql+psycopg://user@host/db"
            ) from None
        except ValueError:
            # the URL parser's words can quote a piece of the URL, password included: say which part instead
            raise LedgerError(
                f"not a database URL: the host or port of {masked_url(self.url)} cannot be read "
                "(an IPv6 address needs its closing ], a port is a number)",
                hint="write it like postgresql+psycopg://[::1]:5432/db (user and password before the host) or sqlite:///path/ledger.db",
            ) from None
        except (sa.exc.DatabaseError, sqlite3.Error) as exc:
            raise self._failure(exc, opening=True) from None
        except OSError as exc:
            raise LedgerError(
                f"cannot open the ledger: {_first_line(exc)}",
                hint="check --ledger / BROADCAST_LEDGER, that the database is reachable, and its permissions",
            ) from None
        except ModuleNotFoundError as exc:
            raise LedgerError(
                f"the database driver is not installed: {exc.name}",
                hint="pip install 'broadcast[postgres]' for PostgreSQL",
            ) from None
        self.run_id: str | None = None
        self._beat: threading.Event | None = None
        self._sql = _PerMessage(self.engine.dialect)

    def _failure(self, exc: BaseException, *, opening: bool = False) -> LedgerError:
        """What a database error means for the person: the ledger, the database's own first line, what to do."""
        said = _first_line(exc)
        where = masked_url(self.url)
        damaged = ("restore it from a backup, or move it aside (mv it to ledger.db.damaged) to start a new one; "
                   "a new ledger does not know who already got a notice, so check the providers' logs before a live send")
        if "malformed" in said:
            return LedgerError(f"the ledger is damaged: {said}", file=where, hint=damaged)
        if "not a database" in said:
            return LedgerError(
                f"cannot {'open' if opening else 'use'} the ledger: {said}", file=where,
                hint=f"check that --ledger / BROADCAST_LEDGER names the ledger broadcast wrote; if it does, it is damaged: {damaged}",
            )
        if self.read_only and ("readonly" in said or "unable to open" in said):
            return LedgerError(
                f"cannot read the ledger: {said}", file=where,
                hint="check that you may read the ledger file and its folder (ls -l), or copy it somewhere you can",
            )
        return LedgerError(
            f"cannot {'open' if opening else 'use'} the ledger: {said}",
            file=where,
            hint="check --ledger / BROADCAST_LEDGER, that the database is reachable, and its permissions",
        )

    @staticmethod
    def _engine(url: str, *, read_only: bool = False) -> sa.Engine:
        if url.startswith("sqlite"):
            path = sa.engine.make_url(url).database
            if read_only and path:
                return _read_only_engine(path)
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 60})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                # pysqlite's own BEGIN handling must be off for the explicit BEGIN IMMEDIATE below
                dbapi_connection.isolation_level = None
                cursor = dbapi_connection.cursor()
                # WAL lets a status query read while a send writes; a busy run waits instead of failing
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA busy_timeout=60000")
                cursor.close()

            @sa.event.listens_for(engine, "begin")
            def _immediate(conn: sa.Connection) -> None:
                # take the write lock at BEGIN so two runs claiming rows serialize instead of deadlocking
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        return sa.create_engine(url, pool_pre_ping=True)

    @property
    def _insert(self):  # noqa: ANN202 - the dialect's INSERT, which knows ON CONFLICT DO NOTHING
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert

    # -- runs ----------------------------------------------------------------------------------

    @_database_errors
    def start_run(self, notice: str) -> str:
        """Register this run and keep its heartbeat, so others can tell it from a crashed one."""
        self.run_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(
                    run_id=self.run_id, notice=notice, host=socket.gethostname(), pid=os.getpid(),
                    started_at=stamp, heartbeat_at=stamp,
                )
            )
        self._beat = threading.Event()
        threading.Thread(target=self._heartbeat, args=(self.run_id, self._beat), daemon=True, name="ledger-heartbeat").start()
        return self.run_id

    def _heartbeat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            try:
                with self.engine.begin() as conn:
                    conn.execute(runs.update().where(runs.c.run_id == run_id).values(heartbeat_at=now()))
            except sa.exc.SQLAlchemyError:
                continue  # a missed beat only makes this run look older; the next one catches up

    @_database_errors
    def finish_run(self) -> None:
        if self._beat:
            self._beat.set()
        if self.run_id:
            with self.engine.begin() as conn:
                conn.execute(runs.update().where(runs.c.run_id == self.run_id).values(finished_at=now(), heartbeat_at=now()))

    def _live_runs(self, conn: sa.Connection) -> set[str]:
        """Runs still sending: unfinished, with a recent heartbeat, and (on this host) a living process."""
        cutoff = now() - STALE_AFTER
        host = socket.gethostname()
        rows = conn.execute(
            sa.select(runs.c.run_id, runs.c.heartbeat_at, runs.c.host, runs.c.pid).where(runs.c.finished_at.is_(None))
        )
        return {
            r.run_id
            for r in rows
            if _aware(r.heartbeat_at) >= cutoff and (r.host != host or r.run_id == self.run_id or alive(r.pid))
        }

    # -- before sending ------------------------------------------------------------------------

    @_database_errors
    def sent_versions(self, notice: str) -> dict[tuple[str, str], set[str]]:
        """(channel, language) → versions of this notice that reached at least one recipient in that language."""
        out: dict[tuple[str, str], set[str]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.channel, deliveries.c.language, deliveries.c.version)
                .where(deliveries.c.notice == notice, deliveries.c.status == "sent")
                .distinct()
            )
            for channel, language, version in rows:
                out.setdefault((channel, language), set()).add(version)
        return out

    @_database_errors
    def has_rows(self, notice: str, channel: str, versions: Iterable[str]) -> bool:
        """Whether any message of this notice on this channel, in any of these versions, was ever claimed."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.literal(1)).where(
                    deliveries.c.notice == notice, deliveries.c.channel == channel,
                    deliveries.c.version.in_(sorted(versions)),
                ).limit(1)
            ).first() is not None

    @_database_errors
    def reached(self, notice: str, contacts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (channel, contact) pairs among ``contacts`` that some version of this notice was sent to."""
        found: set[tuple[str, str]] = set()
        by_channel: dict[str, list[str]] = {}
        for channel, contact in contacts:
            by_channel.setdefault(channel, []).append(contact)
        with self.engine.connect() as conn:
            for channel, keys in by_channel.items():
                for chunk in _chunks(keys):
                    rows = conn.execute(
                        sa.select(deliveries.c.contact).where(
                            deliveries.c.notice == notice, deliveries.c.channel == channel,
                            deliveries.c.status == "sent", deliveries.c.contact.in_(chunk),
                        ).distinct()
                    )
                    found.update((channel, contact) for (contact,) in rows)
        return found

    @_database_errors
    def thread_ends(self, notice: str) -> dict[tuple[str, str], str]:
        """(channel, language) → the last post of the notice's latest thread there, which an update replies to."""
        return {key: posts[-1] for key, posts in self.threads(notice).items() if posts}

    @_database_errors
    def threads(self, notice: str) -> dict[tuple[str, str], list[str]]:
        """(channel, language) → the post ids of the notice's latest thread there."""
        out: dict[tuple[str, str], tuple[datetime, list[str]]] = {}
        with self.engine.connect() as conn:
            if not _has_table(conn, threads):
                return {}
            rows = conn.execute(
                sa.select(deliveries.c.channel, deliveries.c.language, threads.c.posts, threads.c.recorded_at)
                .join(threads, threads.c.message_id == deliveries.c.message_id)
                .where(deliveries.c.notice == notice, deliveries.c.status.in_(("sent", "skipped")))
            )
            for channel, language, posts, at in rows:
                at = _aware(at)
                if (channel, language) not in out or at >= out[(channel, language)][0]:
                    out[(channel, language)] = (at, posts.split())
        return {key: posts for key, (_, posts) in out.items()}

    @_database_errors
    def all_threads(self, notice: str) -> list[tuple[str, list[str]]]:
        """(channel, post ids) of every thread any version of the notice put up, oldest first."""
        with self.engine.connect() as conn:
            if not _has_table(conn, threads):
                return []
            rows = conn.execute(
                sa.select(deliveries.c.channel, threads.c.posts)
                .join(threads, threads.c.message_id == deliveries.c.message_id)
                .where(deliveries.c.notice == notice)
                .order_by(threads.c.recorded_at)
            )
            return [(channel, posts.split()) for channel, posts in rows]

    @_database_errors
    def reached_rows(self, notice: str) -> list[tuple[str, str, str, str]]:
        """(channel, recipient, contact, language) of everyone some version of the notice was sent to, in the
        language of the latest message each got; one row per channel and recipient."""
        latest: dict[tuple[str, str], tuple[datetime, str, str]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.channel, deliveries.c.recipient, deliveries.c.contact, deliveries.c.language,
                          deliveries.c.sent_at)
                .where(deliveries.c.notice == notice, deliveries.c.status == "sent")
            )
            for channel, recipient, contact, language, sent_at in rows:
                at = _aware(sent_at) or now()
                if (channel, recipient) not in latest or at >= latest[(channel, recipient)][0]:
                    latest[(channel, recipient)] = (at, contact, language)
        return [(channel, recipient, contact, language) for (channel, recipient), (_, contact, language) in latest.items()]

    @_database_errors
    def releases(self, notice: str) -> list[dict[str, Any]]:
        """The notice's releases, first to last: number, phase, msg_type, digest, sent_at, sender, identifier, note."""
        with self.engine.connect() as conn:
            if not _has_table(conn, releases):
                return []
            rows = conn.execute(sa.select(releases).where(releases.c.notice == notice).order_by(releases.c.number))
            return [{**row._mapping, "sent_at": _aware(row.sent_at)} for row in rows]

    @_database_errors
    def record_release(
        self, notice: str, *, phase: str, msg_type: str, digest: str, sender: str = "", identifier: str = "", note: str = ""
    ) -> dict[str, Any]:
        """Record a release of the notice unless the latest one has the same content and phase; return the latest."""
        with self.engine.begin() as conn:
            last = conn.execute(
                sa.select(releases).where(releases.c.notice == notice).order_by(releases.c.number.desc()).limit(1)
            ).first()
            if last is not None and last.digest == digest and last.phase == phase and last.msg_type == msg_type:
                return {**last._mapping, "sent_at": _aware(last.sent_at)}
            row = dict(
                notice=notice, number=(last.number + 1) if last is not None else 1, phase=phase, msg_type=msg_type,
                digest=digest, sent_at=now(), sender=sender, identifier=identifier, note=note,
            )
            conn.execute(releases.insert().values(**row))
            return row

    @_database_errors
    def suppressed(self) -> dict[str, set[str]]:
        """channel → recipients who must not be contacted (STOP replies and suppression files)."""
        out: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for channel, recipient in conn.execute(sa.select(suppressions.c.channel, suppressions.c.recipient)):
                out.setdefault(channel, set()).add(recipient)
        return out

    @_database_errors
    def suppress(self, entries: Iterable[tuple[str, str, str, str]]) -> int:
        """Add (channel, recipient, reason, source) suppressions; existing ones are kept as they are.

        A read-only ledger (a dry-run's) records none: the run applies its suppression files itself.
        """
        if self.read_only:
            return 0
        rows = [dict(channel=c, recipient=r, reason=why, source=src, created_at=now()) for c, r, why, src in entries]
        for chunk in _chunks(rows):
            with self.engine.begin() as conn:
                conn.execute(self._insert(suppressions).on_conflict_do_nothing(), chunk)
        return len(rows)

    @_database_errors
    def unsuppress(self, channel: str, recipients: Iterable[str], *, before: datetime | None = None) -> int:
        """Lift the suppressions a STOP reply made (LIFTABLE) for these recipients, as a START reply does; one from a
        suppression file stays. ``before``: only those made at or before that time (a STOP after the START holds).
        Return how many were lifted."""
        if self.read_only:
            return 0
        with self.engine.begin() as conn:
            return self._unsuppress(conn, channel, list(recipients), before)

    @staticmethod
    def _unsuppress(conn: sa.Connection, channel: str, recipients: list[str], before: datetime | None) -> int:
        lifted = 0
        for chunk in _chunks(recipients):
            where = [suppressions.c.channel == channel, suppressions.c.recipient.in_(chunk),
                     suppressions.c.source.in_(LIFTABLE)]
            if before is not None:
                where.append(suppressions.c.created_at <= before)
            lifted += conn.execute(suppressions.delete().where(*where)).rowcount or 0
        return lifted

    def triage(
        self,
        messages: Iterable[Message],
        *,
        resend_after: timedelta | None = None,
        retry_unknown: bool = False,
        check_suppressions: bool = True,
    ) -> Iterator[Decision]:
        """Decide per message from its ledger row: new or transiently failed → send; the rest → skip with why.

        Suppressed recipients are skipped unless ``check_suppressions`` is off (plan.Triage applies them
        itself, with an emergency notice's override).
        """
        try:
            yield from self._triage(messages, resend_after, retry_unknown, check_suppressions)
        except (sa.exc.DBAPIError, sqlite3.Error) as exc:
            raise self._failure(exc) from None

    @_database_errors
    def has_notice(self, notice: str) -> bool:
        """Whether any message of this notice, any version or channel, was ever recorded here."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(sa.literal(1)).where(deliveries.c.notice == notice).limit(1)).first()
        return found is not None

    def _triage(
        self, messages: Iterable[Message], resend_after: timedelta | None, retry_unknown: bool, check_suppressions: bool
    ) -> Iterator[Decision]:
        suppressed = self.suppressed() if check_suppressions else {}
        for chunk in _chunks(messages):
            ids = [m.id for m in chunk]
            with self.engine.connect() as conn:
                rows = {r.message_id: r for r in self._sql.rows(conn, ids)}
                # only a message with no row of its own is looked up under its equivalents (Message.equivalents)
                others = [i for m in chunk if m.id not in rows for i in m.equivalent_ids()]
                if others:
                    rows |= {r.message_id: r for r in self._sql.rows(conn, others)}
                # who is alive matters only for rows in flight, which a fresh notice has none of
                live = self._live_runs(conn) if any(r.status == "inflight" for r in rows.values()) else set()
            for message in chunk:
                if message.recipient in suppressed.get(message.channel, ()):
                    yield Decision(message, False, "suppressed")
                    continue
                row = rows.get(message.id)
                if row is None:
                    # this release reached the recipient under another version: recorded before versions were per
                    # language, or in another language before the contact's was corrected; that row decides, and
                    # an unknown one is looked up as it was written (Decision.version)
                    row = next((r for i in message.equivalent_ids() if (r := rows.get(i)) is not None and r.status not in ("retry", "held")), None)
                decision = self._decide(message, row, live, resend_after, retry_unknown)
                if row is not None and row.message_id != message.id and decision.unknown:
                    decision = replace(decision, version=row.version)
                yield decision if row is None else replace(decision, recorded=True)

    @staticmethod
    def _decide(message: Message, row: Any, live: set[str], resend_after: timedelta | None, retry_unknown: bool) -> Decision:
        if row is None or row.status in ("retry", "previewed", "held"):
            return Decision(message, True)
        if row.status == "sent":
            sent_at = _aware(row.sent_at)
            if resend_after is not None and sent_at is not None and now() - sent_at >= resend_after:
                return Decision(message, True, "reminder")
            return Decision(message, False, "already sent")
        if row.status == "failed":
            return Decision(message, False, f"failed before: {row.reason or 'no reason recorded'}")
        if row.status == "skipped":
            return Decision(message, False, row.reason or "skipped before")
        if row.status == "inflight" and row.run_id in live:
            return Decision(message, False, "being sent by another run")
        # inflight from a dead run, or a lost answer: it may have been delivered
        since, tried_in = _aware(row.last_at), row.language or ""
        if retry_unknown:
            return Decision(message, True, "retrying unknown", unknown=True, since=since, language=tried_in)
        return Decision(
            message, False, "unknown: may have been sent; re-run with --retry-unknown to send again",
            unknown=True, since=since, language=tried_in,
        )

    # -- sending -------------------------------------------------------------------------------

    @_database_errors
    def claim(self, decisions: Sequence[Decision]) -> list[Message]:
        """Mark messages in flight for this run before the provider is called; return those this run owns.

        A row is taken over only from the state triage saw (new, transient failure, reminder, or an
        unknown the person chose to retry), so a message another run holds or has settled meanwhile
        is not returned: two runs against one ledger never both send to the same recipient.
        """
        if self.run_id is None:
            raise LedgerError("claim() before start_run()", hint="this is a bug in broadcast; please report it")
        owned: list[Message] = []
        for chunk in _chunks(decisions, CLAIM_CHUNK):
            stamp = now()
            with self.engine.begin() as conn:
                # the common case, a message never tried before, is one multi-row INSERT that says which rows it made
                mine = self._sql.insert_new(conn, [d.message for d in chunk], self.run_id, stamp)
                existing = [d for d in chunk if d.message.id not in mine]
                if existing:
                    mine |= self._take_over(conn, existing, stamp)
            owned.extend(d.message for d in chunk if d.message.id in mine)
        return owned

    def _take_over(self, conn: sa.Connection, decisions: list[Decision], stamp: Any) -> set[str]:
        """Claim rows that exist already, each only from the state triage saw and never from a live run."""
        live = self._live_runs(conn) - {self.run_id}
        groups: dict[tuple[str, ...], list[str]] = {}
        for d in decisions:
            groups.setdefault(_takeover_from(d), []).append(d.message.id)
        for statuses, ids in groups.items():
            conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.message_id.in_(ids),
                    deliveries.c.status.in_(statuses),
                    sa.or_(deliveries.c.run_id.is_(None), deliveries.c.run_id.not_in(live)) if live else sa.true(),
                )
                .values(status="inflight", run_id=self.run_id, attempts=deliveries.c.attempts + 1, last_at=stamp)
            )
        return set(
            conn.execute(
                sa.select(deliveries.c.message_id).where(
                    deliveries.c.message_id.in_([d.message.id for d in decisions]),
                    deliveries.c.run_id == self.run_id,
                    deliveries.c.status == "inflight",
                )
            ).scalars()
        )

    @_database_errors
    def hold(self, held: Sequence[tuple[Message, datetime]]) -> None:
        """Record messages held for quiet hours, each with its release time (UTC), so `status` counts them.

        A new row is made 'held'; an existing one only from a state that was not sent either (retry, previewed,
        held): a row another run claimed, or one sent, unknown or failed, is left exactly as it is.
        """
        stamp = now()
        for chunk in _chunks(held):
            with self.engine.begin() as conn:
                rows = [
                    dict(message_id=m.id, notice=m.notice_id, version=m.version, channel=m.channel,
                         recipient=m.recipient, contact=m.contact_key, language=m.language, status="held", attempts=0,
                         reason=until.isoformat(), run_id=None, first_at=stamp, last_at=stamp)
                    for m, until in chunk
                ]
                conn.execute(self._insert(deliveries).on_conflict_do_nothing(), rows)
                conn.execute(
                    deliveries.update()
                    .where(deliveries.c.message_id == sa.bindparam("m_id"),
                           # or_, not in_: an expanding IN cannot take one row of parameters per message
                           sa.or_(*(deliveries.c.status == s for s in ("retry", "previewed", "held"))))
                    # no run holds a held row: a run that is still going (sending email) must not keep it from
                    # the first run after the quiet hours
                    .values(status="held", reason=sa.bindparam("until"), run_id=None, last_at=stamp),
                    [{"m_id": m.id, "until": until.isoformat()} for m, until in chunk],
                )

    @_database_errors
    def settle(self, receipts: Sequence[Receipt]) -> None:
        """Record what the provider said, in one transaction per chunk; learn suppressions from STOP replies."""
        stamp = now()
        for chunk in _chunks(receipts):
            with self.engine.begin() as conn:
                self._sql.settle(conn, chunk, self.run_id, stamp)
                posted = [dict(message_id=r.message_id, posts=" ".join(r.thread), recorded_at=stamp) for r in chunk if r.thread]
                if posted:
                    conn.execute(self._insert(threads).on_conflict_do_nothing(), posted)
        learned = [(r.channel, r.recipient, r.reason or "opted out", "provider") for r in receipts if r.suppress]
        if learned:
            self.suppress(learned)

    # -- reading -------------------------------------------------------------------------------

    @_database_errors
    def status(self, notice: str) -> dict[str, Any]:
        """The notice's timeline (each release: version number, phase, CAP type, time) and, per channel, language and
        version, counts by status, failures by reason, and the last run's time."""
        columns = (deliveries.c.channel, deliveries.c.language, deliveries.c.version)
        with self.engine.connect() as conn:
            live = self._live_runs(conn)
            counts = conn.execute(
                sa.select(
                    *columns, deliveries.c.status, deliveries.c.reason,
                    deliveries.c.run_id, sa.func.count(), sa.func.max(deliveries.c.last_at),
                )
                .where(deliveries.c.notice == notice)
                .group_by(*columns, deliveries.c.status, deliveries.c.reason, deliveries.c.run_id)
            ).all()
            last_run = conn.execute(
                sa.select(sa.func.max(runs.c.started_at)).where(runs.c.notice == notice)
            ).scalar()
            suppressed = conn.execute(sa.select(sa.func.count()).select_from(suppressions)).scalar()
        table: dict[tuple[str, str, str], dict[str, Any]] = {}
        for channel, language, version, status, reason, run_id, n, last in counts:
            entry = table.setdefault(
                (channel, language, version),
                {"channel": channel, "language": language, "version": version, "sent": 0, "failed": 0, "skipped": 0,
                 "unknown": 0, "in_flight": 0, "retry": 0, "previewed": 0, "failed_reasons": Counter(), "last_at": None,
                 "held": 0, "held_until": None},
            )
            if status in ("inflight", "claimed"):
                status = "in_flight" if run_id in live else "unknown"
            entry[status] = entry.get(status, 0) + n
            if status == "failed":
                entry["failed_reasons"][reason or "no reason recorded"] += n
            if status == "held" and reason and (entry["held_until"] is None or reason > entry["held_until"]):
                entry["held_until"] = reason  # the latest release, ISO in UTC: by then every one of them is due
            last = _aware(last)
            if last and (entry["last_at"] is None or last > entry["last_at"]):
                entry["last_at"] = last
        rows = []
        for entry in sorted(table.values(), key=lambda e: (e["channel"], e["language"], e["last_at"] or now())):
            entry["failed_reasons"] = dict(entry["failed_reasons"])
            entry["last_at"] = entry["last_at"].isoformat() if entry["last_at"] else None
            rows.append(entry)
        timeline = [
            {"number": r["number"], "phase": r["phase"], "type": r["msg_type"], "sent_at": r["sent_at"].isoformat(),
             "note": r["note"]}
            for r in self.releases(notice)
        ]
        return {
            "notice": notice,
            "last_run": _aware(last_run).isoformat() if last_run else None,
            "suppressions": suppressed,
            "cancelled": bool(timeline) and timeline[-1]["type"] == "Cancel",
            "timeline": timeline,
            "rows": rows,
        }

    # -- delivery results and replies (results.py says what an event means; the ledger keeps it) ----------------

    @_database_errors
    def apply_results(self, rows: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
        """Record provider events prepared by results.record, each once, one transaction per chunk (a crash loses a
        whole chunk, and applying it again is harmless).

        A row has: key, channel, kind, provider_id, recipient, at, reason, text; ``rank`` (the state's order, None
        for an event that is no delivery state); ``action`` (None, or a reply's: "", "opt-out", "opt-in");
        ``suppress`` (a reason to suppress the recipient on the channel, or None). Return per row what it did:
        ("duplicate" | "unmatched" | "advanced" | "kept" | "reply" | "noted", suppressions added (1) or lifted (-n)).
        """
        if self.read_only:
            raise LedgerError("a read-only ledger records no results", hint="this is a bug in broadcast; please report it")
        done: list[tuple[str, int]] = []
        for chunk in _chunks(rows):
            with self.engine.begin() as conn:
                if not self._results_indexed:
                    # results find their message by the provider's id, and replies by the sender's address: indexed
                    # only once results are recorded, so a ledger that never syncs does not pay for them on every
                    # claim and settle
                    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_deliveries_provider_id ON deliveries (provider_id)"))
                    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_deliveries_recipient ON deliveries (recipient)"))
                    self._results_indexed = True
                done.extend(self._apply_result(conn, row) for row in chunk)
        return done

    _results_indexed = False

    @functools.cached_property
    def _results_sql(self) -> dict[str, Any]:
        """The statements apply_results runs for every event, built once: building a statement per event cost
        more than running it (profiled)."""
        b, insert = sa.bindparam, self._insert
        latest = deliveries.c.sent_at.desc()
        pick = sa.select(deliveries.c.message_id, deliveries.c.recipient)
        return {
            "event": insert(events).values(
                key=b("key"), channel=b("channel"), kind=b("kind"), provider_id=b("provider_id"),
                message_id=b("message_id"), at=b("at"), reason=b("reason"), recorded_at=b("stamp"),
            ).on_conflict_do_nothing().returning(events.c.key),
            "by_id": pick.where(deliveries.c.channel == b("channel"), deliveries.c.provider_id == b("provider_id"))
            .order_by(latest).limit(1),
            "by_id_and_address": pick.where(
                deliveries.c.channel == b("channel"), deliveries.c.provider_id == b("provider_id"),
                sa.func.lower(deliveries.c.recipient) == b("address")).order_by(latest).limit(1),
            "by_address": pick.where(
                deliveries.c.channel == b("channel"), deliveries.c.recipient == b("recipient"),
                deliveries.c.status == "sent").order_by(latest).limit(1),
            # the notice a person answers is the last one sent to them on that channel; a provider's clock may run a
            # little ahead of ours, so a message recorded just after the reply still counts
            "answered": sa.select(deliveries.c.notice, deliveries.c.contact, deliveries.c.language).where(
                deliveries.c.channel == b("channel"), deliveries.c.recipient == b("recipient"),
                deliveries.c.status == "sent", deliveries.c.sent_at <= b("until")).order_by(latest).limit(1),
            "reply": insert(replies).values(
                key=b("key"), channel=b("channel"), sender=b("recipient"), notice=b("notice"), contact=b("contact"),
                language=b("language"), text=b("text"), action=b("action"), at=b("at"),
            ).on_conflict_do_nothing(),
            "outcome": insert(outcomes).values(
                message_id=b("message_id"), state=b("kind"), rank=b("rank"), at=b("at"), reason=b("reason"),
            ).on_conflict_do_update(
                index_elements=[outcomes.c.message_id],
                set_={"state": b("kind"), "rank": b("rank"), "at": b("at"), "reason": b("reason")},
                # a state only moves forward: a late "sent" never overwrites "delivered"
                where=outcomes.c.rank < b("rank"),
            ).returning(outcomes.c.message_id),
            "suppress": insert(suppressions).values(
                channel=b("channel"), recipient=b("recipient"), reason=b("suppress"), source=b("source"),
                created_at=b("at"),
            ).on_conflict_do_nothing().returning(suppressions.c.recipient),
        }

    def _apply_result(self, conn: sa.Connection, row: dict[str, Any]) -> tuple[str, int]:
        sql = self._results_sql
        values = {**row, "provider_id": row["provider_id"] or "", "reason": row["reason"] or "", "text": row["text"] or "",
                  "stamp": now()}
        target = None
        if row["action"] is None:
            if row["provider_id"] and row["recipient"]:
                target = conn.execute(sql["by_id_and_address"], {**values, "address": row["recipient"].lower()}).first()
            elif row["provider_id"]:
                target = conn.execute(sql["by_id"], values).first()
            elif row["recipient"]:
                target = conn.execute(sql["by_address"], values).first()
        values["message_id"] = target.message_id if target is not None else None
        if conn.execute(sql["event"], values).first() is None:
            return "duplicate", 0
        change = 0
        if row["action"] is not None:
            result = "reply"
            last = conn.execute(sql["answered"], {**values, "until": row["at"] + REPLY_SKEW}).first()
            conn.execute(sql["reply"], {**values, "notice": last.notice if last else "",
                                        "contact": last.contact if last else "", "language": last.language if last else ""})
            if row["action"] == "opt-in":
                change = -self._unsuppress(conn, row["channel"], [row["recipient"]], row["at"])
        elif target is None:
            result = "unmatched"
        elif row["rank"] is None:
            result = "noted"
        else:
            result = "advanced" if conn.execute(sql["outcome"], values).first() is not None else "kept"
        recipient = target.recipient if target is not None else row["recipient"]
        if row["suppress"] and recipient:
            source = "reply" if row["action"] is not None else "provider"
            added = conn.execute(sql["suppress"], {**values, "recipient": recipient, "source": source}).first()
            change = 1 if added is not None else 0
        return result, change

    @_database_errors
    def unsettled(self, notice: str, channel: str, final_rank: int) -> list[tuple[str, str, str, datetime | None]]:
        """(message id, provider id, recipient, sent at) of the notice's messages on ``channel`` the provider accepted
        whose state is not final yet (below ``final_rank``): what `sync` asks the provider about."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.message_id, deliveries.c.provider_id, deliveries.c.recipient, deliveries.c.sent_at)
                .select_from(deliveries.outerjoin(outcomes, outcomes.c.message_id == deliveries.c.message_id))
                .where(deliveries.c.notice == notice, deliveries.c.channel == channel, deliveries.c.status == "sent",
                       deliveries.c.provider_id.is_not(None),
                       sa.or_(outcomes.c.rank.is_(None), outcomes.c.rank < final_rank))
                .order_by(deliveries.c.sent_at, deliveries.c.message_id)
            )
            return [(m, p, r, _aware(at)) for m, p, r, at in rows]

    @_database_errors
    def cursor(self, notice: str, channel: str) -> str | None:
        """Where the last `sync` of this notice's channel stopped, or None before the first."""
        with self.engine.connect() as conn:
            if not _has_table(conn, sync_cursors):
                return None
            return conn.execute(
                sa.select(sync_cursors.c.position).where(sync_cursors.c.notice == notice, sync_cursors.c.channel == channel)
            ).scalar()

    @_database_errors
    def move_cursor(self, notice: str, channel: str, position: str) -> None:
        """Remember where `sync` got to, once what it read before is recorded."""
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(sync_cursors).values(notice=notice, channel=channel, position=position, updated_at=now())
                .on_conflict_do_update(index_elements=[sync_cursors.c.notice, sync_cursors.c.channel],
                                       set_={"position": position, "updated_at": now()})
            )

    @_database_errors
    def outcomes(self, notice: str) -> list[dict[str, Any]]:
        """One row per message of the notice on a personal channel: channel, recipient, contact, language, the
        ledger's status, and the provider's latest state (state, at, reason; "" before any result)."""
        with self.engine.connect() as conn:
            has = _has_table(conn, outcomes)
            columns = [deliveries.c.message_id, deliveries.c.channel, deliveries.c.recipient, deliveries.c.contact,
                       deliveries.c.language,
                       deliveries.c.status, deliveries.c.reason, deliveries.c.sent_at, deliveries.c.last_at]
            if has:
                query = sa.select(*columns, outcomes.c.state, outcomes.c.at, outcomes.c.reason.label("why")).select_from(
                    deliveries.outerjoin(outcomes, outcomes.c.message_id == deliveries.c.message_id))
            else:
                query = sa.select(*columns)
            rows = conn.execute(query.where(deliveries.c.notice == notice).order_by(deliveries.c.last_at))
            out = []
            for row in rows:
                found = row._mapping
                out.append({
                    "message_id": found["message_id"],
                    "channel": found["channel"], "recipient": found["recipient"], "contact": found["contact"],
                    "language": found["language"], "status": found["status"], "reason": found["reason"] or "",
                    "sent_at": _aware(found["sent_at"]), "last_at": _aware(found["last_at"]),
                    "state": (found["state"] if has else None) or "", "state_at": _aware(found["at"]) if has else None,
                    "state_reason": (found["why"] if has else None) or "",
                })
            return out

    @_database_errors
    def replies(self, notice: str) -> list[dict[str, Any]]:
        """What people wrote back about the notice, oldest first: channel, sender, contact, language, text, action, at."""
        with self.engine.connect() as conn:
            if not _has_table(conn, replies):
                return []
            rows = conn.execute(sa.select(replies).where(replies.c.notice == notice).order_by(replies.c.at, replies.c.key))
            return [{**row._mapping, "at": _aware(row.at)} for row in rows]

    @_database_errors
    def follow_ups(self, notice: str) -> dict[tuple[str, str], datetime]:
        """(action, message id) → when the follow-up was planned, for the notice."""
        with self.engine.connect() as conn:
            if not _has_table(conn, follow_ups):
                return {}
            rows = conn.execute(sa.select(follow_ups.c.action, follow_ups.c.message_id, follow_ups.c.at)
                                .where(follow_ups.c.notice == notice))
            return {(action, message): _aware(at) for action, message, at in rows}

    @_database_errors
    def plan_follow_up(self, notice: str, action: str, message_id: str) -> None:
        """Record that a follow-up is planned; the first time stands. A read-only (dry-run) ledger records none."""
        if self.read_only:
            return
        with self.engine.begin() as conn:
            conn.execute(self._insert(follow_ups).values(notice=notice, action=action, message_id=message_id, at=now())
                         .on_conflict_do_nothing())

    @_database_errors
    def suppressions_of(self, channel: str | None = None) -> list[dict[str, Any]]:
        """The suppressions recorded, with reason, source and time: what `status` counts and tests look at."""
        with self.engine.connect() as conn:
            query = sa.select(suppressions)
            if channel is not None:
                query = query.where(suppressions.c.channel == channel)
            return [{**row._mapping, "created_at": _aware(row.created_at)} for row in conn.execute(query)]

    # -- approvals and the audit log (approve.py decides; the ledger keeps) -------------------------------------

    @_database_errors
    def ledger_id(self) -> str:
        """This ledger's own id, made once when first asked: an approval names the ledger it was made for."""
        with self.engine.connect() as conn:
            if _has_table(conn, ledger_meta):
                found = conn.execute(sa.select(ledger_meta.c.value).where(ledger_meta.c.key == "ledger_id")).scalar()
                if found or self.read_only:
                    return found or ""
            elif self.read_only:
                return ""
        with self.engine.begin() as conn:
            # two runs asking at once keep the first id
            conn.execute(self._insert(ledger_meta).values(key="ledger_id", value=uuid.uuid4().hex).on_conflict_do_nothing())
            return conn.execute(sa.select(ledger_meta.c.value).where(ledger_meta.c.key == "ledger_id")).scalar_one()

    @_database_errors
    def approvals(self, notice: str) -> list[dict[str, Any]]:
        """The notice's approvals and revocations, first to last."""
        with self.engine.connect() as conn:
            if not _has_table(conn, approvals):
                return []
            rows = conn.execute(sa.select(approvals).where(approvals.c.notice == notice).order_by(approvals.c.number))
            return [{**row._mapping, "approved_at": _aware(row.approved_at)} for row in rows]

    @_database_errors
    def add_approval(self, row: dict[str, Any]) -> bool:
        """Add an approval or revocation under ``row["number"]``; False when another approver took that number
        first (the two raced: the second must look again at what is now recorded)."""
        with self.engine.begin() as conn:
            inserted = conn.execute(
                self._insert(approvals).values(**row).on_conflict_do_nothing().returning(approvals.c.number)
            )
            return inserted.first() is not None

    @_database_errors
    def append_audit(self, row: dict[str, Any]) -> None:
        """Add one event to the audit log; never updates or deletes one."""
        with self.engine.begin() as conn:
            conn.execute(audit.insert().values(**row))

    @_database_errors
    def audit_log(self, notice: str) -> list[dict[str, Any]]:
        """The notice's audit events, oldest first."""
        with self.engine.connect() as conn:
            if not _has_table(conn, audit):
                return []
            rows = conn.execute(sa.select(audit).where(audit.c.notice == notice).order_by(audit.c.id))
            return [{**row._mapping, "at": _aware(row.at)} for row in rows]

    def close(self) -> None:
        self.finish_run()
        self.engine.dispose()


class _PerMessage:
    """The three statements a send runs for every message (triage, claim, settle), given to the driver directly.

    Profiled, SQLAlchemy Core's per-row parameter handling took about 80% of their time and the database 20%;
    here each row is a plain tuple and a timestamp is converted once per statement. The SQL is portable
    between SQLite and PostgreSQL; only the parameter marker differs.
    """

    _COLUMNS = (
        "message_id", "notice", "version", "channel", "recipient", "contact", "language", "status", "attempts",
        "run_id", "first_at", "last_at",
    )

    def __init__(self, dialect: sa.Dialect) -> None:
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        kind = deliveries.c.last_at.type.dialect_impl(dialect)
        self._to_db = kind.bind_processor(dialect) or (lambda value: value)
        self._from_db = kind.result_processor(dialect, None) or (lambda value: value)
        row = "(" + ", ".join([self.mark] * len(self._COLUMNS)) + ")"
        self._insert = (f"INSERT INTO deliveries ({', '.join(self._COLUMNS)}) VALUES {{rows}} "
                        "ON CONFLICT DO NOTHING RETURNING message_id")
        self._row = row
        m = self.mark
        self._settle = (
            f"UPDATE deliveries SET status = {m}, provider_id = {m}, reason = {m}, last_at = {m}, "
            f"sent_at = CASE WHEN {m} = 'sent' THEN {m} ELSE sent_at END WHERE message_id = {m} AND run_id = {m}"
        )

    def rows(self, conn: sa.Connection, ids: list[str]) -> list[_Row]:
        marks = ", ".join([self.mark] * len(ids))
        found = conn.exec_driver_sql(
            "SELECT message_id, status, reason, run_id, sent_at, last_at, language, version FROM deliveries "
            f"WHERE message_id IN ({marks})",
            tuple(ids),
        )
        return [
            _Row(i, s, why, run, self._from_db(sent), self._from_db(last), lang, version)
            for i, s, why, run, sent, last, lang, version in found
        ]

    def insert_new(self, conn: sa.Connection, messages: list[Message], run_id: str, stamp: datetime) -> set[str]:
        """Insert rows for messages the ledger has never seen, in flight for ``run_id``; return the ids inserted."""
        when = self._to_db(stamp)
        values: list[Any] = []
        for m in messages:
            values += (m.id, m.notice_id, m.version, m.channel, m.recipient, m.contact_key, m.language, "inflight", 1,
                       run_id, when, when)
        sql = self._insert.format(rows=", ".join([self._row] * len(messages)))
        return {row[0] for row in conn.exec_driver_sql(sql, tuple(values))}

    def settle(self, conn: sa.Connection, receipts: Sequence[Receipt], run_id: str, stamp: datetime) -> None:
        when = self._to_db(stamp)
        conn.exec_driver_sql(
            self._settle,
            [(_stored(r.status), r.provider_id, r.reason, when, _stored(r.status), when, r.message_id, run_id) for r in receipts],
        )


def _has_table(conn: sa.Connection, table: sa.Table) -> bool:
    """Whether the ledger has this table: one an older broadcast made, opened read-only, may not have it yet."""
    return sa.inspect(conn).has_table(table.name)


def _stored(status: str) -> str:
    """The ledger's word for a receipt status: a message Ctrl-C kept from starting is sent by the next run, as a
    transient failure is, so both are stored as "retry"."""
    return "retry" if status == "not_started" else status


@dataclass(frozen=True, slots=True)
class _Row:
    """A deliveries row as triage reads it."""

    message_id: str
    status: str
    reason: str | None
    run_id: str | None
    sent_at: datetime | None
    last_at: datetime | None
    language: str
    version: str


def _in_memory(url: str) -> bool:
    if not url.startswith("sqlite"):
        return False
    try:
        path = sa.engine.make_url(url).database
    except (sa.exc.ArgumentError, ValueError):
        return False
    return not path or path == ":memory:" or "mode=memory" in url


def _read_only_engine(path: str) -> sa.Engine:
    """SQLite opened with mode=ro: nothing is written, not even the WAL switch or a lock (status, dry-run)."""
    target = f"file:{quote(os.path.abspath(path))}"

    def connect() -> sqlite3.Connection:
        if not Path(path).is_file():
            # mode=ro would say only "unable to open database file"
            raise sqlite3.OperationalError(f"no ledger file at {path}")
        conn = sqlite3.connect(f"{target}?mode=ro", uri=True, timeout=60, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_CANTOPEN:
                raise
            # A WAL ledger whose folder we may not write: SQLite cannot make the -shm file a reader needs.
            # Nobody can be writing through this folder either, so read the file as it is.
            conn.close()
            conn = sqlite3.connect(f"{target}?mode=ro&immutable=1", uri=True, timeout=60, check_same_thread=False)
        return conn

    return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)


def _widen(conn: sa.Connection) -> None:
    """A PostgreSQL ledger made before these columns were Text still has VARCHAR(n): widen them in place.

    VARCHAR to TEXT changes no stored value and needs no table rewrite on PostgreSQL; create_all never alters
    an existing table, so without this a long host name or --web-dir would fail every run on such a ledger.
    """
    if conn.dialect.name != "postgresql":
        return
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        found = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            kind = found.get(column.name)
            if isinstance(column.type, sa.Text) and isinstance(kind, sa.String) and getattr(kind, "length", None):
                conn.execute(sa.text(f'ALTER TABLE {table.name} ALTER COLUMN "{column.name}" TYPE TEXT'))


def default_url(notice_path: str | Path) -> str:
    """The ledger beside the notice file (NOTICE_FOLDER/.broadcast/ledger.db), whichever folder broadcast runs from."""
    folder = Path(os.path.abspath(notice_path)).parent
    return f"sqlite:///{folder / '.broadcast' / 'ledger.db'}"


def masked_url(url: str) -> str:
    """The ledger's URL as it may be printed: the password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        from broadcast.config import mask

        return mask(url)


def ledger_exists(url: str) -> bool:
    """Whether there is a ledger to read; only a SQLite file can be absent, a server URL always counts."""
    if not url.startswith("sqlite"):
        return True
    path = sa.engine.make_url(url).database
    # an in-memory URL "exists" so that opening it gives the same refusal a live send gets
    return not path or path == ":memory:" or Path(path).is_file()


def _takeover_from(decision: Decision) -> tuple[str, ...]:
    """The ledger states a message may be claimed from, given what triage decided about it."""
    if decision.reason == "reminder":
        return ("sent",)
    if decision.unknown:
        return ("inflight", "unknown")
    return ("retry", "previewed", "held")


def _chunks(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", exc)).splitlines()
    return lines[0] if lines else type(exc).__name__


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``7d`` → timedelta; the unit is required so nobody guesses."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration; write it like 90s, 15m, 24h or 7d")
    value, unit = float(match.group(1)), match.group(2)
    try:
        return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])
    except OverflowError:
        raise ValueError(f"{text.strip()!r} is longer than any reminder could wait; write it like 30d or 365d") from None


# -- which ledger a run uses ---------------------------------------------------------------------


def resolve_url(url: str | None, notice_path: str | Path | None = None) -> str:
    """The ledger a run uses: --ledger / BROADCAST_LEDGER, else the one beside the notice file (ledger.default_url)."""
    return url or os.environ.get("BROADCAST_LEDGER") or (default_url(notice_path) if notice_path else DEFAULT_URL)


def open_ledger(url: str | None, *, dry_run: bool, notice: str | Path | None = None) -> Ledger | None:
    """The ledger for a run; a dry-run only reads one that exists, read-only, and never creates it."""
    url = resolve_url(url, notice)
    if dry_run and not ledger_exists(url):
        return None
    return Ledger(url, read_only=dry_run)


def stray_ledger(notice_path: str | Path, url: str, *, live: bool, chosen: str | None = None) -> tuple[str, str] | None:
    """The ledger broadcast used before it moved beside the notice (./.broadcast in the working folder), when it
    knows this notice and the ledger ``url`` does not: planning a first send from there would reach everyone again.

    Checked before the run opens (and so creates) its own ledger, and only for the default: a ledger ``chosen``
    with --ledger / BROADCAST_LEDGER is the person's decision. A live send refuses (LedgerError); a dry-run
    gets the warning back, as (where, message).
    """
    from broadcast.notice import load_notice

    old = Path(os.path.abspath(".broadcast/ledger.db"))
    if chosen or not url.startswith("sqlite:///") or not old.is_file():
        return None
    new = Path(os.path.abspath(url.removeprefix("sqlite:///")))
    if new == old:
        return None
    notice = load_notice(notice_path).id

    def knows(path: Path) -> bool:
        ledger = Ledger(f"sqlite:///{path}", read_only=True)
        try:
            return ledger.has_notice(notice)
        finally:
            ledger.engine.dispose()

    if (new.is_file() and knows(new)) or not knows(old):
        return None
    message = (
        f"{notice} has deliveries in {old} (the ledger of the folder you run from), but none in {masked_url(url)}, "
        "the ledger beside the notice file that broadcast now uses; planned as a first send, it would reach "
        "everyone again" + ("; nothing was sent" if live else "")
    )
    if new.exists():
        hint = f"use the old ledger for this notice: --ledger sqlite:///{old} ({new} already holds other notices)"
    else:
        hint = f"move the ledger beside the notice: mkdir -p {new.parent} && mv {old}* {new.parent}/"
    if live:
        raise LedgerError(message, hint=hint)
    return "ledger", f"{message}. {hint}"


@contextmanager
def reading(notice: str, url: str | None, *, nothing: str, hint: str) -> Iterator[tuple[Ledger, str, str]]:
    """The ledger a reading command (`status`, `log`) uses, opened read-only, with the notice id and the ledger as
    it may be shown; ``notice`` may be the id or the notice file (whose ledger is the one beside it)."""
    from broadcast.notice import load_notice

    path = None
    if notice.endswith((".yaml", ".yml")) and Path(notice).is_file():
        path, notice = notice, load_notice(notice).id
    where = resolve_url(url, path)
    ledger = open_ledger(where, dry_run=True)
    if ledger is None:
        raise LedgerError(f"no ledger yet at {masked_url(where)}: {nothing}", hint=hint)
    try:
        yield ledger, notice, masked_url(where)
    finally:
        ledger.engine.dispose()


def status(notice: str, url: str | None) -> dict[str, Any]:
    """The ledger's view of a notice; ``notice`` may be its id or the notice file."""
    with reading(
        notice, url, nothing="nothing has been sent with it",
        hint="run `broadcast send … --yes` first; give `status` the notice file to read the ledger beside it, "
        "or point --ledger / BROADCAST_LEDGER at the shared ledger",
    ) as (ledger, notice_id, shown):
        return {**ledger.status(notice_id), "ledger": shown}
