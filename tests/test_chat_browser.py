"""The chat page in headless Chromium (Playwright): sliders and chat box render, a slider edit reaches the
model's header, Stop stops the stream, and the page fetches nothing from outside the app (offline)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chat_fake import DEFAULT, OBJECTIVES, FakeModel, Served
from lwdpo_edge.lambdas import format_lambda_header

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"browser test needs Chromium at {CHROMIUM} (Debian package 'chromium')", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="browser test needs Python Playwright (pip install playwright)")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_page_renders_sliders_and_chat_and_steers_the_model(tmp_path):
    app = Served(FakeModel(delay=0.01), tmp_path / "chats")
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                tmp_path / "profile", executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 1100})
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            assert page.goto(app.url).status == 200
            received = page.locator("#received textarea")

            # Rendered: one range slider per objective at the default weight, the chat box, the message box.
            for name in OBJECTIVES:
                slider = page.locator(f"#lambda-{name} input[type=range]")
                slider.wait_for(state="visible", timeout=30_000)
                assert float(slider.input_value()) == pytest.approx(DEFAULT[name])
            assert page.locator("#chatbot").is_visible() and page.locator("#message textarea").is_visible()
            assert received.input_value() == format_lambda_header(DEFAULT, OBJECTIVES)

            # A slider edit re-renders the header live, and the next answer is generated under it.
            page.locator("#lambda-conciseness input[type=number]").fill("1")
            page.locator("#lambda-conciseness input[type=number]").press("Enter")
            expected = format_lambda_header({**DEFAULT, "conciseness": 1.0}, OBJECTIVES)
            wait_for(lambda: received.input_value() == expected, what="the header to follow the slider")
            page.locator("#message textarea").fill("Hello there")
            page.locator("#message textarea").press("Enter")
            wait_for(lambda: f"I was asked under: {expected}" in page.locator("#chatbot").inner_text(),
                     what="the answer")
            assert app.model.received[-1][0]["content"] == expected

            # Stop: the model's stream is closed mid-answer.
            assert app.model.finished.wait(10)  # the first stream has run out (its finally has run)
            app.model.finished.clear()
            # 256 tokens (the page's max) at 0.2 s each: ~50 s, far longer than Stop takes even on a loaded machine
            app.model.answer_words, app.model.delay = [f"w{i}" for i in range(2000)], 0.2
            page.locator("#message textarea").fill("Talk a lot")
            page.locator("#message textarea").press("Enter")
            wait_for(lambda: "w3" in page.locator("#chatbot").inner_text(), what="streaming to start")
            page.get_by_role("button", name="Stop").click()
            assert app.model.finished.wait(30) and app.model.closed == 1

            shot = tmp_path / "chat.png"
            page.screenshot(path=shot, full_page=True)
            browser.close()
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        outside = sorted({url for url in requests if not url.startswith((app.url, "data:", "blob:"))})
        assert outside == [], f"the page fetched from outside the app: {outside}"
    finally:
        app.close()
