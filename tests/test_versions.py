"""Notice versions: a hash of what recipients receive, so only a change they would read sends again."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import CONTACTS, EXAMPLE, REPO
from tests.test_send_e2e import fakes, send  # noqa: F401  (fakes is a fixture)


def provider_requests(fakes_) -> int:  # noqa: ANN001
    return sum(len(fake.requests) for fake in fakes_)


def test_junk_in_the_templates_folder_sends_nothing_again(fakes, tmp_path: Path) -> None:  # noqa: ANN001, F811
    templates = tmp_path / "tpl"
    shutil.copytree(REPO / "templates", templates)
    first = send(EXAMPLE, "--contacts", CONTACTS, "--templates", templates)
    assert first["channels"]["email"]["sent"] == 11 and first["channels"]["sms"]["sent"] == 8
    before = provider_requests(fakes)
    # what a Mac, a translator preparing the next language and an editor's backup leave behind
    (templates / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    shutil.copy(templates / "labels" / "en.yaml", templates / "labels" / "fr.yaml")
    (templates / "sms.old.txt.j2").write_text("{{ notice.headline }} (old)\n", encoding="utf-8")
    again = send(EXAMPLE, "--contacts", CONTACTS, "--templates", templates)
    assert again["versions"] == first["versions"]
    assert provider_requests(fakes) == before
    assert all(again["channels"][c]["sent"] == 0 for c in ("email", "sms", "social"))


def test_a_wording_change_is_a_new_version_of_that_channel_only(fakes, tmp_path: Path) -> None:  # noqa: ANN001, F811
    _, twilio, _ = fakes
    templates = tmp_path / "tpl"
    shutil.copytree(REPO / "templates", templates)
    first = send(EXAMPLE, "--contacts", CONTACTS, "--templates", templates)
    sms = templates / "sms.txt.j2"
    sms.write_text(sms.read_text(encoding="utf-8").replace("{{ t.sms_header", "Lakeside: {{ t.sms_header"), encoding="utf-8")
    again = send(EXAMPLE, "--contacts", CONTACTS, "--templates", templates)
    assert again["versions"]["sms"] != first["versions"]["sms"]
    assert {c: again["versions"][c] for c in ("email", "social", "web")} == {
        c: first["versions"][c] for c in ("email", "social", "web")
    }
    assert again["channels"]["sms"]["sent"] == 8 and again["channels"]["email"]["sent"] == 0
    bodies = [r.body["Body"] for r in twilio.requests if r.method == "POST"]
    assert len(bodies) == 16 and all("Lakeside: " in b for b in bodies[8:])
    # every language's update prefix: Update, Sasisho, Posodobitev
    assert all(b.startswith(("UPDATE: ", "SASISHO: ", "POSODOBITEV: ")) for b in bodies[8:]), bodies[8:]
    # the update went out under the content's version, so a third run finds it sent
    third = send(EXAMPLE, "--contacts", CONTACTS, "--templates", templates)
    assert third["versions"] == again["versions"] and third["channels"]["sms"]["sent"] == 0



def test_a_different_sms_segment_limit_sends_nothing_again(fakes) -> None:  # noqa: ANN001, F811
    """The limit picks which of the SMS template's forms goes out; the content, and so the version, is the same."""
    first = send(EXAMPLE, "--contacts", CONTACTS, "--channel", "sms")
    before = provider_requests(fakes)
    again = send(EXAMPLE, "--contacts", CONTACTS, "--channel", "sms", "--max-sms-segments", "20")
    assert again["versions"]["sms"] == first["versions"]["sms"]
    assert again["channels"]["sms"]["sent"] == 0 and provider_requests(fakes) == before
