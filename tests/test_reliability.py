"""Reliability in figures: seeded provider faults and SIGKILLs mid-send, re-runs until nothing is owed.

Every valid recipient must end sent, failed with a named permanent reason, or unknown where the README allows it
(SendGrid answers lost, crashed email batches), and the fakes must never see one message twice.
Each test prints its figures (run with ``-s`` to read them).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from broadcast.channels.sendgrid import SendGridChannel
from broadcast.channels.twilio import TwilioChannel
from broadcast.channels.x import XChannel
from broadcast.cli import main
from tests.conftest import EXAMPLE

REPO = Path(__file__).resolve().parent.parent
from tests.fakes import Faults, SendGridFake, TwilioFake, XFake
from tests.fakes.fixtures import use_fakes

#: contact languages: the notice's own, regional tags that fall back to the base, others that fall back to English
LANGUAGES = ("en", "sw", "sl", "sl-SI", "sw-KE", "de", "pt-BR", "")
NAMES = ("Ana Novak", "Wanjiru Kamau", "Oliver Bennett", "Žiga Černe", "Otieno O'Brien", "", "Zoë Müller")

#: why a recipient may end "failed": the permanent refusals the fakes are scripted to give, in the adapters' words
PERMANENT = {
    "sms": ("invalid phone number (Twilio 21211)", "replied STOP", "region is not enabled"),
    "email": ("SendGrid refused this recipient",),
}


#: the example's Slovenian SMS is 9 segments; these tests are about delivery, not length
LONG_SMS = ("--max-sms-segments", "10")


def phone_of(n: int) -> str:
    """Contact n's mobile number, in Slovenia, Kenya or the UK."""
    return ("+38641{:06d}", "+254712{:06d}", "+447911{:06d}")[n % 3].format(n)


def email_of(n: int) -> str:
    return f"person{n}@example.org"


def write_contacts(path: Path, count: int, *, seed: int) -> Path:
    """Contacts 0 … count-1, each with an email and a mobile number, in mixed languages, some without a name.

    The same seed gives contact n the same name and language however long the list, so a list can grow.
    """
    rng = random.Random(seed)
    lines = ["name,email,phone,language,channels,tags"]
    for n in range(count):
        name, language = rng.choice(NAMES), rng.choice(LANGUAGES)
        lines.append(f'"{name}",{email_of(n)},{phone_of(n)},{language},,tag{n % 5}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ledger_rows(url: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(channel, recipient) → (status, reason) for every row of the ledger."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT channel, recipient, status, reason FROM deliveries").all()
    finally:
        engine.dispose()
    return {(channel, recipient): (status, reason) for channel, recipient, status, reason in rows}


def cli(*args: object) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def send_json(*args: object) -> dict[str, Any]:
    result = cli("send", *args, *LONG_SMS, "--yes", "--json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def figures(title: str, **values: object) -> None:
    print(f"\n[figures] {title}: " + json.dumps(values, sort_keys=True, default=str))


# -- 1. provider faults ----------------------------------------------------------------------------

#: the client gives up reading after this long; the fakes hold a "timeout" answer for twice as long
CLIENT_TIMEOUT = 0.25
FAULTS = dict(
    error_rate=0.10,  # 500 or 503, half each
    rate_limit_rate=0.03,  # each starts a burst of three 429s (Retry-After; Twilio's carry code 20429)
    timeout_before_rate=0.02,
    timeout_after_rate=0.03,
    drop_before_rate=0.02,
    drop_after_rate=0.03,
    timeout_delay=2 * CLIENT_TIMEOUT,
)
#: SendGrid gets one request per language and variant, so its answers are lost more often to show what that does
SENDGRID_FAULTS = dict(FAULTS, timeout_before_rate=0.06, timeout_after_rate=0.08, drop_before_rate=0.06, drop_after_rate=0.08)
MAX_RUNS = 8
CONTACTS = 240


@pytest.fixture()
def short_client_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds adapters with their 30 s default; a read timeout here needs one below the fakes' delay."""
    for adapter in (SendGridChannel, TwilioChannel, XChannel):
        monkeypatch.setitem(adapter.__init__.__kwdefaults__, "timeout", CLIENT_TIMEOUT)


def _owed(rows: dict[tuple[str, str], tuple[str, str | None]]) -> Counter[str]:
    """What a further run would still send on its own: transient failures, and SMS/X unknowns it can settle."""
    owed: Counter[str] = Counter()
    for (channel, _), (status, _) in rows.items():
        if status == "retry" or (status in ("inflight", "unknown") and channel in ("sms", "social")):
            owed[channel] += 1
    return owed


@pytest.mark.usefixtures("short_client_timeouts")
def test_provider_faults_end_sent_or_named_and_nothing_twice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """240 contacts on all four channels while every provider misbehaves (seeded), re-run until nothing is owed."""
    seed = 7
    faults = Faults(seed=seed, **FAULTS)
    with SendGridFake(faults=Faults(seed=seed, **SENDGRID_FAULTS)) as sendgrid, TwilioFake(faults=faults) as twilio, \
            XFake(faults=faults) as x:
        use_fakes(monkeypatch, sendgrid=sendgrid, twilio=twilio, x=x)
        ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
        monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
        monkeypatch.setenv("BROADCAST_LEDGER", ledger)
        monkeypatch.setenv("BROADCAST_WEB_DIR", str(tmp_path / "web"))
        contacts = write_contacts(tmp_path / "contacts.csv", CONTACTS, seed=seed)
        # permanent refusals, one of each kind the README names
        refused = {
            "sms": {"+38641000003", "+254712000010", "+447911000020", "+38641000030"},
            "email": {"person40@example.org", "person41@example.org"},
        }
        twilio.invalid_numbers.update({"+38641000003", "+254712000010"})
        twilio.unsubscribed.add("+447911000020")
        twilio.region_disabled.add("+38641000030")
        sendgrid.reject_emails.update(refused["email"])

        runs: list[dict[str, Any]] = []
        for _ in range(MAX_RUNS):
            runs.append(send_json(EXAMPLE, "--contacts", contacts))
            rows = ledger_rows(ledger)
            if not _owed(rows):
                break
        injected = {
            "sendgrid": dict(sendgrid.faults_injected),
            "twilio": dict(twilio.faults_injected),
            "x": dict(x.faults_injected),
        }

        # nothing twice (email included, until a person says --retry-unknown), every request as documented
        for fake in (sendgrid, twilio, x):
            assert fake.duplicates() == {}, fake.provider
            assert fake.invalid == [], fake.provider
        assert _owed(rows) == Counter(), f"still owed after {len(runs)} runs"

        # every valid recipient: sent (and delivered once), failed with a named reason, or (email only) unknown
        delivered = {"email": sendgrid.delivery_counts(), "sms": twilio.delivery_counts()}
        outcome: dict[str, Counter[str]] = {"email": Counter(), "sms": Counter()}
        for n in range(CONTACTS):
            for channel, recipient in (("email", email_of(n)), ("sms", phone_of(n))):
                status, reason = rows[(channel, recipient)]
                times = delivered[channel][recipient]
                if status == "sent":
                    assert times == 1 and recipient not in refused[channel], (channel, recipient, reason)
                elif status == "failed":
                    assert times == 0 and any(words in (reason or "") for words in PERMANENT[channel]), reason
                    assert recipient in refused[channel], (channel, recipient, reason)
                else:
                    # SendGrid has no look-up: a batch whose answer was lost stays unknown, delivered or not,
                    # and is counted (a refused address in that batch is unknown too: SendGrid never answered)
                    assert channel == "email" and status == "unknown", (channel, recipient, status, reason)
                    status = "unknown, delivered" if times else "unknown, not delivered"
                outcome[channel][status] += 1
        assert outcome["sms"]["failed"] == len(refused["sms"])

        # the runs' --json counts are the fakes' counts
        total = {c: Counter() for c in ("email", "sms", "social", "web", "voice")}
        for run in runs:
            for channel, counts in run["channels"].items():
                total[channel].update({k: v for k, v in counts.items() if isinstance(v, int)})
        assert total["sms"]["sent"] + total["sms"]["reconciled"] == len(twilio.deliveries) == outcome["sms"]["sent"]
        assert total["email"]["sent"] == outcome["email"]["sent"]
        assert len(sendgrid.deliveries) == outcome["email"]["sent"] + outcome["email"]["unknown, delivered"]
        # X: one thread of 7 posts, never a post twice; a thread cut short by a lost answer must say so
        # (that it is cut short at all is test_a_lost_answer_mid_thread_still_posts_the_whole_thread)
        social_status, social_reason = rows[("social", "x:en")]
        assert social_status == "sent" and total["social"]["sent"] == 1
        posts_missing = 7 - len(x.deliveries)
        assert posts_missing == 0 or "thread may be incomplete" in (social_reason or ""), social_reason
        assert total["web"]["sent"] == 3

        # the unknown emails are where a person must choose: once SendGrid is healthy, --retry-unknown reaches
        # everyone it missed, and sends a second copy to exactly those whose answer was lost after delivery
        sendgrid.faults = Faults()
        retried = send_json(EXAMPLE, "--contacts", contacts, "--channel", "email", "--retry-unknown")
        unknown = outcome["email"]["unknown, delivered"] + outcome["email"]["unknown, not delivered"]
        assert retried["channels"]["email"]["sent"] + retried["channels"]["email"]["failed"] == unknown
        emailed = sendgrid.delivery_counts()
        assert len(sendgrid.duplicates()) == outcome["email"]["unknown, delivered"]
        assert all(emailed[email_of(n)] >= 1 for n in range(CONTACTS) if email_of(n) not in refused["email"])
        assert twilio.duplicates() == {} and x.duplicates() == {}

        figures(
            f"provider faults, seed {seed}",
            recipients={"email": CONTACTS, "sms": CONTACTS, "social": 1, "web": 3},
            runs_until_nothing_owed=len(runs),
            faults_injected=injected,
            faults_total=sum(sum(k.values()) for k in injected.values()),
            outcome={c: dict(v) for c, v in outcome.items()},
            sms_reconciled_on_a_later_run=total["sms"]["reconciled"],
            duplicates_sms_x=len(twilio.duplicates()) + len(x.duplicates()),
            duplicates_email_before_retry_unknown=0,
            lost_sms=0,
            email_retry_unknown={"resent": unknown, "duplicates": len(sendgrid.duplicates()), "lost_after": 0},
            x_posts_missing=posts_missing,
            requests={"sendgrid": len(sendgrid.requests), "twilio": len(twilio.requests), "x": len(x.requests)},
        )


# -- 2. crashes ------------------------------------------------------------------------------------

KILLS = 20
PER_ROUND = 20  # new contacts per round, so every round has sending to do
#: a short notice in two languages keeps each killed run quick to start
MINIMAL = Path(__file__).parent / "data" / "notices" / "minimal.yaml"
#: a warm interpreter that forks one `broadcast send` per request: each killed send starts in milliseconds,
#: where a fresh `python -m broadcast` spends a second importing the SDKs
ZYGOTE = r"""
import json, os, signal, sys
for name in sys.argv[1:]:
    __import__(name)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps children: a killed one is gone at once
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        null, log = os.open(os.devnull, os.O_RDONLY), os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        from broadcast.cli import main
        try:
            main(job["args"], prog_name="broadcast")
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
"""
PRELOAD = ["broadcast.cli", "broadcast.check", "broadcast.send", "broadcast.channels.sendgrid", "broadcast.channels.twilio", "broadcast.channels.web"]


@pytest.fixture(scope="module")
def zygote() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, *PRELOAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).parent.parent,
    )
    yield process
    process.stdin.close()  # its loop ends, and so does it
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start_send(zygote: Any, args: list[str], log: Path) -> int:
    """Fork a `broadcast send` with this test's environment and folder; its output goes to ``log``."""
    job = {"cwd": os.getcwd(), "env": dict(os.environ), "args": args, "log": str(log)}
    zygote.stdin.write(json.dumps(job) + "\n")
    zygote.stdin.flush()
    return int(zygote.stdout.readline())


def _kill_after(zygote: Any, fakes: list[Any], k: int, args: list[str], log: Path) -> tuple[int, bool]:
    """Start a send, SIGKILL it once the fakes have seen ``k`` more requests; return requests seen and whether it died."""
    before = sum(len(f.requests) for f in fakes)
    pid = _start_send(zygote, args, log)
    deadline = time.monotonic() + 30
    while sum(len(f.requests) for f in fakes) - before < k and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    killed = _alive(pid)
    if killed:
        os.kill(pid, signal.SIGKILL)
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not _alive(pid)
    if not killed:  # it finished first: then it must have finished well
        assert json.loads(log.read_text(encoding="utf-8"))["channels"], log.read_text(errors="replace")
    return sum(len(f.requests) for f in fakes) - before, killed


def test_sigkill_at_20_seeded_points_loses_nobody_and_sends_nothing_twice(
    zygote: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each round adds contacts and starts a send that is killed after k requests (k from a seeded RNG).

    The next round's send is the re-run after that kill: it first settles what the dead run left in flight,
    and is itself killed, so recovery is crashed too. A last run is left to finish; then every SMS recipient
    has exactly one SMS, and every email recipient is sent or unknown (SendGrid has no look-up).
    """
    rng = random.Random(20260307)
    # request validation is the faults test's job; here it would only slow each round
    with SendGridFake(latency=0.01, validate=False) as sendgrid, TwilioFake(latency=0.003, validate=False) as twilio:
        use_fakes(monkeypatch, sendgrid=sendgrid, twilio=twilio)
        ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
        monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
        monkeypatch.setenv("BROADCAST_LEDGER", ledger)
        monkeypatch.setenv("BROADCAST_WEB_DIR", str(tmp_path / "web"))
        # a dead run's SMS absent from Twilio's list counts as never sent only two provider timeouts after its
        # attempt (it may still be queued there); with the fakes' millisecond answers, 0.5 s is plenty
        monkeypatch.setenv("BROADCAST_PROVIDER_TIMEOUT", "0.5")
        contacts = tmp_path / "contacts.csv"
        options = ["--channel", "email,sms,web", *LONG_SMS, "--yes", "--json"]
        kill_points: list[int] = []
        finished_first = 0
        count = 0
        while len(kill_points) < KILLS:
            assert finished_first < KILLS, "most sends finished before their kill point"
            count += PER_ROUND
            # the same seed: earlier contacts keep their names and languages as the list grows
            write_contacts(contacts, count, seed=1)
            # every run makes at least PER_ROUND + 1 requests (the new SMS and an email batch), often more
            # (look-ups of what the run before left in flight): kill after any number of them
            k = rng.randrange(0, PER_ROUND + 1)
            seen, killed = _kill_after(
                zygote, [sendgrid, twilio], k, ["send", str(MINIMAL), "--contacts", str(contacts), *options],
                tmp_path / f"run{count}.log",
            )
            if killed:
                kill_points.append(seen)
            else:
                finished_first += 1
            assert twilio.duplicates() == {} and sendgrid.duplicates() == {}, f"after kill {len(kill_points)}"
        final = send_json(MINIMAL, "--contacts", contacts, "--channel", "email,sms,web")

        assert twilio.duplicates() == {} and sendgrid.duplicates() == {}
        rows = ledger_rows(ledger)
        sms_sent = twilio.delivery_counts()
        emails = sendgrid.delivery_counts()
        email_unknown: Counter[str] = Counter()
        for n in range(count):
            phone = phone_of(n)
            assert rows[("sms", phone)][0] == "sent" and sms_sent[phone] == 1, (phone, rows[("sms", phone)])
            status, reason = rows[("email", email_of(n))]
            assert status in ("sent", "unknown"), (n, status, reason)
            delivered = emails[email_of(n)]
            assert delivered == 1 if status == "sent" else delivered <= 1
            if status == "unknown":
                email_unknown["delivered" if delivered else "not delivered"] += 1
        assert final["channels"]["email"]["unknown"] == sum(email_unknown.values())
        web = Counter(rows[("web", f"web:{lang}")][0] for lang in ("en", "sl"))
        assert set(web) <= {"sent", "unknown"}
        figures(
            "SIGKILL mid-send",
            kills=len(kill_points),
            sends_that_finished_before_their_kill_point=finished_first,
            requests_before_each_kill=kill_points,
            sms_recipients=count,
            sms_delivered_once=sum(1 for n in sms_sent.values() if n == 1),
            twilio_list_lookups=sum(1 for r in twilio.requests if r.method == "GET"),
            duplicates=len(twilio.duplicates()) + len(sendgrid.duplicates()),
            lost_sms=count - len(sms_sent),
            email_recipients=count,
            email_unknown=dict(email_unknown),
            web_banners=dict(web),
        )


def test_an_email_batch_accepted_before_a_crash_is_recorded_as_sent(
    zygote: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with SendGridFake(validate=False) as sendgrid, TwilioFake(latency=0.02, validate=False) as twilio:
        use_fakes(monkeypatch, sendgrid=sendgrid, twilio=twilio)
        ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
        monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@lakeside-water.example")
        monkeypatch.setenv("BROADCAST_LEDGER", ledger)
        # the dead run's SMS are looked up two provider timeouts after their attempt; the fakes answer in milliseconds
        monkeypatch.setenv("BROADCAST_PROVIDER_TIMEOUT", "1")
        contacts = write_contacts(tmp_path / "contacts.csv", 30, seed=1)
        args = ["send", str(MINIMAL), "--contacts", str(contacts), "--channel", "email,sms", *LONG_SMS, "--yes", "--json"]
        pid = _start_send(zygote, args, tmp_path / "send.log")
        deadline = time.monotonic() + 30
        # the emails went out long before: SMS are still going when the run dies
        while (len(sendgrid.deliveries) < 30 or len(twilio.deliveries) < 10) and time.monotonic() < deadline:
            assert _alive(pid), (tmp_path / "send.log").read_text(errors="replace")
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.001)
        assert len(sendgrid.deliveries) == 30 and len(twilio.deliveries) < 30
        data = send_json(MINIMAL, "--contacts", contacts, "--channel", "email,sms")
        assert twilio.duplicates() == {} and sendgrid.duplicates() == {}
        statuses = Counter(status for (channel, _), (status, _) in ledger_rows(ledger).items() if channel == "email")
        assert data["channels"]["email"]["unknown"] == 0 and statuses == {"sent": 30}, statuses


class _LosesThirdAnswer(XFake):
    """X takes the third post and its answer never arrives (the client times out)."""

    def _next_fault(self, request):  # noqa: ANN001, ANN202 - the fakes' hook for per-request faults
        from tests.fakes.server import Fault

        return Fault("timeout_after") if len(self.requests) == 3 else super()._next_fault(request)


@pytest.mark.usefixtures("short_client_timeouts")
def test_a_lost_answer_mid_thread_still_posts_the_whole_thread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with _LosesThirdAnswer(faults=Faults(timeout_delay=2 * CLIENT_TIMEOUT)) as x:
        use_fakes(monkeypatch, x=x)
        monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
        contacts = write_contacts(tmp_path / "contacts.csv", 1, seed=1)
        for _ in range(3):
            send_json(EXAMPLE, "--contacts", contacts, "--channel", "social")
        assert x.faults_injected == {"timeout_after": 1} and x.duplicates() == {}
        posts = [d.recipient for d in x.deliveries]
        assert len(posts) == 7, f"{len(posts)} of 7 posts on X"
        assert all(d.payload["in_reply_to_tweet_id"] for d in x.deliveries[1:])


@pytest.mark.usefixtures("short_client_timeouts")
@pytest.mark.parametrize(
    "corrected",
    [
        pytest.param("name,phone,language\nAna Novak,+38641000100,en\n", id="language"),
        pytest.param("name,phone,language\nAna Novak-Kranjc,+38641000100,sl\n", id="name"),
    ],
)
def test_a_contact_corrected_before_the_rerun_does_not_resend_a_delivered_sms(
    corrected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Reconcile looks for the SMS as it was written: in the recorded language, with any name in the name's place."""
    # the shipped SMS leaves the name out to save a segment; a team's own template may greet by name
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    sms = templates / "sms.txt.j2"
    sms.write_text("{% if contact.name %}{{ contact.name }}: {% endif %}" + sms.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("BROADCAST_TEMPLATES", str(templates))
    with TwilioFake(faults=Faults(timeout_delay=2 * CLIENT_TIMEOUT)) as twilio:
        use_fakes(monkeypatch, twilio=twilio)
        monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
        contacts = tmp_path / "contacts.csv"
        contacts.write_text("name,phone,language\nAna Novak,+38641000100,sl\n", encoding="utf-8")
        # Twilio takes the SMS and its answer is lost; the look-up that follows fails too: the SMS is unknown
        twilio.script(["timeout_after", 500])
        first = send_json(MINIMAL, "--contacts", contacts, "--channel", "sms")
        assert first["channels"]["sms"]["unknown"] == 1 and len(twilio.deliveries) == 1
        contacts.write_text(corrected, encoding="utf-8")
        second = send_json(MINIMAL, "--contacts", contacts, "--channel", "sms")
        assert twilio.duplicates() == {}, [d.payload["body"][:60] for d in twilio.deliveries]
        assert second["channels"]["sms"]["reconciled"] == 1
