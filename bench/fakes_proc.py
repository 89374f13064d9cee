"""The provider fakes in their own process, driven through a multiprocessing Pipe, so their CPU is not broadcast's."""
from __future__ import annotations

import multiprocessing as mp
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _serve(conn, latency: float) -> None:
    sys.path.insert(0, ROOT)
    from tests.fakes.sendgrid import SendGridFake
    from tests.fakes.twilio import TwilioFake

    twilio = TwilioFake(validate=False, latency=latency)
    sendgrid = SendGridFake(validate=False, latency=latency)
    conn.send({"twilio": twilio.url, "sendgrid": sendgrid.url,
               "twilio_sid": twilio.account_sid, "twilio_token": twilio.auth_token, "sendgrid_key": sendgrid.api_key})
    fakes = {"twilio": twilio, "sendgrid": sendgrid}
    while True:
        cmd, arg = conn.recv()
        if cmd == "stop":
            for fake in fakes.values():
                fake.close()
            conn.send("ok")
            return
        if cmd == "reset":
            for fake in fakes.values():
                fake.reset()
            conn.send("ok")
        elif cmd == "stats":
            fake = fakes[arg]
            with fake._lock:
                n_req, n_del = len(fake.requests), len(fake.deliveries)
                times = [r.time for r in fake.requests]
            conn.send({"requests": n_req, "deliveries": n_del, "max_concurrency": fake.max_concurrency,
                       "max_in_window_1s": fake.max_in_window(1.0),
                       "first": min(times) if times else None, "last": max(times) if times else None,
                       "invalid": len(fake.invalid), "duplicates": len(fake.duplicates())})


class Fakes:
    def __init__(self, latency: float = 0.05) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, latency), daemon=True)
        self._proc.start()
        self.info = self._conn.recv()

    def _call(self, cmd: str, arg=None):
        self._conn.send((cmd, arg))
        return self._conn.recv()

    def reset(self) -> None:
        self._call("reset")

    def stats(self, name: str) -> dict:
        return self._call("stats", name)

    def env(self) -> dict[str, str]:
        sys.path.insert(0, ROOT)
        from tests.fakes import credentials
        return {
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "SENDGRID_API_HOST": self.info["sendgrid"], "SENDGRID_API_KEY": self.info["sendgrid_key"],
            "TWILIO_API_BASE_URL": self.info["twilio"], "TWILIO_ACCOUNT_SID": self.info["twilio_sid"],
            "TWILIO_AUTH_TOKEN": self.info["twilio_token"], "TWILIO_FROM": credentials.TWILIO_FROM,
            "BROADCAST_EMAIL_FROM": "alerts@broadcast.example",
        }

    def close(self) -> None:
        try:
            self._call("stop")
        finally:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.terminate()
