"""The preview page without a browser: every panel is there, nothing loads from the network, notice text is inert."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from broadcast.channels import defaults
from broadcast.page import write_page
from broadcast.plan import PlanRequest, prepare
from broadcast.segments import count_segments
from tests.conftest import CONTACTS, EXAMPLE, STORM

#: what a preview without --channel shows
CHANNELS = defaults()

XSS = "<script>alert(1)</script>"

# Attributes that make a browser fetch something on load; <a href> is a link a person may click, not a load
LOADING = {"src", "srcset", "poster", "data", "background", "action", "formaction", "lowsrc", "dynsrc", "xlink:href"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)


class Document(HTMLParser):
    """Every element with its attributes, every text node, and the text inside each element carrying an id."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.texts: list[str] = []
        self._open: list[Element] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in {"meta", "link", "br", "img", "input", "hr", "source"}:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        for element in self._open:
            element.text.append(data)

    def by_id(self, element_id: str) -> Element:
        return next(e for e in self.elements if e.attrs.get("id") == element_id)

    def having(self, attr: str) -> list[Element]:
        return [e for e in self.elements if attr in e.attrs]

    def classed(self, name: str) -> list[Element]:
        return [e for e in self.elements if name in e.attrs.get("class", "").split()]


def make_page(tmp_path: Path, notice: Path = STORM, contacts: Path = CONTACTS, **options) -> tuple[Path, object]:
    plan, cautions = prepare(PlanRequest(notice, (contacts,), max_sms_segments=options.get("max_sms_segments", 3)))
    path = write_page(plan, cautions, tmp_path / "preview", **options)
    return path, plan


def frames(doc: Document) -> list[Document]:
    """The documents shown in iframes (srcdoc), parsed the way a browser parses them."""
    return [Document(e.attrs["srcdoc"]) for e in doc.having("srcdoc")]


def frame_in(doc: Document, panel_id: str) -> Document:
    """The document shown in the iframe of one panel."""
    return Document(next(e for e in _descendants(doc, doc.by_id(panel_id)) if e.tag == "iframe").attrs["srcdoc"])


def test_writes_index_html_and_returns_its_path(tmp_path: Path) -> None:
    path, _ = make_page(tmp_path)
    assert path == tmp_path / "preview" / "index.html"
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]  # no temp file left behind


def test_every_channel_and_language_has_its_panel(tmp_path: Path) -> None:
    path, plan = make_page(tmp_path)
    doc = Document(path.read_text(encoding="utf-8"))
    notice = plan.notice
    expected = {
        (channel, lang)
        for channel in CHANNELS
        for lang in (notice.social_languages if channel == "social" else notice.languages)
    }
    assert len(expected) == 18  # 4 languages × email, sms, web, voice + X in en and ar
    panels = {(e.attrs["data-channel"], e.attrs["data-language"]): e for e in doc.having("data-language")}
    assert set(panels) == expected
    for (channel, lang), panel in panels.items():
        assert panel.attrs["id"] == f"panel-{channel}-{lang}"
        assert panel.attrs["dir"] == ("rtl" if lang == "ar" else "ltr")
    assert "Emergency: Power cuts after the storm" in "".join(panels[("email", "en")].text)
    # the email body and banner are shown as documents, each in its own sandboxed frame
    iframes = [e for e in doc.elements if e.tag == "iframe"]
    assert len(iframes) == 8 and all("sandbox" in e.attrs and e.attrs["srcdoc"] for e in iframes)
    # the plain-text part of each email sits in a collapsible <details>
    assert sum(1 for e in doc.elements if e.tag == "details") == 4


def test_a_channel_left_out_by_the_plan_has_no_panel(tmp_path: Path) -> None:
    plan, cautions = prepare(PlanRequest(STORM, (CONTACTS,), channels=("email", "web")))
    doc = Document(write_page(plan, cautions, tmp_path).read_text(encoding="utf-8"))
    assert {e.attrs["data-channel"] for e in doc.having("data-language")} == {"email", "web"}


def _loads(doc: Document) -> list[str]:
    """Every URL a document would fetch by itself: loading attributes, stylesheets, imports in CSS."""
    import re

    urls = []
    for element in doc.elements:
        for name, value in element.attrs.items():
            if name in LOADING:
                urls.append(value)
            if name == "style":
                urls.extend(re.findall(r"url\(\s*['\"]?([^'\")]+)", value))
        if element.tag == "link":
            urls.append(element.attrs.get("href", ""))
        if element.tag == "script":
            urls.append(element.attrs.get("src", "inline script"))
    for text in doc.texts:  # <style> bodies
        urls.extend(re.findall(r"url\(\s*['\"]?([^'\")]+)", text))
        urls.extend(re.findall(r"@import\s+['\"]?([^'\";]+)", text))
    return urls


def test_the_page_loads_nothing_from_the_network(tmp_path: Path) -> None:
    path, _ = make_page(tmp_path)
    doc = Document(path.read_text(encoding="utf-8"))
    inner = frames(doc)
    assert len(inner) == 8
    for document in [doc, *inner]:
        remote = [u for u in _loads(document) if u.strip().lower().startswith(("http:", "https:", "//"))]
        assert remote == []
        assert not [e for e in document.elements if e.tag == "script"]
        assert not [e for e in document.elements if e.tag == "link" and "stylesheet" in e.attrs.get("rel", "")]
        # and a policy that forbids any load, in case a user's template brings one
        policies = [e.attrs["content"] for e in document.elements if e.attrs.get("http-equiv") == "Content-Security-Policy"]
        assert policies and policies[0].startswith("default-src 'none'")
    # the page's own links only jump within it, or open the staff brief the preview writes beside it;
    # links a notice contains stay inside the messages
    assert all(e.attrs["href"].startswith("#") or e.attrs["href"] == "brief.html" for e in doc.having("href"))
    assert any(e.attrs["href"].startswith("https://") for d in inner for e in d.having("href") if e.tag == "a")


def test_a_remote_image_in_a_users_template_is_blocked_and_said(tmp_path: Path) -> None:
    import shutil

    from broadcast.render import default_templates_dir

    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    body = templates / "email" / "body.html.j2"
    body.write_text(
        body.read_text(encoding="utf-8").replace("<body", '<img src="https://cdn.example/logo.png" alt=""><body', 1),
        encoding="utf-8",
    )
    plan, cautions = prepare(PlanRequest(STORM, (CONTACTS,), templates_dir=templates))
    page = write_page(plan, cautions, tmp_path / "out").read_text(encoding="utf-8")
    doc = Document(page)
    assert "remote image(s) or style(s); they are blocked here" in page
    email = frame_in(doc, "panel-email-en")
    policy = next(e for e in email.elements if e.attrs.get("http-equiv") == "Content-Security-Policy")
    # the policy comes before the image in the frame's document, so the browser applies it to the image
    assert email.elements.index(policy) < next(i for i, e in enumerate(email.elements) if e.tag == "img")
    assert "img-src data:" in policy.attrs["content"]


def test_notice_text_is_escaped_everywhere(tmp_path: Path) -> None:
    data = yaml.safe_load(STORM.read_text(encoding="utf-8"))
    data["headline"]["en"] = f"Storm {XSS}"
    data["summary"]["en"] = f'Power is out. {XSS} <img src=x onerror="alert(2)">'
    notice = tmp_path / "hostile.yaml"
    notice.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    path, _ = make_page(tmp_path, notice=notice)
    page = path.read_text(encoding="utf-8")
    assert "<script" not in page.lower()  # not even inside srcdoc: there it is escaped twice
    doc = Document(page)
    assert not [e for e in doc.elements if e.tag in {"script", "img"}]
    text = "".join(doc.texts)
    assert XSS in text  # shown to the person as the text it is: headline, subject, SMS, X, plain text
    for document in frames(doc):
        assert not [e for e in document.elements if e.tag == "script" or "onerror" in e.attrs]
    assert XSS in "".join(frame_in(doc, "panel-email-en").texts)
    assert XSS in "".join(frame_in(doc, "panel-web-en").texts)


def _money(value: float) -> str:
    return f"{value:,.2f}"


def test_sms_shows_segments_and_cost_per_language(tmp_path: Path) -> None:
    price = 0.25  # a price whose products are exact, so the shown text is predictable
    # at a limit of 1 segment even the shortest form of every example SMS is over
    path, plan = make_page(tmp_path, sms_segment_price=price, max_sms_segments=1)
    doc = Document(path.read_text(encoding="utf-8"))
    total = 0.0
    for lang in plan.notice.languages:
        panel = doc.by_id(f"panel-sms-{lang}")
        segments = count_segments(plan.renders.get("sms", lang).text).segments
        recipients = plan.counts["sms"][lang]
        cost = segments * recipients * price
        total += cost
        assert int(panel.attrs["data-segments"]) == segments
        assert int(panel.attrs["data-recipients"]) == recipients
        assert float(panel.attrs["data-sms-cost"]) == pytest.approx(cost)
        inside = {id(e) for e in _descendants(doc, panel)}
        shown = [e for e in doc.classed("sms-cost") if id(e) in inside]
        assert ["".join(e.text) for e in shown] == [_money(cost)]
        # each panel is over the limit even in the shortest form, and flagged red
        assert "bad" in panel.attrs["class"].split()
        assert f"{segments} segments, over 1" in "".join(panel.text)
        assert panel.attrs["data-form"] == "7"
    # en 2, not 3: the example's row 13 is a London landline, which gets no SMS
    assert {lang: plan.counts["sms"][lang] for lang in plan.notice.languages} == {"en": 2, "sw": 4, "sl": 2, "ar": 0}
    assert total == pytest.approx(2 * 2 * 0.25 + 2 * 4 * 0.25 + 3 * 2 * 0.25)
    assert f"est. cost {_money(total)}" in "".join(doc.by_id("counts").text)


def _descendants(doc: Document, parent: Element) -> list[Element]:
    """Elements after ``parent`` up to the next panel or section: what the page nests inside it."""
    out = []
    for element in doc.elements[doc.elements.index(parent) + 1 :]:
        if "data-language" in element.attrs or element.tag in {"section", "nav"}:
            break
        out.append(element)
    return out


def test_sms_within_the_limit_is_not_flagged(tmp_path: Path) -> None:
    path, _ = make_page(tmp_path, max_sms_segments=20)
    doc = Document(path.read_text(encoding="utf-8"))
    for e in doc.having("data-segments"):
        assert "bad" not in e.attrs["class"].split()
    assert not [e for e in doc.elements if e.attrs.get("id") == "warnings"]


def test_safe_to_send_comes_first_with_warnings_and_contact_problems(tmp_path: Path) -> None:
    # the example SMS fits the default 3 segments in a shorter form; at 1 segment it cannot, which check warns about
    path, plan = make_page(tmp_path, max_sms_segments=1)
    page = path.read_text(encoding="utf-8")
    doc = Document(page)
    # the verdict and the counts come before any panel
    order = [e.attrs.get("id") for e in doc.elements if e.attrs.get("id") in {"verdict", "counts", "warnings", "panel-email-en"}]
    assert order == ["verdict", "counts", "warnings", "panel-email-en"]
    verdict = doc.by_id("verdict")
    # 4 warnings about the messages, and 2 contacts who lost a channel (row 13: a landline, email only; row 16: a bad
    # email, SMS only): people reached on fewer channels count too
    assert "v-stop" in verdict.attrs["class"] and "Check 6 problems before sending" in "".join(verdict.text)
    assert "2 contacts who lost a channel" in "".join(verdict.text)
    warnings = "".join(doc.by_id("warnings").text)
    assert "sms (sl)" in warnings and "3 segments (UCS-2, 167 characters) is over the limit of 1" in warnings
    problems = doc.by_id("contact-problems")
    rows = [e for e in _descendants(doc, problems) if e.tag == "tr" and e.attrs.get("class", "").startswith("p-")]
    assert [r.attrs["class"] for r in rows] == ["p-warning", "p-warning", "p-warning"]
    assert "contacts/example.csv" in "".join(rows[0].text) and "13" in rows[0].text and "phone" in rows[0].text
    assert "16" in rows[1].text and "email" in rows[1].text
    fallbacks = "".join(doc.by_id("fallbacks").text)
    assert "sw-KE" in fallbacks and "base language" in fallbacks
    counts = "".join(doc.by_id("counts").text)
    assert "25" in counts and "15 of 16" in counts  # 25 messages: the landline on row 13 gets no SMS


def test_rejected_rows_are_red(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "name,email,phone,language,channels,tags\nAna,ana@example.org,,en,email,\nNobody,not-an-email,12,en,email,\n"
        # nine more good rows: one rejected row in ten is within --max-rejected's default, so the page is written
        + "".join(f"P{n},p{n}@example.org,,en,email,\n" for n in range(9)),
        encoding="utf-8",
    )
    path, _ = make_page(tmp_path, notice=EXAMPLE, contacts=contacts, max_sms_segments=20)
    doc = Document(path.read_text(encoding="utf-8"))
    rows = [e for e in doc.elements if e.tag == "tr" and e.attrs.get("class") == "p-rejected"]
    assert rows and "rejected" in "".join(rows[0].text)
    assert "red" in doc.by_id("contact-problems").attrs["class"].split()
    assert "rejected contact row" in "".join(doc.by_id("verdict").text)


def test_a_clean_plan_says_ready_to_send(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("name,email,phone,language,channels,tags\nAna,ana@example.org,,en,email,\n", encoding="utf-8")
    path, _ = make_page(tmp_path, notice=EXAMPLE, contacts=contacts, max_sms_segments=20)
    doc = Document(path.read_text(encoding="utf-8"))
    verdict = doc.by_id("verdict")
    assert "v-ready" in verdict.attrs["class"] and "ready to send" in "".join(verdict.text)


def test_placeholders_show_as_highlighted_tokens(tmp_path: Path) -> None:
    path, _ = make_page(tmp_path)
    page = path.read_text(encoding="utf-8")
    doc = Document(page)
    assert "%%name" not in "".join(doc.texts)
    email = frame_in(doc, "panel-email-en")
    marks = [e for e in email.elements if e.tag == "mark"]
    assert marks and "".join(marks[0].text) == "name"
    assert "%%name" not in "".join(email.texts)
