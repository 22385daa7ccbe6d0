"""The Alternatives panel in headless Chromium (Playwright): ask for alternatives to the last answer, order
them with clicks, and check the exact record written to the feedback file; the page fetches nothing
from outside the app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feedback_fake import SeededSoup, ServedWithFeedback
from lwdpo_edge.data.validate import validate_path
from test_chat_browser import CHROMIUM, CHROMIUM_ARGS, wait_for

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="browser test needs Python Playwright (pip install playwright)")
if not CHROMIUM.is_file():
    pytest.skip(f"browser test needs Chromium at {CHROMIUM}", allow_module_level=True)

LAM = {"helpfulness": 0.5, "conciseness": 0.3, "readability": 0.2}  # chat_fake.DEFAULT: the sliders' start


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_alternatives_are_ordered_with_clicks_and_saved_as_one_exact_record(tmp_path):
    feedback = tmp_path / "data" / "feedback.jsonl"
    app = ServedWithFeedback(SeededSoup(strength=2.0), tmp_path / "chats", feedback)
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                tmp_path / "profile", executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 1400})
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            assert page.goto(app.url).status == 200
            page.locator("#system textarea").fill("Answer briefly.")
            page.locator("#message textarea").fill("Name a fruit.")
            page.locator("#message textarea").press("Enter")
            wait_for(lambda: "I was asked under: Answer briefly." in page.locator("#chatbot").inner_text(),
                     what="the first answer")

            page.get_by_text("Alternatives: rank answers").click()
            assert page.locator("#feedback-count").inner_text().startswith("0 judgements in")
            assert "(20 more before training)" in page.locator("#feedback-count").inner_text()
            page.locator("#alt-ask").click()
            texts = [page.locator(f"#alt-text-{i} textarea") for i in range(3)]
            wait_for(lambda: all(t.input_value().startswith("answer ") for t in texts), what="3 alternatives")
            assert not page.locator("#alt-col-3").is_visible()  # n = 3 (the default): the 4th column stays hidden
            shown = [t.input_value() for t in texts]
            # Full order B > A > C, one click per rank, then save.
            for i, rank in enumerate(["2", "1", "3"]):
                page.locator(f"#alt-rank-{i} label").filter(has_text=rank).click()
            page.locator("#alt-save-order").click()
            wait_for(lambda: page.locator("#feedback-count").inner_text().startswith("1 judgement in"),
                     what="the counter")
            assert "Saved judgement 1 (B > A > C)" in page.locator("#alt-status").inner_text()
            counter = page.locator("#feedback-count").inner_text()
            assert f"lwdpo-edge train --output RUN --feedback {feedback}" in counter and "19 more" in counter

            # Again with 2 alternatives, spread over lambda, and one click on "B is best".
            page.locator("#alt-n input[type=number]").fill("2")
            page.locator("#alt-n input[type=number]").press("Enter")
            page.locator("#alt-mode label").filter(has_text="spread").click()
            page.locator("#alt-ask").click()
            wait_for(lambda: not page.locator("#alt-col-2").is_visible()
                     and page.locator("#alt-text-1 textarea").input_value().startswith("answer "),
                     what="2 alternatives")
            spread = [page.locator(f"#alt-text-{i} textarea").input_value() for i in range(2)]
            page.locator("#alt-best-1").click()
            wait_for(lambda: len(rows(feedback)) == 2, what="the second record")
            shot = tmp_path / "alternatives.png"
            page.screenshot(path=shot, full_page=True)
            browser.close()

        first, second = rows(feedback)
        prompt = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a fruit."}]
        assert first["prompt"] == prompt and first["objective"] == "user" and first["judgement"] == "order"
        assert [r["text"] for r in first["responses"]] == shown
        assert [r["scores"] for r in first["responses"]] == [{"user": -2.0}, {"user": -1.0}, {"user": -3.0}]
        seeds = [r["seed"] for r in first["responses"]]
        assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]
        assert shown == [f"answer {s} to 'Name a fruit.' at helpfulness=0.50 conciseness=0.30 readability=0.20"
                         for s in seeds]
        assert first["lambda"] == LAM and all(r["lambda"] == LAM for r in first["responses"])
        assert first["strength"] == 2.0 and first["model"]["path"] == "/models/fake.q8_0.gguf"
        assert first["settings"] == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 256,
                                     "mode": "same λ, different seeds"}
        assert second["judgement"] == "best" and [r["scores"]["user"] for r in second["responses"]] == [-2.0, -1.0]
        assert [r["text"] for r in second["responses"]] == spread
        assert second["responses"][1]["lambda"] == {"helpfulness": 0.75, "conciseness": 0.15, "readability": 0.10}
        report = validate_path(feedback)
        assert report.ok and report.n_records == 2
        assert app.model.mixes[-1] == (second["responses"][1]["lambda"], 2.0)  # generated at the strength shown
        outside = sorted({url for url in requests if not url.startswith((app.url, "data:", "blob:"))})
        assert outside == [], f"the page fetched from outside the app: {outside}"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        app.close()
