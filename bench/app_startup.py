"""Chat app start-up time: process start -> HTTP 200 on the page -> first streamed token -> full answer.

    .venv/bin/python bench/app_startup.py runs/demo/export/demo.q8_0.gguf --repeats 3
    .venv/bin/python bench/app_startup.py MODEL --screenshot docs/app.png   # also a headless-Chromium screenshot

Each repeat starts `lwdpo-edge chat MODEL --no-browser` as a fresh process (cold Python imports, model
load, Gradio launch), waits for GET / to answer 200, then asks one greedy question through
gradio_client (what the page does) and times the first streamed piece and the complete answer.
The clock starts just before the process is spawned. Prints one line per repeat and the medians.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited with status {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"no HTTP 200 from {url} within {timeout:.0f} s")


def start_app(model: str | None, threads: int, history_dir: str) -> tuple[subprocess.Popen, str, float]:
    """(process, url, t0): the chat command as a user runs it, with the browser left closed."""
    port = free_port()
    cmd = [sys.executable, "-m", "lwdpo_edge.cli", "chat", *([model] if model else []), "--no-browser",
           "--port", str(port), "--threads", str(threads), "--history-dir", history_dir]
    t0 = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, f"http://127.0.0.1:{port}/", t0


def first_answer(url: str, prompt: str, max_tokens: int, weights: list[float]) -> tuple[float, float, str]:
    """(time of the first streamed piece, time of the full answer, the answer) for one greedy question."""
    from gradio_client import Client

    def answer_of(chatbot) -> str:
        parts = chatbot[-1]["content"] if chatbot and chatbot[-1]["role"] == "assistant" else []
        return parts if isinstance(parts, str) else "".join(p.get("text", "") for p in parts)

    client = Client(url, verbose=False)
    job = client.submit(prompt, "", 0.0, 1.0, max_tokens, *weights, api_name="/respond")
    first = None
    while not job.done():
        if first is None and any(answer_of(out[0]) for out in job.outputs()):
            first = time.perf_counter()
        time.sleep(0.01)
    chatbot, _ = job.result()
    done = time.perf_counter()
    client.close()
    return first or done, done, answer_of(chatbot)


def screenshot(url: str, prompt: str, weights: list[float], path: Path) -> None:
    """The page after one answer, sliders moved to `weights`, as headless Chromium renders it."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000})
        page = browser.new_page()
        page.goto(url)
        sliders = page.locator("[id^='lambda-']")  # one per objective, in objective order
        sliders.first.locator("input[type=number]").wait_for()
        for i, value in zip(range(sliders.count()), weights):
            box = sliders.nth(i).locator("input[type=number]")
            box.fill(f"{value:g}")
            box.press("Enter")
        for elem_id, value in (("temperature", "0"), ("max-tokens", "96")):  # a short, reproducible answer
            page.locator(f"#{elem_id} input[type=number]").fill(value)
            page.locator(f"#{elem_id} input[type=number]").press("Enter")
        page.locator("#message textarea").fill(prompt)
        page.locator("#message textarea").press("Enter")
        page.get_by_text("Model", exact=True).click()  # open the model info accordion too
        previous, stable_since = None, time.monotonic()
        while time.monotonic() - stable_since < 2.0:  # the answer has stopped growing for 2 s
            text = page.locator("#chatbot").inner_text()
            if text != previous:
                previous, stable_since = text, time.monotonic()
            time.sleep(0.1)
        page.screenshot(path=str(path), full_page=True)
        browser.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?",
                        help="A .gguf file, ONNX export folder or HF folder with the lwdpo contract. "
                        "Default: none given, so the app takes the newest runs/demo/export/*.gguf "
                        "(run from the repo root).")
    parser.add_argument("--repeats", type=int, default=3, help="Fresh app processes to time.")
    parser.add_argument("--threads", type=int, default=1, help="Generation threads (1 is fastest on a busy machine).")
    parser.add_argument("--prompt", default="How do I keep houseplants alive?",
                        help="The question asked once per repeat.")
    parser.add_argument("--max-tokens", type=int, default=64, help="Longest answer in tokens (greedy).")
    parser.add_argument("--weights", default="0.2,0.6,0.2", help="Slider weights, comma-separated, in objective order.")
    parser.add_argument("--timeout", type=float, default=180, help="Seconds to wait for the page.")
    parser.add_argument("--screenshot", type=Path, help="Also save a full-page screenshot of the app (PNG) here.")
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]

    rows = []
    with tempfile.TemporaryDirectory() as history:
        for i in range(args.repeats + (1 if args.screenshot else 0)):
            process, url, t0 = start_app(args.model, args.threads, history)
            try:
                wait_for_page(url, process, args.timeout)
                page = time.perf_counter() - t0
                if i == args.repeats:  # the extra run: only the screenshot
                    screenshot(url, args.prompt, weights, args.screenshot)
                    print(f"screenshot: {args.screenshot} ({args.screenshot.stat().st_size // 1024} KiB)")
                    break
                first, done, answer = first_answer(url, args.prompt, args.max_tokens, weights)
                rows.append((page, first - t0, done - t0))
                print(f"run {i + 1}: HTTP 200 {page:.2f} s | first token {first - t0:.2f} s | "
                      f"full answer {done - t0:.2f} s ({len(answer.split())} words)", flush=True)
            finally:
                process.terminate()
                process.wait(timeout=30)
    if rows:
        medians = [statistics.median(column) for column in zip(*rows)]
        print(f"median of {len(rows)}: HTTP 200 {medians[0]:.2f} s | first token {medians[1]:.2f} s | "
              f"full answer {medians[2]:.2f} s")


if __name__ == "__main__":
    main()
