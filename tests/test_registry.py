"""The channel registry is the one source of facts about a channel: a new one is a class and one registry line."""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from broadcast.channels import REGISTRY
from broadcast.channels.base import Channel
from broadcast.cli import main
from broadcast.config import Env, Secret, mask
from broadcast.message import Message, Receipt
from tests.conftest import REPO, STORM

PACKAGE = REPO / "broadcast"
TOKEN = "pager-token-" + "7" * 24


# -- the toy channel: one class here, one registry line in the fixture, nothing else -------------------------------


@dataclass(frozen=True)
class PagerSettings:
    token: Secret

    @classmethod
    def from_env(cls, env: Env) -> PagerSettings | None:
        token = env.secret("PAGER_TOKEN")
        return cls(token) if env.need("PAGER_TOKEN") and token is not None else None


class PagerChannel(Channel):
    """A pager desk reached by phone number: personal, one message per contact, batches of 5."""

    name: ClassVar[str] = "pager"
    title: ClassVar[str] = "Pager"
    provider: ClassVar[str] = "the pager desk"
    address: ClassVar[str] = "phone"
    aliases: ClassVar[tuple[str, ...]] = ("beeper",)
    # a shipped template that names every support channel, reused so the toy needs no files of its own
    templates: ClassVar[dict[str, str]] = {"text": "social.txt.j2"}
    settings: ClassVar[type[PagerSettings]] = PagerSettings
    secrets: ClassVar[tuple[str, ...]] = ("PAGER_TOKEN",)
    max_batch: ClassVar[int] = 5
    #: what every live adapter delivered, in order: (recipient, language, text with the name filled in)
    delivered: ClassVar[list[tuple[str, str, str]]] = []

    def __init__(self, settings: PagerSettings, **run: Any) -> None:
        super().__init__(settings, **run)
        assert settings.token.reveal() == TOKEN

    def send(self, messages: Sequence[Message]) -> list[Receipt]:
        receipts = []
        for message in messages:
            with self.request() as go:
                if not go:
                    receipts.append(Receipt(message.id, self.name, message.recipient, "not_started"))
                    continue
                self.delivered.append((message.recipient, message.language, message.personal().text))
                receipts.append(Receipt(message.id, self.name, message.recipient, "sent", provider_id=f"page-{len(self.delivered)}"))
        return receipts


@pytest.fixture()
def pager(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The registry with the pager in it (the one line), a ledger of the test's own, and a contacts file."""
    monkeypatch.setitem(REGISTRY, PagerChannel.name, PagerChannel)
    monkeypatch.setattr(PagerChannel, "delivered", [])
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("PAGER_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "name,email,phone,language,channels\n"
        "Ana Novak,ana@mail.example,+38641555010,sl,\n"  # every channel she has an address for: email, sms, pager
        "Juma Otieno,,+254712345001,sw,beeper\n"  # asks for the pager by another of its names
        "Mary Jones,mary@mail.example,,en,\n"  # no phone: no pager
        "Zoe Smith,,+447400123456,en,sms\n",  # asks for SMS only
        encoding="utf-8",
    )
    yield contacts


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_toy_channel_checks_previews_sends_records_and_reports(pager: Path, tmp_path: Path) -> None:
    # renders: every notice language, in the template's words, with every support channel's contact
    checked = run("check", str(STORM), "--json", "--force")
    assert checked.exit_code == 0, checked.output
    rows = [r for r in json.loads(checked.stdout)["renderings"] if r["channel"] == "pager"]
    assert sorted(r["language"] for r in rows) == ["ar", "en", "sl", "sw"]

    # previews: plan.csv rows, the rendering files, a panel and a tile on the page
    out = tmp_path / "preview"
    previewed = run("preview", str(STORM), "--contacts", str(pager), "--out", str(out), "--json", "--force")
    assert previewed.exit_code == 0, previewed.output
    summary = json.loads(previewed.stdout)
    assert summary["channels"]["pager"]["planned"] == 2 and summary["channels"]["pager"]["languages"] == {"sl": 1, "sw": 1}
    with (out / "plan.csv").open(encoding="utf-8") as f:
        planned = sorted((r["recipient"].lstrip("'"), r["language"]) for r in csv.DictReader(f) if r["channel"] == "pager")
    assert planned == [("+254712345001", "sw"), ("+38641555010", "sl")]
    assert any(out.rglob("*pager*")), sorted(p.name for p in out.iterdir())
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="panel-pager-sl"' in page and "Pager ·" in page
    assert PagerChannel.delivered == []  # a preview sends nothing

    # sends and records: one message per contact with a phone who wants it, in their language, name filled in
    sent = run("send", str(STORM), "--contacts", str(pager), "--channel", "pager", "--yes", "--json")
    assert sent.exit_code == 0, sent.output
    assert sorted((r, lang) for r, lang, _ in PagerChannel.delivered) == [("+254712345001", "sw"), ("+38641555010", "sl")]
    assert all("%%" not in text for _, _, text in PagerChannel.delivered)
    assert json.loads(sent.stdout)["channels"]["pager"]["sent"] == 2
    assert TOKEN not in sent.output

    # the ledger holds them: the same send again reaches no one twice, and status reports the channel
    again = run("send", str(STORM), "--contacts", str(pager), "--channel", "pager", "--yes", "--json")
    assert again.exit_code == 0, again.output
    assert len(PagerChannel.delivered) == 2
    assert json.loads(again.stdout)["channels"]["pager"]["skipped"] == 2
    status = run("status", str(STORM), "--json")
    assert status.exit_code == 0, status.output
    assert sum(v["sent"] for v in json.loads(status.stdout)["rows"] if v["channel"] == "pager") == 2

    # reports: the text report names the channel and its counts
    text = run("send", str(STORM), "--contacts", str(pager), "--channel", "pager", "--yes")
    assert re.search(r"pager\s+planned 2, sent 0, skipped 2", text.stdout), text.stdout


def test_a_toy_channel_without_its_credentials_stops_before_anything(pager: Path) -> None:
    import os

    del os.environ["PAGER_TOKEN"]
    refused = run("send", str(STORM), "--contacts", str(pager), "--channel", "pager", "--yes")
    assert refused.exit_code == 2
    assert "pager: PAGER_TOKEN" in refused.stderr
    assert PagerChannel.delivered == []


def test_a_toy_channels_secret_is_masked(pager: Path) -> None:
    assert TOKEN not in mask(f"the pager desk said: bad token {TOKEN}")


# -- every shipped adapter declares the facts the others read ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_adapter_declares_its_facts(name: str) -> None:
    adapter = REGISTRY[name]
    assert adapter.name == name and adapter.title and adapter.provider
    assert adapter.templates and all((REPO / "templates" / f).is_file() for f in adapter.templates.values())
    assert adapter.address in (("email", "phone") if adapter.personal else ("",))
    assert adapter.settings is not None and callable(adapter.settings.from_env)
    assert adapter.max_batch >= 1 and adapter.max_concurrency >= 1
    assert list(adapter.forms) == sorted(adapter.forms)


def test_the_channels_are_listed_in_one_place() -> None:
    # every adapter module's class is registered, and nothing outside channels/ imports an adapter module directly
    adapters = {p.stem for p in (PACKAGE / "channels").glob("*.py")} - {"__init__", "base", "outbox", "publish"}
    assert {type.__module__.rsplit(".", 1)[1] for type in REGISTRY.values()} == adapters
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.rsplit(".", 1)[-1] not in adapters or not node.module.startswith("broadcast.channels."), (
                    f"{path.name} imports {node.module}: read the registry instead"
                )


# -- the import graph -------------------------------------------------------------------------------------------


def _imports() -> dict[str, set[str]]:
    """Module → the broadcast modules it imports, lazy imports and TYPE_CHECKING blocks included: a cycle through a
    type annotation is a cycle of knowledge all the same."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()

        def visit(node: ast.AST) -> None:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names)
            for child in ast.iter_child_nodes(node):
                visit(child)

        visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_import_graph_has_no_cycle() -> None:
    graph, state, path = _imports(), {}, []

    def walk(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for imported in graph[module]:
            assert state.get(imported) != "open", " → ".join([*path[path.index(imported):], imported])
            if imported not in state:
                walk(imported)
        path.pop()
        state[module] = "done"

    for module in graph:
        if module not in state:
            walk(module)


def test_the_ledger_knows_no_provider_and_only_the_cli_reports() -> None:
    graph = _imports()
    assert not {m for m in graph["broadcast.ledger"] if m.startswith("broadcast.channels")}
    for module, imported in graph.items():
        # the command line is cli.py (the group) and commands.py (its commands, loaded when used)
        if module not in ("broadcast.cli", "broadcast.commands", "broadcast.__main__"):
            assert not imported & {"broadcast.report", "broadcast.cli"}, module
