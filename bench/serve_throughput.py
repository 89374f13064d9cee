"""How many provider events one `broadcast serve` process records a second: signed Twilio callbacks, SendGrid batches.

    .venv/bin/python bench/serve_throughput.py [--sms 5000] [--email 5000] [--clients 16] [--batch 100] [--json OUT]

It writes a ledger holding N sent SMS and M sent emails (through the ledger's own claim and settle, as a send does),
starts the real CLI, `broadcast serve --port P --ledger URL` (one uvicorn process), and posts from a pool of
connections from one asyncio client in this process (a bare HTTP/1.1 client: see _post_all):
  1. Twilio status callbacks, each signed with the auth token over BROADCAST_PUBLIC_URL + path: "sent" then
     "delivered" for every SMS (2 N requests, one event each);
  2. the same "delivered" callbacks again: duplicates, which record() answers without a change;
  3. SendGrid Event Webhook batches of --batch events ("processed", "delivered"), each signed with a P-256 key;
  4. Twilio inbound replies, one per SMS number ("1").
Every request is built and signed before the clock starts. It prints requests and events per second for each
phase, serve's own CPU seconds (from /proc), the load average before and after, and checks the ledger afterwards:
every SMS and every email delivered, N replies.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PUBLIC = "https://alerts.bench.example"
TOKEN = "bench-twilio-auth-token-0123456789"
NOTICE = "bench-notice"


def _ledger(url: str, sms: int, email: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A ledger with ``sms`` sent SMS and ``email`` sent emails; their (provider id, recipient)."""
    from broadcast.ledger import Ledger
    from broadcast.message import Decision, Message, Receipt, Rendering

    ledger = Ledger(url)
    ledger.start_run(NOTICE)
    text = Rendering("sms", "en", text="Boil water before drinking.")
    mail = Rendering("email", "en", subject="Boil water", text="Boil water before drinking.")
    phones = [f"+3864{n:07d}" for n in range(sms)]
    addresses = [f"person{n}@mail.example" for n in range(email)]
    messages = [Message(NOTICE, "sms", "v1", p, "en", text, contact_key=f"phone:{p}") for p in phones]
    messages += [Message(NOTICE, "email", "v1", a, "en", mail, contact_key=f"email:{a}", key=a) for a in addresses]
    owned = ledger.claim([Decision(m, True) for m in messages])
    # a Message SID per SMS; one SendGrid request id (X-Message-Id) per 1,000 recipients, as the adapter batches them
    ids = {p: f"SM{p[1:]:0>32}" for p in phones} | {a: f"sgreq{n // 1000:06d}" for n, a in enumerate(addresses)}
    receipts = [Receipt(m.id, m.channel, m.recipient, "sent", provider_id=ids[m.recipient]) for m in owned]
    ledger.settle(receipts)
    ledger.finish_run()
    ledger.close()
    return [(ids[p], p) for p in phones], [(ids[a], a) for a in addresses]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _post_all(port: int, requests: list[tuple[str, bytes, dict[str, str]]], clients: int) -> tuple[float, list[int]]:
    """Post every request over ``clients`` keep-alive connections; (seconds, status codes).

    A bare HTTP/1.1 client over asyncio streams, each request's bytes built beforehand: an HTTP library costs more CPU
    per request than serve does, and on a shared machine that CPU would be taken from serve.
    """
    raw = [(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body
           for path, body, headers in requests]
    queue = iter(raw)
    statuses: list[int] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for request in queue:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            statuses.append(int(head[9:12]))
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if length:
                await reader.readexactly(length)
        writer.close()
        await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - started, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sms", type=int, default=5000)
    parser.add_argument("--email", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100, help="SendGrid events per request")
    parser.add_argument("--ledger", help="a PostgreSQL URL to use instead of a fresh SQLite file")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from twilio.request_validator import RequestValidator

    folder = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    url = args.ledger or f"sqlite:///{folder / 'ledger.db'}"
    started = time.perf_counter()
    sms, email = _ledger(url, args.sms, args.email)
    print(f"ledger: {len(sms):,} sent SMS and {len(email):,} sent emails in {time.perf_counter() - started:.1f} s ({url.split(':')[0]})")

    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    validator = RequestValidator(TOKEN)

    def twilio(path: str, form: dict[str, str]) -> tuple[str, bytes, dict[str, str]]:
        return path, urlencode(form).encode(), {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": validator.compute_signature(PUBLIC + path, form)}

    def status(sid: str, to: str, state: str) -> tuple[str, bytes, dict[str, str]]:
        return twilio("/twilio/status", {"MessageSid": sid, "SmsSid": sid, "MessageStatus": state, "SmsStatus": state,
                                          "To": to, "From": "+15005550006", "AccountSid": "AC" + "0" * 32,
                                          "ApiVersion": "2010-04-01"})

    def sendgrid(events: list[dict]) -> tuple[str, bytes, dict[str, str]]:
        payload, stamp = json.dumps(events), str(int(time.time()))
        signature = base64.b64encode(private.sign((stamp + payload).encode(), ec.ECDSA(hashes.SHA256()))).decode()
        return "/sendgrid/events", payload.encode(), {
            "Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp}

    events = []
    for n, (pid, address) in enumerate(email):
        for k, kind in enumerate(("processed", "delivered")):
            events.append({"email": address, "timestamp": 1_790_000_000 + n, "event": kind, "sg_event_id": f"e{n}-{k}",
                           "sg_message_id": f"{pid}.filterdrecv-1", "broadcast_notice": NOTICE})
    phases = [
        ("twilio status (sent, delivered)", [status(sid, to, s) for s in ("sent", "delivered") for sid, to in sms], 1),
        ("twilio status duplicates", [status(sid, to, "delivered") for sid, to in sms], 1),
        ("sendgrid batches", [sendgrid(events[i:i + args.batch]) for i in range(0, len(events), args.batch)], args.batch),
        ("twilio inbound replies", [twilio("/twilio/inbound", {"MessageSid": f"SMin{n}", "From": to, "To": "+15005550006",
                                                               "Body": "1"}) for n, (_, to) in enumerate(sms)], 1),
    ]

    port = _free_port()
    env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "BROADCAST_PUBLIC_URL": PUBLIC,
           "SENDGRID_WEBHOOK_PUBLIC_KEY": public, "NO_PROXY": "127.0.0.1"}
    server = subprocess.Popen([sys.executable, "-m", "broadcast", "serve", "--port", str(port), "--ledger", url],
                              env=env, cwd=folder, stderr=subprocess.PIPE, text=True)
    print(server.stderr.readline().rstrip())
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
        if time.monotonic() > deadline or server.poll() is not None:
            sys.exit("serve did not come up")

    results = {"sms": len(sms), "email": len(email), "clients": args.clients, "batch": args.batch,
               "cpus": os.cpu_count(), "load_before": os.getloadavg(), "phases": []}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in results['load_before'])} ({os.cpu_count()} CPUs)")
    print(f"{'phase':<34} {'requests':>9} {'events':>9} {'seconds':>8} {'req/s':>8} {'events/s':>9} {'serve CPU s':>11} {'events/CPU s':>12} {'client CPU s':>12}")
    for name, requests, per_request in phases:
        cpu_before, client_before = _cpu_seconds(server.pid), time.process_time()
        seconds, statuses = asyncio.run(_post_all(port, requests, args.clients))
        cpu, client_cpu = _cpu_seconds(server.pid) - cpu_before, time.process_time() - client_before
        bad = [s for s in statuses if s not in (200, 204)]
        if bad:
            sys.exit(f"{name}: {len(bad)} requests answered {sorted(set(bad))}")
        count = sum(len(json.loads(body)) for path, body, _ in requests) if per_request > 1 else len(requests)
        row = {"phase": name, "requests": len(requests), "events": count, "seconds": round(seconds, 2),
               "requests_per_s": round(len(requests) / seconds, 1), "events_per_s": round(count / seconds, 1),
               "serve_cpu_s": round(cpu, 2), "events_per_cpu_s": round(count / cpu, 1) if cpu else None,
               "client_cpu_s": round(client_cpu, 2)}
        results["phases"].append(row)
        print(f"{name:<34} {len(requests):>9,} {count:>9,} {seconds:>8.2f} {row['requests_per_s']:>8,.0f} "
              f"{row['events_per_s']:>9,.0f} {cpu:>11.2f} {row['events_per_cpu_s'] or 0:>12,.0f} {client_cpu:>12.2f}")
    results["load_after"] = os.getloadavg()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in results['load_after'])}")
    server.terminate()
    server.wait(timeout=30)

    from broadcast.ledger import Ledger

    ledger = Ledger(url)
    outcomes = ledger.outcomes(NOTICE)
    delivered = {c: sum(1 for r in outcomes if r["channel"] == c and r["state"] == "delivered") for c in ("sms", "email")}
    replies = len(ledger.replies(NOTICE))
    ledger.close()
    results["check"] = {"delivered": delivered, "replies": replies}
    ok = delivered == {"sms": len(sms), "email": len(email)} and replies == len(sms)
    print(f"ledger afterwards: delivered {delivered}, replies {replies:,}: {'as posted' if ok else 'NOT as posted'}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
