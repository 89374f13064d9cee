"""The web banner adapter: one HTML file per language and a banner.json, every write atomic, failures as receipts."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.channels import live_channel
from broadcast.channels.web import WebChannel, WebSettings
from broadcast.cli import main
from broadcast.message import Message, Rendering
from tests.conftest import CONTACTS, STORM

HEADLINES = {"en": "Boil your tap water", "sw": "Chemsha maji", "ar": "اغلوا ماء الصنبور"}


def message(lang: str, *, notice: str = "boil-water", html: str | None = None) -> Message:
    rendering = Rendering(
        channel="web", language=lang, subject=HEADLINES.get(lang, lang),
        html=html if html is not None else f'<div lang="{lang}">{HEADLINES.get(lang, lang)}</div>',
    )
    recipient = f"web:{lang}"
    return Message(
        notice_id=notice, channel="web", version="v1", recipient=recipient, language=lang, rendering=rendering,
        contact_key=recipient,
    )


def web(directory: Path) -> WebChannel:
    return WebChannel(WebSettings(directory))


def index(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "banner.json").read_text(encoding="utf-8"))


def test_writes_each_banner_and_the_index(tmp_path: Path) -> None:
    out = tmp_path / "site" / "banner"  # created on demand
    receipts = web(out).send([message("en"), message("sw"), message("ar")])
    assert [r.status for r in receipts] == ["sent"] * 3
    assert [r.provider_id for r in receipts] == [str(out / f"banner.{lang}.html") for lang in ("en", "sw", "ar")]
    assert (out / "banner.ar.html").read_text(encoding="utf-8") == f'<div lang="ar">{HEADLINES["ar"]}</div>\n'
    data = index(out)
    assert data["notice"] == "boil-water" and data["default_language"] == "en"
    updated = datetime.fromisoformat(data["updated_at"])
    assert data["updated_at"].endswith("Z") and updated.utcoffset().total_seconds() == 0
    shown = {"phase": "alert", "status": "active", "updated_at": data["updated_at"], "expires": None}
    assert data["languages"] == {
        "en": {"file": "banner.en.html", "headline": HEADLINES["en"], "dir": "ltr", **shown},
        "sw": {"file": "banner.sw.html", "headline": HEADLINES["sw"], "dir": "ltr", **shown},
        "ar": {"file": "banner.ar.html", "headline": HEADLINES["ar"], "dir": "rtl", **shown},
    }
    assert (data["status"], data["phase"], data["expires"]) == ("active", "alert", None)
    # no temp files left behind
    assert sorted(p.name for p in out.iterdir()) == ["banner.ar.html", "banner.en.html", "banner.json", "banner.sw.html"]


def test_new_files_are_readable_by_the_web_server_and_modes_are_kept(tmp_path: Path) -> None:
    channel = web(tmp_path)
    channel.send([message("en")])
    assert stat.S_IMODE((tmp_path / "banner.en.html").stat().st_mode) == 0o644
    os.chmod(tmp_path / "banner.en.html", 0o640)
    channel.send([message("en", html="<p>changed</p>")])
    assert stat.S_IMODE((tmp_path / "banner.en.html").stat().st_mode) == 0o640


def test_batches_of_one_notice_merge_into_one_index(tmp_path: Path) -> None:
    # send.py batches by language, so each language arrives in its own call; a later run may add more
    web(tmp_path).send([message("en")])
    web(tmp_path).send([message("ar")])
    data = index(tmp_path)
    assert list(data["languages"]) == ["en", "ar"] and data["default_language"] == "en"


def test_a_different_notice_replaces_the_index(tmp_path: Path) -> None:
    web(tmp_path).send([message("en"), message("sw")])
    web(tmp_path).send([message("ar", notice="storm")])
    data = index(tmp_path)
    assert data["notice"] == "storm" and list(data["languages"]) == ["ar"] and data["default_language"] == "ar"


def test_a_damaged_index_is_rewritten(tmp_path: Path) -> None:
    (tmp_path / "banner.json").write_text("{not json", encoding="utf-8")
    [receipt] = web(tmp_path).send([message("en")])
    assert receipt.status == "sent" and list(index(tmp_path)["languages"]) == ["en"]


def test_failed_replace_keeps_the_previous_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = web(tmp_path)
    channel.send([message("en")])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", dst)

    monkeypatch.setattr(os, "replace", disk_full)
    [receipt] = channel.send([message("en", html="<p>new text</p>")])
    assert receipt.status == "failed" and receipt.provider_id is None
    assert receipt.reason == (
        f"could not write {tmp_path / 'banner.en.html'}: No space left on device; the disk is full; "
        "free some space and send again"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_index_failure_fails_the_languages_it_would_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def refuse_index(src: str, dst: str) -> None:
        if str(dst).endswith("banner.json"):
            raise PermissionError(errno.EACCES, "Permission denied", dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_index)
    receipts = web(tmp_path).send([message("en"), message("sw")])
    assert [r.status for r in receipts] == ["failed", "failed"]
    assert receipts[1].reason.startswith("banner.sw.html was written but the site will not list it: could not write ")
    assert "Permission denied; broadcast may not write there" in receipts[1].reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["banner.en.html", "banner.sw.html"]


def test_unusable_directory_fails_each_message_without_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    receipts = web(blocker / "banner").send([message("en"), message("sw")])
    assert [r.status for r in receipts] == ["failed", "failed"]
    assert receipts[0].reason.startswith(f"could not write {blocker / 'banner' / 'banner.en.html'}: Not a directory")
    assert "choose another folder with --web-dir" in receipts[0].reason


def test_permission_denied_is_a_failed_receipt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what a read-only folder does to a non-root user; the suite may run as root, which ignores permissions
    def refuse(**kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(kwargs["dir"]))

    channel = web(tmp_path)
    channel.send([message("en")])
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    [receipt] = channel.send([message("en", html="<p>new</p>")])
    assert receipt.status == "failed" and receipt.reason == (
        f"could not write {tmp_path / 'banner.en.html'}: Permission denied; broadcast may not write there; "
        "fix the folder's permissions or choose another with --web-dir"
    )
    assert (tmp_path / "banner.en.html").read_text(encoding="utf-8").startswith('<div lang="en">')


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_read_only_directory_is_a_failed_receipt(tmp_path: Path) -> None:
    web(tmp_path).send([message("en")])
    tmp_path.chmod(0o500)
    try:
        [receipt] = web(tmp_path).send([message("en", html="<p>new</p>")])
    finally:
        tmp_path.chmod(0o700)
    assert receipt.status == "failed" and "Permission denied" in receipt.reason
    assert (tmp_path / "banner.en.html").read_text(encoding="utf-8").startswith('<div lang="en">')


def test_registry_builds_the_adapter(tmp_path: Path) -> None:
    channel = live_channel("web", WebSettings(tmp_path))
    assert isinstance(channel, WebChannel) and channel.max_batch == 1000


def test_cli_writes_the_storm_banner_in_four_languages(tmp_path: Path) -> None:
    out = tmp_path / "www"
    args = ["send", STORM, "--contacts", CONTACTS, "--channel", "web", "--web-dir", out, "--yes", "--json"]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["channels"]["web"]
    assert summary["sent"] == summary["planned"] == 4 and summary["failed"] == 0
    data = index(out)
    assert list(data["languages"]) == ["en", "sw", "sl", "ar"] and data["default_language"] == "en"
    directions = {lang: entry["dir"] for lang, entry in data["languages"].items()}
    assert directions == {"en": "ltr", "sw": "ltr", "sl": "ltr", "ar": "rtl"}
    for lang in ("en", "sw", "sl", "ar"):
        html = (out / f"banner.{lang}.html").read_text(encoding="utf-8")
        assert html.startswith('<div class="broadcast-banner') and f'lang="{lang}"' in html
    assert 'dir="rtl"' in (out / "banner.ar.html").read_text(encoding="utf-8")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
