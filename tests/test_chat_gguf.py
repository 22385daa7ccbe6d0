"""The chat app on a real model: the tiny trained llama run exported to GGUF, served by llama.cpp (1 thread).

The tiny run memorised one answer per probe prompt under the probe lambdas (the default and the
helpfulness vertex), so a greedy answer in the app shows that the slider lambda reached llama.cpp intact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chat_fake import Served, text_of
from lwdpo_edge.export.verify import PROBE_PROMPTS
from lwdpo_edge.lambdas import format_lambda_header, parse_lambda_header
from runtime_helpers import ANSWERS, LAMBDA_DEFAULT, OBJECTIVES, tiny_export

GREEDY = (0.0, 1.0, 16)  # temperature, top-p, max tokens


def exported(served) -> dict:
    """This session's conversation as the Export button gives it."""
    return json.loads(Path(served.client.predict(api_name="/export")["value"]).read_text())


@pytest.fixture(scope="module")
def served(tmp_path_factory, smollm2_tokenizer):
    from lwdpo_edge.runtime import load_model

    model = load_model(tiny_export("gguf", tmp_path_factory, smollm2_tokenizer), threads=1, n_ctx=512)
    app = Served(model, tmp_path_factory.mktemp("chats"))
    yield app
    app.close()
    model.close()


@pytest.mark.parametrize("weights", [(1.0, 0.0, 0.0), tuple(LAMBDA_DEFAULT.values())])
def test_slider_lambda_reaches_llama_cpp_and_the_memorised_answer_streams_back(served, weights):
    lam = dict(zip(OBJECTIVES, weights))
    _, shown = served.client.predict("", *weights, api_name="/preview")
    assert shown == format_lambda_header(lam, OBJECTIVES)
    served.client.predict(api_name="/new_chat")
    chatbot, _ = served.ask(PROBE_PROMPTS[0], weights, sampling=GREEDY)
    assert text_of(chatbot[-1]) == ANSWERS[0]
    saved = exported(served)
    assert (saved["messages"][-1]["system"] == shown
            and parse_lambda_header(shown, OBJECTIVES) == served.model.validate_lambda(lam))


def test_app_answer_equals_the_runtime_answer_under_the_same_lambda(served):
    weights = (0.1, 0.7, 0.2)  # not a probe lambda: whatever the model says, the app must say the same
    served.client.predict(api_name="/new_chat")
    chatbot, _ = served.ask(PROBE_PROMPTS[1], weights, sampling=GREEDY)
    direct = served.model.chat([{"role": "user", "content": PROBE_PROMPTS[1]}], dict(zip(OBJECTIVES, weights)),
                               temperature=0.0, max_tokens=16)
    assert text_of(chatbot[-1]) == direct


def test_model_info_of_the_real_file_is_saved_with_the_chat(served):
    served.client.predict(api_name="/new_chat")
    served.ask(PROBE_PROMPTS[2], (0, 0, 1), sampling=GREEDY)
    saved = exported(served)
    info = saved["model"]
    assert info == served.model.info and info["format"] == "gguf" and info["quantization"] == "f16"
    assert info["objectives"] == OBJECTIVES and info["path"].endswith(".gguf")


def test_cli_without_model_serves_the_newest_demo_export(tmp_path, tmp_path_factory, smollm2_tokenizer):
    """`lwdpo-edge chat --no-browser` as a user runs it, in a folder holding runs/demo/export/*.gguf."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from gradio_client import Client

    export = tmp_path / "runs" / "demo" / "export"
    export.mkdir(parents=True)
    (export / "demo.f16.gguf").symlink_to(tiny_export("gguf", tmp_path_factory, smollm2_tokenizer))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "lwdpo_edge.cli", "chat", "--no-browser", "--port", str(port), "--threads", "1",
           "--history-dir", str(tmp_path / "chats")]
    process = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "BROWSER": "false"})  # should --no-browser fail, open nothing
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    page = response.read().decode()
                    break
            except OSError:
                assert time.monotonic() < deadline, "no HTTP 200 within 60 s"
                time.sleep(0.1)
        assert "lwdpo-edge chat" in page  # the app config embedded in the page
        client = Client(url, verbose=False)
        chatbot, _ = client.predict(PROBE_PROMPTS[0], "", *GREEDY, 1, 0, 0, api_name="/respond")
        client.close()
        assert text_of(chatbot[-1]) == ANSWERS[0]
        (saved,) = [json.loads(p.read_text()) for p in (tmp_path / "chats").glob("*.json")]
        assert saved["model"]["path"] == str(Path("runs/demo/export/demo.f16.gguf"))
    finally:
        process.terminate()
        process.wait(timeout=30)
