"""The web banner over a notice's life: its phase, "Updated HH:MM" filled as it is published, expiry and withdrawal."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.channels import REGISTRY
from broadcast.channels.base import Channel
from broadcast.channels.web import WebChannel, WebSettings
from broadcast.cli import main
from broadcast.message import Message, Rendering
from tests.conftest import CONTACTS, STORM

EXPIRES = "2026-11-30T15:00:00Z"


def notice(tmp_path: Path, *, phase: str = "alert", expires: str | None = None) -> Path:
    """The storm notice with a phase and an expiry."""
    text = STORM.read_text(encoding="utf-8")
    text = text.replace("severity: emergency\n", f"severity: emergency\nphase: {phase}\n", 1)
    if expires:
        text = text.replace("severity: emergency\n", f"severity: emergency\nexpires: {expires}\n", 1)
    path = tmp_path / f"storm-{phase}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def send(path: Path, out: Path) -> dict[str, Any]:
    args = ["send", path, "--contacts", CONTACTS, "--channel", "web", "--web-dir", out, "--yes", "--json"]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["channels"]["web"]


def index(out: Path) -> dict[str, Any]:
    return json.loads((out / "banner.json").read_text(encoding="utf-8"))


def message(lang: str = "en", *, notice_id: str = "storm", expires: str = "", phase: str = "alert") -> Message:
    rendering = Rendering("web", lang, subject=f"Storm {lang}", html=f"<p>storm {lang}</p>", phase=phase, expires=expires)
    return Message(notice_id, "web", "v1", f"web:{lang}", lang, rendering, contact_key=f"web:{lang}")


def at(channel: WebChannel, moment: datetime) -> WebChannel:
    channel.clock = lambda: moment
    return channel


def test_an_update_says_when_it_was_published_and_the_time_is_not_in_the_version(tmp_path: Path) -> None:
    out = tmp_path / "www"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert send(notice(tmp_path, phase="update", expires="2099-01-01T00:00:00Z"), out)["sent"] == 4
    after = datetime.now(timezone.utc)
    html = (out / "banner.en.html").read_text(encoding="utf-8")
    stamp = re.search(r'<p class="bb-updated"><time datetime="([^"]+)">Updated (\d\d:\d\d) UTC</time></p>', html)
    assert stamp, html
    published = datetime.fromisoformat(stamp[1])
    assert before <= published <= after and stamp[2] == published.strftime("%H:%M")
    assert "%%" not in html
    sw = (out / "banner.sw.html").read_text(encoding="utf-8")
    assert f">Imesasishwa {stamp[2]} UTC</time>" in sw
    data = index(out)
    assert (data["phase"], data["status"], data["expires"]) == ("update", "active", "2099-01-01T00:00:00Z")
    assert data["updated_at"] == stamp[1] and data["languages"]["ar"]["phase"] == "update"
    # the same notice again, a minute later: the banner's text did not change, so nothing is sent again
    assert send(notice(tmp_path, phase="update", expires="2099-01-01T00:00:00Z"), out)["sent"] == 0


def test_an_alert_has_no_updated_line(tmp_path: Path) -> None:
    out = tmp_path / "www"
    send(notice(tmp_path), out)
    html = (out / "banner.en.html").read_text(encoding="utf-8")
    assert "bb-updated" not in html.split("</style>")[1] and "broadcast-phase-alert" in html
    assert index(out)["phase"] == "alert"


def test_an_all_clear_has_its_own_styling_and_badge_in_each_language(tmp_path: Path) -> None:
    out = tmp_path / "www"
    send(notice(tmp_path, phase="all_clear"), out)
    en = (out / "banner.en.html").read_text(encoding="utf-8")
    assert 'class="broadcast-banner broadcast-emergency broadcast-phase-all_clear"' in en and 'role="status"' in en
    assert '<span class="bb-badge">ALL CLEAR</span>' in en and "EMERGENCY</span>" not in en
    # the all-clear says when it was given, like an update
    assert re.search(r'<p class="bb-updated"><time datetime="[^"]+Z">Updated \d\d:\d\d UTC</time></p>', en)
    assert '<span class="bb-badge">HATARI IMEPITA</span>' in (out / "banner.sw.html").read_text(encoding="utf-8")
    assert '<span class="bb-badge">زال الخطر</span>' in (out / "banner.ar.html").read_text(encoding="utf-8")
    assert index(out)["phase"] == "all_clear"


def test_a_banner_already_expired_is_taken_down_instead_of_written(tmp_path: Path) -> None:
    channel = WebChannel(WebSettings(tmp_path))
    at(channel, datetime(2026, 11, 30, 12, tzinfo=timezone.utc)).send([message("en", expires=EXPIRES)])
    assert (tmp_path / "banner.en.html").exists()
    [receipt] = at(channel, datetime(2026, 11, 30, 15, tzinfo=timezone.utc)).send([message("en", expires=EXPIRES)])
    assert receipt.status == "skipped" and receipt.reason == f"expired at {EXPIRES}"
    assert not (tmp_path / "banner.en.html").exists()
    data = index(tmp_path)
    assert data["languages"]["en"]["status"] == "expired" and data["status"] == "expired"


def test_withdraw_deletes_each_banner_and_lists_it_as_cancelled(tmp_path: Path) -> None:
    channel = WebChannel(WebSettings(tmp_path))
    channel.send([message("en"), message("sw")])
    receipts = channel.withdraw([message("en"), message("sw")], "cancelled")
    assert [(r.status, r.reason) for r in receipts] == [("sent", "taken down: cancelled")] * 2
    assert receipts[0].provider_id == str(tmp_path / "banner.en.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["banner.json"]
    data = index(tmp_path)
    assert {lang: e["status"] for lang, e in data["languages"].items()} == {"en": "cancelled", "sw": "cancelled"}
    assert data["status"] == "cancelled" and data["notice"] == "storm"


def test_withdrawing_one_language_leaves_the_notice_shown(tmp_path: Path) -> None:
    channel = WebChannel(WebSettings(tmp_path))
    channel.send([message("en"), message("sw")])
    channel.withdraw([message("sw")], "expired")
    data = index(tmp_path)
    assert data["status"] == "active" and data["languages"]["sw"]["status"] == "expired"
    assert (tmp_path / "banner.en.html").exists() and not (tmp_path / "banner.sw.html").exists()


def test_withdraw_leaves_another_notices_banner_alone(tmp_path: Path) -> None:
    channel = WebChannel(WebSettings(tmp_path))
    channel.send([message("en", notice_id="flood")])
    [receipt] = channel.withdraw([message("en", notice_id="storm")], "cancelled")
    assert receipt.status == "skipped" and "the site shows notice flood now" in receipt.reason
    assert (tmp_path / "banner.en.html").read_text(encoding="utf-8") == "<p>storm en</p>\n"
    assert index(tmp_path)["languages"]["en"]["status"] == "active"


def test_a_banner_that_cannot_be_removed_is_a_failed_receipt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    channel = WebChannel(WebSettings(tmp_path))
    channel.send([message("en")])

    def busy(path: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy", str(path))

    monkeypatch.setattr(os, "unlink", busy)
    [receipt] = channel.withdraw([message("en")], "expired")
    assert receipt.status == "failed"
    assert receipt.reason.startswith(f"could not remove {tmp_path / 'banner.en.html'}: Device or resource busy; ")
    assert index(tmp_path)["languages"]["en"]["status"] == "active"


def test_withdraw_only_takes_expired_or_cancelled(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        WebChannel(WebSettings(tmp_path)).withdraw([message("en")], "gone")


def test_channels_without_anything_to_take_down_say_none(tmp_path: Path) -> None:
    # an email or SMS, once sent, stays sent; the banner (and X's posts, for cancel --delete-posts) can be taken down
    assert Channel.withdraw is not WebChannel.withdraw
    for name, adapter in REGISTRY.items():
        if adapter.personal:
            assert adapter.withdraw is Channel.withdraw, name
        if adapter.standing:
            assert adapter.withdraw is not Channel.withdraw, name
