#!/usr/bin/env python
"""Scale benchmarks: SMS at 32 and 128 in flight, several runners on one PostgreSQL ledger, a live 1M-email send.

    python bench/scale.py [--only sms,runners,million] [--sms 20000] [--runners-sms 2000] [--million 1000000]

Each case returns a dict whose "rows" are lines in bench/run.py's table columns (case, wall s, msg/s, RSS MB,
ratio, note); the rest of the dict is the measurements for the JSON file. run.py calls them for its table; run
alone, this file prints its own. See bench/README.md.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import run as bench  # noqa: E402 - run.py's contacts, baselines and measured runs, shared with its table
from fakes_proc import Fakes  # noqa: E402


def _row(label: str, wall: float | None, rate: float | None, rss: float | None, ratio: float | None, note: str) -> str:
    """One line in run.py's table columns."""
    cell = (lambda value, width, fmt: f"{value:>{width}{fmt}}" if value is not None else " " * width)
    return f"{label:<34}{cell(wall, 9, '.2f')}{cell(rate, 10, '.0f')}{cell(rss, 9, '.0f')}{cell(ratio, 9, '.2f')}  {note}"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


# ---------------------------------------------------------------- SMS at 32 and 128 in flight

def raw_twilio_async(fakes: Fakes, recipients: list[tuple[str, str]], texts: dict, concurrency: int) -> float:
    """The SDK's async client (AsyncTwilioHttpClient, aiohttp), ``concurrency`` requests in flight. Its session is
    given a connector without aiohttp's default limit of 100 connections, or 128 would be 100."""
    import asyncio

    import aiohttp
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    from tests.fakes import credentials

    info = fakes.info

    async def main() -> None:
        http = AsyncTwilioHttpClient(timeout=30, pool_connections=False)
        http.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        client = Client(info["twilio_sid"], info["twilio_token"], http_client=http)
        client.api.base_url = info["twilio"]
        seats = asyncio.Semaphore(concurrency)

        async def one(item: tuple[str, str]) -> None:
            to, lang = item
            async with seats:
                await client.messages.create_async(to=to, body=texts[lang]["sms"], from_=credentials.TWILIO_FROM)

        try:
            await asyncio.gather(*(one(item) for item in recipients))
        finally:
            await http.close()

    t0 = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - t0


def sms_concurrency_case(fakes: Fakes, work: Path, n: int, texts: dict, levels: tuple[int, ...] = (32, 128),
                         ceiling: int | None = 256) -> dict:
    """`broadcast send --concurrency sms=C` against the faster raw SDK path at C (threads or the async client), for
    each C in ``levels``; then the async client at ``ceiling`` in flight, which shows where the fake tops out."""
    path = work / f"sms-{n}.csv"
    bench.write_contacts(path, n, "sms")
    recips = [(bench.phone(i, bench.LANGS[i % 4]), bench.LANGS[i % 4]) for i in range(n)]
    res: dict = {"n": n, "levels": {}, "rows": []}
    rows = res["rows"]
    for c in levels:
        level: dict = {"load_before": _load()}
        b = bench.broadcast_send(fakes, work, path, "sms", n, ["--concurrency", f"sms={c}"])
        ended = time.time()  # the fake's request times are time.time() too
        level["broadcast"] = b
        if b["fake"]["first"]:
            # start-up (interpreter, imports, contacts, render, plan) and the end (last answers, report) apart; the
            # process ended a few ms before `ended` (bench/_rss.py writes its JSON and exits), so "after" is a bit high
            level["before_first_request_s"] = b["fake"]["first"] - (ended - b["wall_s"])
            level["after_last_request_s"] = ended - b["fake"]["last"]
        for key, loop in (("raw_threads", lambda: bench.raw_twilio(fakes, recips, texts, threads=c)),
                          ("raw_async", lambda: raw_twilio_async(fakes, recips, texts, c))):
            fakes.reset()
            cpu = time.process_time()  # the fakes run in their own process: this is the loop's own CPU
            wall = loop()
            level[key] = {"wall_s": wall, "msgs_per_s": n / wall, "cpu_s": time.process_time() - cpu,
                          "fake": fakes.stats("twilio")}
        faster = max(("raw_threads", "raw_async"), key=lambda k: level[k]["msgs_per_s"])
        best = level[faster]["msgs_per_s"]
        level["faster"] = faster
        level["ratio"] = b["msgs_per_s"] / best
        span = b["send_phase_s"]
        level["ratio_send_phase"] = (n / span) / best if span else None
        level["load_after"] = _load()
        res["levels"][c] = level
        ok = "OK" if b["sent"] == n and b["rc"] == 0 else f"rc={b['rc']} sent={b['sent']} {b['stderr_tail'][-160:]!r}"
        rows.append(_row(f"broadcast SMS n={n:,} at {c}", b["wall_s"], b["msgs_per_s"], b["peak_rss_mb"], level["ratio"],
                         f"{ok}; vs the faster raw path ({faster.removeprefix('raw_')}) >= 0.90: "
                         f"{'PASS' if level['ratio'] >= 0.90 else 'FAIL'}; cpu {b['cpu_s']:.1f}s; fake saw max "
                         f"{b['fake']['max_concurrency']} at once, {b['fake']['duplicates']} duplicates; {level['load_before']}"))
        if span:
            rows.append(_row("  (send phase only, fake-side)", span, n / span, None, level["ratio_send_phase"],
                             f"first→last provider request; {level['before_first_request_s']:.2f} s before the first, "
                             f"{level['after_last_request_s']:.2f} s after the last"))
        for key, label in (("raw_threads", "raw SDK loop, threads"), ("raw_async", "raw SDK loop, async client")):
            r = level[key]
            rows.append(_row(f"  {label}", r["wall_s"], r["msgs_per_s"], None, r["msgs_per_s"] / best,
                             f"{c} in flight (fake saw {r['fake']['max_concurrency']}); CPU {1e3 * r['cpu_s'] / n:.2f} ms/msg"))
    if ceiling:
        fakes.reset()
        wall = raw_twilio_async(fakes, recips, texts, ceiling)
        stats = fakes.stats("twilio")
        res["ceiling"] = {"concurrency": ceiling, "wall_s": wall, "msgs_per_s": n / wall, "fake": stats}
        rows.append(_row(f"  raw async client at {ceiling}", wall, n / wall, None, None,
                         f"the fake's ceiling on this machine (it saw {stats['max_concurrency']} at once); {_load()}"))
    return res


# ---------------------------------------------------------------- several runners, one PostgreSQL ledger

@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1, as tests/conftest.py starts one: BROADCAST_BENCH_POSTGRES if
    set, else the Debian binaries (run as the postgres user when we are root). Yields a SQLAlchemy URL."""
    url = os.environ.get("BROADCAST_BENCH_POSTGRES")
    if url:
        yield url
        return
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries and not shutil.which("initdb"):
        raise SystemExit("no PostgreSQL server binaries: apt-get install postgresql, or set BROADCAST_BENCH_POSTGRES")
    bindir = Path(binaries[-1]).parent if binaries else Path(shutil.which("initdb")).parent
    data = Path(tempfile.mkdtemp(prefix="broadcast-bench-pg-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if prefix:
        shutil.chown(data, "postgres")
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120, cwd="/")
    # fsync stays on: the claims' commits are part of what is measured
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-t", "60",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120, cwd="/")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"],
                       capture_output=True, timeout=60, cwd="/")
        shutil.rmtree(data, ignore_errors=True)


def _fresh_ledger(url: str) -> None:
    import sqlalchemy as sa

    from broadcast.ledger import metadata

    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


class _Connections:
    """The most client connections PostgreSQL had open at once while it ran (pg_stat_activity, every 0.1 s)."""

    def __init__(self, url: str) -> None:
        import threading

        import sqlalchemy as sa

        self.most = 0
        self._stop = threading.Event()
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import sqlalchemy as sa

        query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        with self._engine.connect() as conn:
            while not self._stop.wait(0.1):
                self.most = max(self.most, conn.execute(query).scalar_one() - 1)  # less this watcher's own
                conn.rollback()  # pg_stat_activity is one snapshot per transaction: a new one each time

    def __enter__(self) -> _Connections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()


def _start(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=1800)
    try:
        sms = json.loads(out)["channels"]["sms"]
    except (ValueError, KeyError, TypeError):
        sms = {}
    return {"rc": proc.returncode, "sent": sms.get("sent"), "reconciled": sms.get("reconciled"),
            "unknown": sms.get("unknown"), "skipped": sms.get("skipped_reasons"),
            "stderr_tail": err.decode("utf-8", "replace")[-400:] if proc.returncode not in (0, 1) else ""}


def runners_case(work: Path, n: int = 2000, counts: tuple[int, ...] = (1, 2, 4), latency: float = 0.2,
                 concurrency: int = 4, kill: bool = True) -> dict:
    """1, 2 and 4 `broadcast send` processes of one notice at once on one PostgreSQL ledger, against a Twilio fake
    whose latency makes one runner the bottleneck; then 4 with one SIGKILLed mid-send, and the run after it."""
    path = work / f"runners-{n}.csv"
    bench.write_contacts(path, n, "sms")
    fakes = Fakes(latency)
    res: dict = {"n": n, "latency": latency, "concurrency": concurrency, "runs": {}, "rows": []}
    rows = res["rows"]
    try:
        with postgres() as server:
            # a statement that waits longer than this on a lock fails the run loudly instead of holding it
            url = f"{server}?options=-c%20statement_timeout%3D30000"
            env = bench.broadcast_env(fakes, work)
            env["BROADCAST_LEDGER"] = url
            # a dead runner's SMS absent from Twilio's list is resent two provider timeouts after its attempt
            env["BROADCAST_PROVIDER_TIMEOUT"] = "2"
            cmd = [bench.BROADCAST, "send", str(bench.NOTICE), "--contacts", str(path), "--channel", "sms", "--yes",
                   "--json", "--force", "--concurrency", f"sms={concurrency}"]
            for k in counts:
                _fresh_ledger(server)
                fakes.reset()
                load = _load()
                with _Connections(server) as connections:
                    t0 = time.perf_counter()
                    procs = [_start(cmd, env, work) for _ in range(k)]
                    outs = [_finish(p) for p in procs]
                    wall = time.perf_counter() - t0
                stats = fakes.stats("twilio")
                span = stats["last"] - stats["first"] if stats["first"] else None
                res["runs"][k] = {"wall_s": wall, "send_phase_s": span, "runners": outs, "fake": stats, "load": load,
                                  "most_connections": connections.most}
            one = res["runs"][counts[0]]
            for k in counts:
                r = res["runs"][k]
                sent = [o["sent"] for o in r["runners"]]
                scale = one["wall_s"] / r["wall_s"]
                r["scaling"] = scale
                r["scaling_send_phase"] = (one["send_phase_s"] / r["send_phase_s"]) if r["send_phase_s"] else None
                ok = sum(s or 0 for s in sent) == n and r["fake"]["deliveries"] == n and r["fake"]["duplicates"] == 0
                target = f"; >= 3.2x: {'PASS' if scale >= 3.2 else 'FAIL'}" if k == 4 else ""
                rows.append(_row(f"{k} runner{'s' if k > 1 else ''}, PostgreSQL, n={n:,}", r["wall_s"], n / r["wall_s"],
                                 None, scale, f"{'OK' if ok else 'MISMATCH'}; sent per runner {sent}; fake: "
                                 f"{r['fake']['deliveries']:,} delivered, {r['fake']['duplicates']} duplicates{target}; "
                                 f"PostgreSQL connections at most {r['most_connections']}; {r['load']}"))
                if r["send_phase_s"]:
                    rows.append(_row("  (send phase only, fake-side)", r["send_phase_s"], n / r["send_phase_s"], None,
                                     r["scaling_send_phase"], "first→last provider request"))
            if kill:
                res["kill"] = _kill_one_of_four(fakes, server, cmd, env, work, n)
                rows.extend(res["kill"].pop("rows"))
    finally:
        fakes.close()
    return res


def _kill_one_of_four(fakes: Fakes, server: str, cmd: list[str], env: dict[str, str], work: Path, n: int) -> dict:
    """Four runners; SIGKILL one once a third of the SMS reached the fake; the others finish; then the next run."""
    _fresh_ledger(server)
    fakes.reset()
    load = _load()
    t0 = time.perf_counter()
    procs = [_start(cmd, env, work) for _ in range(4)]
    while fakes.stats("twilio")["requests"] < n // 3 and procs[0].poll() is None:
        time.sleep(0.05)
    killed_at = fakes.stats("twilio")["requests"]
    was_alive = procs[0].poll() is None
    procs[0].send_signal(signal.SIGKILL)
    survivors = [_finish(p) for p in procs[1:]]
    procs[0].communicate(timeout=60)
    survivors_wall = time.perf_counter() - t0
    after_survivors = fakes.stats("twilio")
    t1 = time.perf_counter()
    next_run = _finish(_start(cmd, env, work))
    next_wall = time.perf_counter() - t1
    stats = fakes.stats("twilio")
    # every contact's number once at the fake: lost = contacts never delivered to
    lost = n - (stats["deliveries"] - stats["duplicates"])
    out = {"killed": was_alive, "killed_at_requests": killed_at, "survivors": survivors, "survivors_wall_s": survivors_wall,
           "after_survivors": after_survivors, "next_run": next_run, "next_run_wall_s": next_wall, "fake": stats,
           "lost": lost, "load": load}
    note = (f"{'SIGKILL' if was_alive else 'it had FINISHED before the kill'} after {killed_at:,} requests; survivors sent "
            f"{[s['sent'] for s in survivors]}, fake had {after_survivors['deliveries']:,}")
    out["rows"] = [
        _row("4 runners, one SIGKILLed", survivors_wall, None, None, None, f"{note}; {load}"),
        _row("  the next run", next_wall, None, None, None,
             f"reconciled {next_run['reconciled']} as sent through Twilio's list, sent {next_run['sent']}, "
             f"unknown {next_run['unknown']}; rc {next_run['rc']}"),
        _row("  after both", None, None, None, None,
             f"fake: {stats['deliveries']:,} delivered, {stats['duplicates']} duplicates, {lost} lost: "
             f"{'PASS' if stats['duplicates'] == 0 and lost == 0 else 'FAIL'}"),
    ]
    return out


# ---------------------------------------------------------------- 1M live emails

def live_million_case(fakes: Fakes, work: Path, n: int = 1_000_000) -> dict:
    """A live `broadcast send --channel email` of ``n`` recipients against the SendGrid fake: peak RSS (bench/_rss.py,
    as run.py measures it) against 150 MB and wall time against 60 s."""
    path = work / f"email-{n}.csv"
    if not path.exists():
        bench.write_contacts(path, n, "email")
    load = _load()
    b = bench.broadcast_send(fakes, work, path, "email", n)
    ok = "OK" if b["sent"] == n and b["rc"] == 0 else f"rc={b['rc']} sent={b['sent']} {b['stderr_tail'][-160:]!r}"
    rss_ok, wall_ok = b["peak_rss_mb"] <= 150, b["wall_s"] <= 60
    rows = [_row(f"live email n={n:,}", b["wall_s"], b["msgs_per_s"], b["peak_rss_mb"], None,
                 f"{ok}; peak RSS <= 150 MB: {'PASS' if rss_ok else 'FAIL'}; wall <= 60 s: {'PASS' if wall_ok else 'FAIL'}; "
                 f"cpu {b['cpu_s']:.1f}s; fake: {b['fake']['duplicates']} duplicates; {load}")]
    if b["send_phase_s"]:
        rows.append(_row("  (send phase only, fake-side)", b["send_phase_s"], n / b["send_phase_s"], None, None,
                         "first→last provider request"))
    return {"n": n, "broadcast": b, "load": load, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="sms,runners,million", help="comma list: sms, runners, million")
    ap.add_argument("--sms", type=int, default=20_000, help="SMS in the concurrency case (default 20,000)")
    ap.add_argument("--levels", default="32,128", help="concurrency levels of the SMS case (default 32,128)")
    ap.add_argument("--runners-sms", type=int, default=2000, help="SMS in the runners case (default 2,000)")
    ap.add_argument("--million", type=int, default=1_000_000, help="emails in the live memory case")
    ap.add_argument("--latency", type=float, default=0.05, help="fake latency of the SMS and email cases")
    ap.add_argument("--json", metavar="OUT", default="bench-scale.json")
    args = ap.parse_args()
    if bench.BROADCAST is None:
        sys.exit("run with the venv's python: .venv/bin/python bench/scale.py")
    only = set(args.only.split(","))
    results: dict = {"latency": args.latency, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="broadcast-scale-") as tmp:
        work = Path(tmp)
        if only & {"sms", "million"}:
            fakes = Fakes(args.latency)
            try:
                if "sms" in only:
                    print(f"sms: {args.sms:,} at {args.levels}…", file=sys.stderr)
                    levels = tuple(int(c) for c in args.levels.split(","))
                    results["sms_concurrency"] = sms_concurrency_case(fakes, work, args.sms, bench.renderings(), levels)
                if "million" in only:
                    print(f"live email: {args.million:,}…", file=sys.stderr)
                    results["live_million"] = live_million_case(fakes, work, args.million)
            finally:
                fakes.close()
        if "runners" in only:
            print(f"runners: {args.runners_sms:,} SMS…", file=sys.stderr)
            results["runners"] = runners_case(work, args.runners_sms)
    print(f"broadcast scale bench, {os.cpu_count()} CPUs, fakes in a separate process (validate=False)")
    print(f"{'case':<34}{'wall s':>9}{'msg/s':>10}{'RSS MB':>9}{'ratio':>9}  target / note")
    for key in ("sms_concurrency", "runners", "live_million"):
        for line in results.get(key, {}).get("rows", []):
            print(line)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
