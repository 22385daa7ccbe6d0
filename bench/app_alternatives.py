"""Screenshot of the chat app's Alternatives panel on a real model (docs/app_alternatives.png).

    .venv/bin/python bench/app_alternatives.py runs/simuser/export/simuser.q8_0.gguf \
        --screenshot docs/app_alternatives.png

Starts the app in this process (feedback to a scratch file, never the user's), asks one question in
headless Chromium, asks for 3 alternatives at the default lambda and screenshots the page once all
three are shown, before any is judged.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

QUESTION = "How long should I boil an egg?"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--screenshot", type=Path, default=ROOT / "docs/app_alternatives.png")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from feedback_fake import ServedWithFeedback
    from lwdpo_edge import load_model
    from test_chat_browser import CHROMIUM, CHROMIUM_ARGS, wait_for

    scratch = Path(tempfile.mkdtemp())
    app = ServedWithFeedback(load_model(args.model, threads=1), scratch / "chats", scratch / "feedback.jsonl")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                scratch / "profile", executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1300})
            page = browser.new_page()
            page.goto(app.url)
            page.locator("#max-tokens input[type=number]").fill("80")
            page.locator("#max-tokens input[type=number]").press("Enter")
            page.locator("#message textarea").fill(QUESTION)
            page.locator("#message textarea").press("Enter")
            wait_for(lambda: not page.locator("#chatbot .generating").count()
                     and len(page.locator("#chatbot").inner_text()) > 60,
                     timeout=120, what="the first answer")
            time.sleep(1.0)
            page.get_by_text("Alternatives: rank answers").click()
            page.locator("#alt-ask").click()
            wait_for(lambda: "Pick the best" in page.locator("#alt-status").inner_text(),
                     timeout=300, what="3 alternatives")
            page.locator("#alternatives").scroll_into_view_if_needed()
            page.screenshot(path=str(args.screenshot), full_page=True)
            browser.close()
    finally:
        app.close()
    print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
