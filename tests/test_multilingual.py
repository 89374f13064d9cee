"""Every recipient in their own language: a notice in en/sw/sl/ar sent to contacts in those and other languages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from broadcast.segments import count_segments
from tests.conftest import REPO, STORM
from tests.fakes.fixtures import use_fakes

CONTACTS = REPO / "contacts" / "multilingual.csv"
ARABIC = re.compile(r"[\u0600-\u06ff]")


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch, sendgrid_fake, twilio_fake, x_fake, tmp_path: Path):  # noqa: ANN001, ANN201
    use_fakes(monkeypatch, sendgrid=sendgrid_fake, twilio=twilio_fake, x=x_fake)
    monkeypatch.setenv("BROADCAST_EMAIL_FROM", "alerts@pwani-power.example")
    result = CliRunner().invoke(
        main,
        # no --force: every language's SMS fits the default 3 segments, in the shortest form it needs
        ["send", str(STORM), "--contacts", str(CONTACTS), "--web-dir", str(tmp_path / "web"), "--yes", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), sendgrid_fake, twilio_fake, x_fake, tmp_path / "web"


def test_each_sms_is_in_the_recipients_language_with_the_encoding_and_segments_we_counted(sent) -> None:  # noqa: ANN001
    data, _, twilio, _, _ = sent
    bodies = {d.recipient: d.payload for d in twilio.deliveries}
    assert ARABIC.search(bodies["+254722555106"]["body"])  # ar
    assert ARABIC.search(bodies["+254733555107"]["body"])  # ar-EG → ar
    assert "č" in bodies["+38641555105"]["body"] or "ž" in bodies["+38641555105"]["body"]  # sl
    assert "umeme" in bodies["+254733555103"]["body"].lower()  # sw
    assert bodies["+254712555108"]["body"].startswith("EMERGENCY")  # fr → en, the default
    # the fake counts segments by its own implementation of Twilio's rules: it must agree with ours
    for recipient, payload in bodies.items():
        assert int(payload["num_segments"]) == count_segments(payload["body"]).segments, recipient
        assert int(payload["num_segments"]) <= 3, recipient  # the default --max-sms-segments, without --force
    sms_rows = {r["language"]: r for r in data["renderings"] if r["channel"] == "sms"}
    assert sms_rows["ar"]["encoding"] == "UCS-2" and sms_rows["sl"]["encoding"] == "UCS-2"
    assert sms_rows["en"]["encoding"] == "GSM-7" and sms_rows["sw"]["encoding"] == "GSM-7"


def test_each_email_is_in_the_recipients_language_and_arabic_is_right_to_left(sent) -> None:  # noqa: ANN001
    _, sendgrid, _, _, _ = sent
    by_recipient = {}
    for request in sendgrid.requests:
        mail = request.body
        html = next(c["value"] for c in mail["content"] if c["type"] == "text/html")
        text = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
        for p in mail["personalizations"]:
            by_recipient[p["to"][0]["email"]] = (mail.get("subject", ""), html, text)
    subject, html, text = by_recipient["layla.haddad@pwani-mail.example"]
    assert 'lang="ar"' in html and 'dir="rtl"' in html and ARABIC.search(subject) and ARABIC.search(text)
    subject, html, _ = by_recipient["marko.zupancic@pwani-mail.example"]  # sl-SI → sl
    assert 'lang="sl"' in html and subject.startswith("Izredne razmere")
    subject, html, _ = by_recipient["hans.becker@pwani-mail.example"]  # de → en
    assert 'lang="en"' in html and 'dir="ltr"' in html
    assert len(by_recipient) == len(sendgrid.deliveries) == 11


def test_social_posts_one_thread_per_listed_language_and_web_one_banner_per_language(sent) -> None:  # noqa: ANN001
    data, _, _, x, web = sent
    posts = [d.recipient for d in x.deliveries]
    arabic = [p for p in posts if ARABIC.search(p)]
    assert data["channels"]["social"]["sent"] == 2
    rows = {(r["channel"], r["language"]): r for r in data["renderings"]}
    assert len(arabic) == rows[("social", "ar")]["posts"]
    assert len(posts) == rows[("social", "en")]["posts"] + rows[("social", "ar")]["posts"]
    index = json.loads((web / "banner.json").read_text(encoding="utf-8"))
    assert set(index["languages"]) == {"en", "sw", "sl", "ar"}
    assert index["languages"]["ar"]["dir"] == "rtl" and index["languages"]["sl"]["dir"] == "ltr"


def test_fallback_counts_say_who_fell_back_and_to_what(sent) -> None:  # noqa: ANN001
    data = sent[0]
    fallbacks = {(f["tag"], f["language"], f["how"]): f["contacts"] for f in data["fallbacks"]}
    assert fallbacks == {
        ("", "en", "unset"): 1,
        ("ar-EG", "ar", "base"): 1,
        ("de", "en", "default"): 1,
        ("en-KE", "en", "base"): 1,
        ("fr", "en", "default"): 1,
        ("sl-SI", "sl", "base"): 1,
        ("sw-KE", "sw", "base"): 1,
    }
    assert data["contacts"] == {"read": 13, "valid": 13, "rejected": 0, "merged": 0, "lost_channel": 0}
