"""The staff brief in headless Chromium: printed to A4 in at most 2 pages per language, complete, loading nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from broadcast import brief
from broadcast.notice import load_notice, localize
from tests.conftest import EXAMPLE, REPO, STORM
from tests.test_page_browser import LOCAL, RefusingProxy, browser, proxy, visit  # noqa: F401 - fixtures

SCREENSHOT = REPO / "test-artifacts" / "brief-en.png"
#: the languages that ship complete catalogs; a notice is printed in those of them it has text in
SHIPPED = ("en", "sw", "sl", "ar")
CASES = [
    pytest.param(example, lang, id=f"{example.stem}-{lang}")
    for example in (EXAMPLE, STORM)
    for lang in SHIPPED
    if lang in load_notice(example).languages
]


def pdf_pages(pdf: bytes) -> int:
    """Pages in a PDF, by its page objects: no PDF library is installed, and Chromium writes them uncompressed."""
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


@pytest.mark.parametrize(("example", "lang"), CASES)
def test_each_language_prints_on_at_most_two_a4_pages_with_everything_and_no_fetch(
    browser, proxy: RefusingProxy, tmp_path: Path, example: Path, lang: str  # noqa: ANN001, F811
) -> None:
    written = brief.make(example, out_dir=tmp_path, languages=[lang])
    path = tmp_path / brief.HTML_FILE
    source = path.read_text(encoding="utf-8")
    page, requested, hosts = visit(browser, path, proxy)

    section = page.locator(f"#brief-{lang}")
    assert section.get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")
    shown = " ".join(section.inner_text().split())
    local = localize(written.notice, lang)
    expected = [*local.questions, *local.options]
    for resource in local.resources:
        expected += [resource.title, resource.description or "", resource.url]
    for route in local.routing:
        expected += [route.need, route.channel.label, route.channel.contact, route.channel.hours or ""]
    missing = [text for text in expected if " ".join(text.split()) not in shown]
    assert missing == [], f"{example.stem} {lang}: not on the page: {missing}"
    # every routing row is one table row: need, channel, contact and hours side by side
    rows = page.locator("table.routing tbody tr")
    assert rows.count() == len(local.routing)
    for i, route in enumerate(local.routing):
        cells = [" ".join(c.split()) for c in rows.nth(i).locator("td").all_inner_texts()]
        assert cells == [route.need, route.channel.label, route.channel.contact, route.channel.hours or ""]

    pages = pdf_pages(page.pdf(format="A4"))
    # the print CSS sets margins only, so US Letter (wider, shorter) fits as well
    letter = pdf_pages(page.pdf(format="Letter"))
    print(f"\nbrief {example.stem} {lang}: {pages} A4 page(s), {letter} Letter page(s)")
    assert 1 <= pages <= 2, f"{example.stem} {lang}: {pages} A4 pages"
    assert 1 <= letter <= 2, f"{example.stem} {lang}: {letter} Letter pages"
    if example == EXAMPLE and lang == "en":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.context.close()

    assert requested[0] == path.as_uri()
    assert [url for url in requested if not url.startswith(LOCAL)] == []
    # the brief names many hosts (resources, chat, portal): none of them may be asked for anything
    assert [host for host in hosts if host in source] == []


def test_the_page_counter_counts_pages(browser, tmp_path: Path) -> None:  # noqa: ANN001, F811
    """The control for the page count: a page three A4 sheets tall is counted as three."""
    tall = tmp_path / "tall.html"
    tall.write_text('<!DOCTYPE html><div style="height:700mm">x</div>', encoding="utf-8")
    page = browser.new_page()
    page.goto(tall.as_uri())
    assert pdf_pages(page.pdf(format="A4")) == 3
    page.close()
