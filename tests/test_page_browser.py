"""The preview page in headless Chromium: every panel shows, the frames render, and nothing is fetched but the file."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from broadcast.channels import defaults
from broadcast.page import write_page
from broadcast.plan import PlanRequest, prepare
from tests.conftest import CONTACTS, REPO, STORM

#: what a preview without --channel shows
CHANNELS = defaults()

# The system browser (Debian's chromium package); no browser is downloaded for the tests
CHROMIUM = Path(os.environ.get("BROADCAST_TEST_CHROMIUM", "/usr/bin/chromium"))
# Quiet the browser's own background traffic, so what is left comes from the page
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOT = REPO / "test-artifacts" / "preview.png"
VIEWPORT = {"width": 1440, "height": 900}
LOCAL = ("file:", "about:", "data:")


class RefusingProxy:
    """An HTTP proxy on 127.0.0.1 that records the host of every request and refuses it.

    Why a proxy: Playwright does not report requests made inside a sandboxed srcdoc iframe (checked with
    Playwright 1.65 and Chromium 156), and those frames are exactly where an email's remote image would
    load. Every request Chromium makes, from any frame, goes through the proxy, and none leaves the machine.
    """

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(8192).split(b"\r\n", 1)[0].decode("latin-1")
                    # "CONNECT host:443 HTTP/1.1" for https, "GET http://host/path HTTP/1.1" for http
                    target = line.split(" ")[1] if " " in line else line
                    self.hosts.append(urlsplit(target if "://" in target else f"//{target}").hostname or target)
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._server.close()


@pytest.fixture(scope="module")
def proxy() -> Iterator[RefusingProxy]:
    proxy = RefusingProxy()
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def browser(proxy: RefusingProxy):  # noqa: ANN201 - playwright.sync_api.Browser
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium, or set BROADCAST_TEST_CHROMIUM")
    # <-loopback> sends even 127.0.0.1 through the proxy, so a page could not reach a local service either
    args = [*CHROMIUM_ARGS, f"--proxy-server={proxy.url}", "--proxy-bypass-list=<-loopback>"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield browser
        browser.close()


def visit(browser, path: Path, proxy: RefusingProxy):  # noqa: ANN001, ANN201 - Browser in, (Page, requests, hosts) out
    """Open ``path`` and record every request: Playwright's view of the page, and the proxy's view of the browser."""
    context = browser.new_context(viewport=VIEWPORT)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    # Refused before it reaches the proxy, so a regression shows up as a recorded request, never as a fetch
    context.route(lambda url: not url.startswith(LOCAL), lambda route: route.abort())
    seen_before = len(proxy.hosts)
    page = context.new_page()
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_timeout(500)  # let late subresources in frames start
    return page, requested, proxy.hosts[seen_before:]


def test_every_panel_shows_and_nothing_is_fetched(browser, proxy: RefusingProxy, tmp_path: Path) -> None:  # noqa: ANN001
    # at 1 segment even the shortest SMS form is over the limit, so the page has warnings to show
    plan, cautions = prepare(PlanRequest(STORM, (CONTACTS,), max_sms_segments=1))
    path = write_page(plan, cautions, tmp_path / "preview", sms_segment_price=0.0079, max_sms_segments=1)
    source = path.read_text(encoding="utf-8")
    page, requested, hosts = visit(browser, path, proxy)

    notice = plan.notice
    expected = [
        (channel, lang)
        for lang in notice.languages
        for channel in CHANNELS
        if lang in (notice.social_languages if channel == "social" else notice.languages)
    ]
    assert page.locator("[data-channel][data-language]").count() == len(expected) == 18
    for channel, lang in expected:
        panel = page.locator(f"#panel-{channel}-{lang}")
        assert panel.get_attribute("data-channel") == channel and panel.get_attribute("data-language") == lang
        assert panel.is_visible(), f"panel {channel} × {lang} is not visible"
        assert panel.get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")

    # The email and banner frames render their own HTML (as documents, not as escaped source text)
    frames = [f for f in page.frames if f.url == "about:srcdoc"]
    assert len(frames) == 8
    for frame in frames:
        assert frame.evaluate("document.body.innerText.trim().length") > 100
        assert "<table" not in frame.evaluate("document.body.innerText")
    email_en = page.locator("#panel-email-en iframe").content_frame
    assert email_en.locator("h1").inner_text() == "Power cuts after the storm"
    assert email_en.locator("html").get_attribute("dir") == "ltr"
    assert page.locator("#panel-web-ar iframe").content_frame.locator(".broadcast-banner").get_attribute("dir") == "rtl"

    # What a person sees first, without scrolling: whether it is safe to send, and the counts
    for block in ("#verdict", "#counts"):
        box = page.locator(block).bounding_box()
        assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"]
    assert "Check 6 problems before sending" in page.locator("#verdict").inner_text()  # 4 warnings, 2 lost a channel
    assert page.locator("#panel-sms-sl .pill").first.inner_text() == "3 segments, over 1"

    # Chromium paints only frames near the viewport, so the full-page picture is taken at the page's own height
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.wait_for_timeout(300)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.context.close()

    assert requested[0] == path.as_uri()
    assert [url for url in requested if not url.startswith(LOCAL)] == []
    # The page can only fetch what its source names (it runs no script), so a host it names reaching the
    # proxy is a leak; other hosts are Chromium's own services (updates, sign-in), which no flag silences.
    assert [host for host in hosts if host in source] == []


def test_the_proxy_sees_a_fetch_playwright_misses(browser, proxy: RefusingProxy, tmp_path: Path) -> None:  # noqa: ANN001
    """The control for the test above: a remote image in a sandboxed frame is caught, so "nothing seen" means something."""
    leak = tmp_path / "leak.html"
    leak.write_text(
        '<!DOCTYPE html><title>leak</title><iframe sandbox srcdoc="&lt;img src=&quot;https://leak.example/pixel.png&quot;&gt;"></iframe>',
        encoding="utf-8",
    )
    page, requested, hosts = visit(browser, leak, proxy)
    page.context.close()
    assert "leak.example" in hosts
