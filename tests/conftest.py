"""Shared test set-up: a clean environment per test, the provider fakes, and paths to the shipped examples."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.fakes.fixtures"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "boil-water.yaml"
STORM = REPO / "examples" / "storm-outage.yaml"
CONTACTS = REPO / "contacts" / "example.csv"

# Variables broadcast reads; each test starts without them so a developer's own .env or shell never leaks in
_OURS = ("SENDGRID_", "TWILIO_", "X_", "BROADCAST_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(_OURS):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BROADCAST_NO_WAIT", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # relative outputs (outbox/, preview/, web/, .env) land in the test's own folder
    monkeypatch.chdir(tmp_path)
    # the default ledger sits beside the notice file, which for most tests is in the repository's examples/
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / '.broadcast' / 'ledger.db'}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - Iterator[str]
    """A real PostgreSQL server on 127.0.0.1 for the ledger tests: BROADCAST_TEST_POSTGRES, or one started here.

    .ci/run installs Debian's postgresql package; the server itself is started per test session from
    its binaries, so the README's test command works the same on a developer's machine.
    """
    import glob
    import shutil
    import subprocess

    url = os.environ.get("BROADCAST_TEST_POSTGRES")
    if url:
        yield url
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[test]'")
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries and not shutil.which("initdb"):
        pytest.skip("no PostgreSQL server binaries: apt-get install postgresql (.ci/run does)")
    bindir = Path(binaries[-1]).parent if binaries else Path(shutil.which("initdb")).parent
    import tempfile

    # not under pytest's tmp folders: those are private to root, and the server runs as postgres
    data = Path(tempfile.mkdtemp(prefix="broadcast-pg-"))
    port = _free_port()
    # initdb and postgres refuse to run as root; run them as the postgres user the Debian package creates
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if prefix:
        shutil.chown(data, "postgres")
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=120, cwd="/")
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-t", "60",
             "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
            check=True, capture_output=True, timeout=120, cwd="/",
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not start PostgreSQL: {exc} {detail.decode(errors='replace')[:300]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, cwd="/")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """--verbose installs a root handler on CliRunner's stream; put the test run's logging back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
