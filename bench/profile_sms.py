"""Profile `broadcast send --channel sms` against the fakes (separate process) with py-spy.

    .venv/bin/python bench/profile_sms.py [N] [OUT_PREFIX] [--gil] [--email] [--idle]

--email profiles the email channel instead. --gil keeps only samples holding the GIL: where broadcast spends CPU rather than waiting on the network.
--idle keeps idle samples too (threads waiting on sockets, locks, futures): where wall time goes per thread.

Writes OUT_PREFIX.collapsed (py-spy raw/collapsed stacks, including idle threads) and prints the
top functions by self and by inclusive samples, counting only samples that are not idle.
"""
from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402


def main() -> None:
    channel = "email" if "--email" in sys.argv else "sms"
    args = [a for a in sys.argv[1:] if a not in ("--gil", "--email", "--idle")]
    n = int(args[0]) if args else 2000
    prefix = args[1] if len(args) > 1 else "/tmp/broadcast-sms-profile"
    pyspy = Path(sys.executable).parent / "py-spy"
    with tempfile.TemporaryDirectory(prefix="broadcast-prof-") as tmp:
        work = Path(tmp)
        csv_path = work / "sms.csv"
        run.write_contacts(csv_path, n, channel)
        fakes = run.Fakes(0.05)
        try:
            env = run.broadcast_env(fakes, work)
            out = f"{prefix}.collapsed"
            cmd = [str(pyspy), "record", "--format", "raw", "-o", out, "--rate", "200", "--threads", *(["--gil"] if "--gil" in sys.argv else []), *(["--idle"] if "--idle" in sys.argv else []), "--",
                   run.BROADCAST, "send", str(run.NOTICE), "--contacts", str(csv_path), "--channel", channel,
                   "--yes", "--json", "--force"]
            subprocess.run(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, check=True)
        finally:
            fakes.close()
    report(out)


def report(path: str, top: int = 10) -> None:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in open(path, encoding="utf-8"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")[1:]  # first is the thread
        if not frames:
            continue
        c = int(count)
        total += c
        self_c[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    print(f"{total} samples (all threads, idle excluded by py-spy's default)")
    print("\ntop self:")
    for f, c in self_c.most_common(top):
        print(f"{c:7d} {100 * c / total:5.1f}%  {f}")
    print("\ntop inclusive (broadcast code):")
    shown = 0
    for f, c in incl.most_common():
        if "broadcast/" in f and "bench" not in f:
            print(f"{c:7d} {100 * c / total:5.1f}%  {f}")
            shown += 1
            if shown == top * 2:
                break


if __name__ == "__main__":
    main()
