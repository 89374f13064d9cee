"""Several `broadcast send` runners of one notice on one PostgreSQL ledger: disjoint claims, a fair share each, and a
SIGKILLed runner's messages finished by the next run, each SMS once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from broadcast.send import claim_group_size
from tests.conftest import EXAMPLE
from tests.fakes import TwilioFake
from tests.fakes.fixtures import use_fakes

SMS = 200
#: per request: slow enough that one runner is the bottleneck (4 at once → 20 SMS/s, 10 s for all of them alone)
LATENCY = 0.2
CONCURRENCY = 4


@pytest.fixture
def ledger(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from broadcast.ledger import metadata

    engine = sa.create_engine(postgres_url)
    metadata.drop_all(engine)
    engine.dispose()
    monkeypatch.setenv("BROADCAST_LEDGER", postgres_url)
    return postgres_url


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> TwilioFake:
    with TwilioFake(latency=LATENCY, validate=False) as fake:
        use_fakes(monkeypatch, twilio=fake)
        yield fake


def contacts(path: Path) -> Path:
    lines = ["name,phone,language"] + [f"Person {n},+38641{n:06d},sl" for n in range(SMS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def runner(csv: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "broadcast", "send", str(EXAMPLE), "--contacts", str(csv), "--channel", "sms", "--yes",
         "--json", "--force", "--concurrency", f"sms={CONCURRENCY}"],
        cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
    )


def sms_counts(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode(errors="replace")
    return json.loads(out)["channels"]["sms"]


def rows(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = dict(conn.execute(sa.text("SELECT status, count(*) FROM deliveries GROUP BY status")).all())
    engine.dispose()
    return found


def test_two_runners_split_one_notice_and_send_each_sms_once(ledger: str, twilio: TwilioFake, tmp_path: Path) -> None:
    csv = contacts(tmp_path / "contacts.csv")

    sent = [sms_counts(p)["sent"] for p in [runner(csv), runner(csv)]]

    assert sum(sent) == SMS and twilio.duplicates() == {} and len(twilio.deliveries) == SMS
    # claims of a few requests per sender: the second runner gets a fair share, not what the first left over (with
    # 200-message claims the first held all 200 before the second had read its contacts)
    assert min(sent) >= SMS // 5, sent
    assert rows(ledger) == {"sent": SMS}


def test_a_sigkilled_runner_leaves_little_in_flight_and_the_next_run_finishes_it(
    ledger: str, twilio: TwilioFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the dead run's SMS that Twilio's list lacks are resent two provider timeouts after their attempt
    monkeypatch.setenv("BROADCAST_PROVIDER_TIMEOUT", "1")
    csv = contacts(tmp_path / "contacts.csv")
    doomed, other = runner(csv), runner(csv)
    deadline = time.monotonic() + 60
    while len(twilio.requests) < 60 and doomed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert doomed.poll() is None, "the runner finished before it could be killed"
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=30)
    sms_counts(other)

    # what the dead runner held: its last claims (3 groups of 4 requests a sender) and the receipts of its last second;
    # with 200-message claims and receipts kept until 200 it held everything it had not finished
    held = rows(ledger).get("inflight", 0)
    assert 0 < held <= 3 * claim_group_size(1, CONCURRENCY) + 2 * CONCURRENCY / LATENCY, held

    after = sms_counts(runner(csv))

    assert twilio.duplicates() == {} and len(twilio.deliveries) == SMS
    assert after["reconciled"] + after["sent"] == held and after["unknown"] == 0
    assert rows(ledger) == {"sent": SMS}
