"""The issue's "done means" run against the provider fakes: send, sync, the next send, and the status table.

    .venv/bin/python bench/results_scenario.py            # 100 SMS + 100 emails, 7 undelivered, 5 bounced, 30 "1", 2 STOP, 1 text;
                                                          # then quiet hours: Nairobi, Ljubljana, Los Angeles on a fake clock
    .venv/bin/python bench/results_scenario.py --record 20000   # also: results.record() events per second, one process

Contacts (a temp dir): 90 with email and phone; 10 who asked for SMS only (channels=sms) but have an email; 10 with
email only. So 100 SMS and 100 emails. Five of the seven undelivered SMS go to the SMS-only ten: the notice's rule
`{if: undelivered, after: 0s, then: other_channel}` makes the next send email them; the other two got the email
anyway. Nothing here is imported by the product.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UNDELIVERED = [0, 1, 2, 3, 4, 50, 51]  # 0–4: SMS-only contacts (who have an email); 50, 51: have both
BOUNCED = [105, 106, 107, 108, 109]  # email-only contacts
SAFE = list(range(10, 40))  # 30 reply "1"
STOP = [40, 41]
FREE_TEXT = 42


def contacts(folder: Path) -> Path:
    rows = ["name,email,phone,language,channels"]
    for i in range(110):
        email = f"person{i}@example.org"
        phone = f"+2547125{i:05d}"
        if i < 10:
            rows.append(f"Person {i},{email},{phone},en,sms")
        elif i < 100:
            rows.append(f"Person {i},{email},{phone},en,")
        else:
            rows.append(f"Person {i},{email},,en,")
    path = folder / "people.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def phone(i: int) -> str:
    return f"+2547125{i:05d}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=int, default=0, metavar="N", help="also time results.record() over N events")
    args = parser.parse_args()

    from click.testing import CliRunner

    from broadcast.cli import main as cli
    from tests.fakes import credentials
    from tests.fakes.sendgrid import SendGridFake
    from tests.fakes.twilio import TwilioFake

    folder = Path(tempfile.mkdtemp(prefix="broadcast-results-"))
    notice = folder / "boil-water.yaml"
    notice.write_text(
        (ROOT / "examples" / "boil-water.yaml").read_text(encoding="utf-8")
        + "\nreply:\n  keywords:\n    SAFE: ['1', safe, salama, varen]\n  prompt:\n    en: Reply 1 if you are safe\n"
        "    sw: Jibu 1 ikiwa uko salama\n    sl: Odgovorite 1, ce ste varni\n"
        "follow_up:\n  - {if: undelivered, after: 0s, then: other_channel}\n",
        encoding="utf-8",
    )
    people = contacts(folder)
    with TwilioFake() as twilio, SendGridFake() as sendgrid:
        os.environ.update({
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "SENDGRID_API_HOST": sendgrid.url, "SENDGRID_API_KEY": sendgrid.api_key,
            "TWILIO_API_BASE_URL": twilio.url, "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token, "TWILIO_FROM": credentials.TWILIO_FROM,
            "BROADCAST_EMAIL_FROM": "alerts@lakeside-water.example", "BROADCAST_LEDGER": f"sqlite:///{folder / 'ledger.db'}",
            "COLUMNS": "140",  # the tables whole, for pasting
        })
        os.chdir(folder)
        twilio.settle_after = 0
        for i in UNDELIVERED:
            twilio.outcome(phone(i), "undelivered", error_code=30003)
        for i in BOUNCED:
            sendgrid.outcome(f"person{i}@example.org", "bounced", reason="550 5.1.1 no such user", bounce_type="hard")

        def run(*argv: object) -> str:
            result = CliRunner().invoke(cli, [*map(str, argv)], catch_exceptions=False)
            if result.exit_code not in (0, 1):
                raise SystemExit(result.output)
            return result.stdout

        first = json.loads(run("send", notice, "--contacts", people, "--channel", "email,sms", "--yes", "--json", "--force"))
        print(f"send: {first['channels']['sms']['sent']} SMS, {first['channels']['email']['sent']} emails")
        twilio.advance(60)
        for i in SAFE:
            twilio.inbound(phone(i), "1")
        for i in STOP:
            twilio.inbound(phone(i), "STOP")
        twilio.inbound(phone(FREE_TEXT), "Where can I get bottled water for my mother?")
        started = time.perf_counter()
        print(run("sync", notice).rstrip())
        print(f"(sync took {time.perf_counter() - started:.2f} s)")
        sendgrid.reset()
        twilio.reset()
        second = json.loads(run("send", notice, "--contacts", people, "--channel", "email,sms", "--yes", "--json", "--force"))
        followed = sorted(d.recipient for d in sendgrid.deliveries)
        print(f"next send: {second['channels']['sms']['sent']} SMS, {second['channels']['email']['sent']} emails "
              f"(follow-ups to {', '.join(followed)})")
        print(run("sync", notice).rstrip())
        print(run("status", notice).rstrip())
        print(run("replies", notice).rstrip())
        data = json.loads(run("status", notice, "--json"))
        rows = {r["channel"]: r for r in data["results"]}
        with_email = {f"person{i}@example.org" for i in UNDELIVERED}
        emailed = {d.recipient for d in sendgrid.deliveries} | {f"person{i}@example.org" for i in UNDELIVERED if i >= 10}
        checks = {
            "100 SMS accepted, 7 undelivered": (rows["sms"]["accepted"], rows["sms"]["undelivered"]) == (100, 7),
            "100 emails + 5 follow-ups accepted, 5 bounced": (rows["email"]["accepted"], rows["email"]["bounced"]) == (105, 5),
            '30 replied "1", 1 free text': (rows["sms"]["replied"]["SAFE"], rows["sms"]["replied"]["other"]) == (30, 1),
            "the 2 STOPs suppressed": rows["sms"]["suppressed"] == 2,
            "the 5 bounced addresses suppressed": rows["email"]["suppressed"] == 5,
            "the 7 undelivered SMS recipients have an email": with_email <= emailed,
        }
        checks.update(quiet_hours(folder, twilio))
        for what, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {what}")
        if args.record:
            print(record_throughput(folder, args.record))
        return 0 if all(checks.values()) else 1


def quiet_hours(folder: Path, twilio: object) -> dict[str, bool]:
    """An advisory notice to three people each in Nairobi (+254), Ljubljana (+386) and Los Angeles (+1, with a
    timezone column), sent at 21:30 UTC and again at 04:59, 05:00 and 07:00 UTC with a fake clock: who is held,
    until when, and which run sends them."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from broadcast.plan import PlanRequest
    from broadcast.send import SendRequest, run

    cities = {"Nairobi": ("+25471255{:04d}", ""), "Ljubljana": ("+38641555{:03d}", ""),
              "Los Angeles": ("+1213555{:04d}", "America/Los_Angeles")}
    rows, city_of = ["name,phone,language,timezone"], {}
    for city, (pattern, zone) in cities.items():
        for n in range(3):
            number = pattern.format(100 + n)
            city_of[number] = city
            rows.append(f"{city} {n},{number},en,{zone}")
    people = folder / "quiet-people.csv"
    people.write_text("\n".join(rows) + "\n", encoding="utf-8")
    notice = folder / "advisory.yaml"
    notice.write_text((ROOT / "examples" / "boil-water.yaml").read_text(encoding="utf-8")
                      .replace("id: boil-water-2026-03", "id: boil-water-advisory").replace("severity: urgent", "severity: advisory"),
                      encoding="utf-8")
    twilio.reset()
    print("\nquiet hours (21:00-08:00 local), advisory notice, 3 people each in Nairobi, Ljubljana and Los Angeles:")
    sent_at: dict[str, datetime] = {}
    held_until: dict[str, datetime] = {}
    for when in ("2026-11-28T21:30", "2026-11-29T04:59", "2026-11-29T05:00", "2026-11-29T07:00"):
        now = datetime.fromisoformat(when).replace(tzinfo=UTC)
        before = len(twilio.deliveries)
        result = run(SendRequest(PlanRequest(notice, (people,), channels=("sms",), force=True, now=now), yes=True))
        new = [d.recipient for d in twilio.deliveries[before:]]
        for number in new:
            sent_at.setdefault(city_of[number], now)
        for held in result.plan.held_shown:
            held_until[city_of[held.message.recipient]] = held.until
        by_city = ", ".join(f"{c} {sum(city_of[n] == c for n in new)}" for c in cities)
        local = {c: now.astimezone(ZoneInfo(z)).strftime("%H:%M") for c, z in
                 (("Nairobi", "Africa/Nairobi"), ("Ljubljana", "Europe/Ljubljana"), ("Los Angeles", "America/Los_Angeles"))}
        print(f"  run at {when}Z (Nairobi {local['Nairobi']}, Ljubljana {local['Ljubljana']}, LA {local['Los Angeles']}): "
              f"sent {by_city}; held {result.outcome.held.get('sms', 0)}")
    for city, until in held_until.items():
        zone = {"Nairobi": "Africa/Nairobi", "Ljubljana": "Europe/Ljubljana"}.get(city, "America/Los_Angeles")
        print(f"  {city}: held until {until.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} local ({until:%H:%M} UTC)")
    eight = {"Nairobi": datetime(2026, 11, 29, 5, 0, tzinfo=UTC), "Ljubljana": datetime(2026, 11, 29, 7, 0, tzinfo=UTC)}
    return {
        "quiet hours: Nairobi and Ljubljana held at 21:30 UTC, Los Angeles (13:30) sent": (
            set(held_until) == {"Nairobi", "Ljubljana"} and sent_at.get("Los Angeles") == datetime(2026, 11, 28, 21, 30, tzinfo=UTC)),
        "quiet hours: each released by the first run at or after 08:00 local, once": (
            sent_at.get("Nairobi") == eight["Nairobi"] and sent_at.get("Ljubljana") == eight["Ljubljana"]
            and held_until == eight and len(twilio.deliveries) == 9 and twilio.duplicates() == {}),
    }


def record_throughput(folder: Path, n: int) -> str:
    """results.record() alone, as `serve` will call it: events per second into a SQLite ledger, one at a time and in
    batches of 500 (half delivery states of known messages, half replies)."""
    from datetime import UTC, datetime, timedelta

    from broadcast.ledger import Ledger
    from broadcast.message import Decision, Message, Rendering, Receipt
    from broadcast.results import Event, record

    ledger = Ledger(f"sqlite:///{folder / 'record.db'}")
    ledger.start_run("bench")
    rendering = Rendering("sms", "en", text="x")
    messages = [Message("bench", "sms", "v1", f"+3864{i:07d}", "en", rendering) for i in range(n)]
    for start in range(0, n, 2000):
        owned = ledger.claim([Decision(m, True) for m in messages[start:start + 2000]])
        ledger.settle([Receipt(m.id, "sms", m.recipient, "sent", provider_id=f"SM{i + start}") for i, m in enumerate(owned)])
    t0 = datetime.now(UTC)
    events = [Event("sms", "delivered", t0 + timedelta(seconds=1), provider_id=f"SM{i}") if i % 2 else
              Event("sms", "reply", t0, recipient=messages[i].recipient, text="1", event_id=f"IN{i}") for i in range(n)]
    one = min(n, 2000)
    started = time.perf_counter()
    for event in events[:one]:
        record(ledger, [event])
    single = one / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(one, n, 500):
        record(ledger, events[i:i + 500])
    batched = (n - one) / (time.perf_counter() - started) if n > one else 0.0
    ledger.close()
    return (f"results.record(): {single:,.0f} events/s one at a time ({one:,} events), "
            f"{batched:,.0f} events/s in batches of 500 ({n - one:,} events); SQLite, one process")


if __name__ == "__main__":
    raise SystemExit(main())
