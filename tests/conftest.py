"""Shared test set-up: a clean environment per test, the provider fakes, and paths to the shipped examples."""

from __future__ import annotations

import os
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
