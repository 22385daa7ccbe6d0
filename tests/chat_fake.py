"""A recording stand-in for lwdpo_edge.load_model(...) with the same interface, and `Served`: the chat app
launched on a free port with a gradio_client attached.

It builds prompts with the real conditioning code and answers with the header it received, word by
word, so a test can see exactly what the model was asked; `closed` counts streams that were closed
before they ran out (the app's Stop button).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

from lwdpo_edge.conditioning import conditioned_messages
from lwdpo_edge.lambdas import quantize_lambda

OBJECTIVES = ["helpfulness", "conciseness", "readability"]
DEFAULT = {"helpfulness": 0.5, "conciseness": 0.3, "readability": 0.2}
SAMPLING = (0.0, 1.0, 64)  # temperature, top-p, max tokens


class FakeModel:
    def __init__(self, objectives=OBJECTIVES, default_lambda=DEFAULT, answer_words=None, delay=0.0):
        self.objectives = list(objectives)
        self.default_lambda = dict(default_lambda) if default_lambda else None
        self.info = {"path": "/models/fake.q8_0.gguf", "format": "gguf", "quantization": "q8_0",
                     "objectives": self.objectives, "default_lambda": self.default_lambda,
                     "architecture": "llama", "contract_version": 1 if self.objectives else None}
        self.answer_words = answer_words  # None: answer with the received system message
        self.delay = delay  # seconds between streamed pieces
        self.received: list[list[dict]] = []  # prompt_messages of every chat() call
        self.settings: list[dict] = []
        self.closed = 0
        self.finished = threading.Event()  # set when a stream ends, run out or closed

    @property
    def conditioning(self) -> str:  # as the runtime's: a header model, or a plain one without objectives
        return "header" if self.objectives else "none"

    def validate_lambda(self, lam):
        return quantize_lambda(lam, self.objectives)

    def prompt_messages(self, messages, lam=None):
        if not self.objectives:
            return conditioned_messages(messages, None, [])
        return conditioned_messages(messages, self.validate_lambda(lam or self.default_lambda), self.objectives)

    def chat(self, messages, lam=None, *, stream=False, temperature=0.0, top_p=1.0, max_tokens=256, seed=None):
        if any("CONTEXT FULL" in m["content"] for m in messages):  # as the runtime's ContextLengthError
            raise ValueError("prompt is 9999 tokens; the context window is 2048")
        received = self.prompt_messages(messages, lam)
        self.received.append(received)
        self.settings.append({"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens})
        system = received[0]["content"] if received[0]["role"] == "system" else "(none)"
        words = self.answer_words if self.answer_words is not None else f"I was asked under: {system}".split(" ")
        words = words[:max_tokens]
        return self._stream(words) if stream else " ".join(words)

    def _stream(self, words):
        ran_out = False
        try:
            for i, word in enumerate(words):
                time.sleep(self.delay)
                yield word if i == 0 else " " + word
            ran_out = True
        finally:
            if not ran_out:
                self.closed += 1
            self.finished.set()


class FakeSoupModel(FakeModel):
    """An adapter-soup model: no header; chat() records the lambda and the steering strength it got."""

    conditioning = "soup"

    def __init__(self, strength: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.info = {**self.info, "conditioning": "soup", "soup_strength": strength}
        self.mixes: list[tuple[dict, float | None]] = []

    def prompt_messages(self, messages, lam=None):
        return list(messages)

    def chat(self, messages, lam=None, *, stream=False, strength=None, **settings):
        self.mixes.append((self.validate_lambda(lam or self.default_lambda), strength))
        return super().chat(messages, lam, stream=stream, **settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A launched app, its model, its history folder and a client."""

    def __init__(self, model, history_dir: Path):
        self.model, self.history_dir = model, history_dir
        from gradio_client import Client

        from lwdpo_edge.apps.chat import build_app, launch_app
        from lwdpo_edge.apps.chat_config import ChatConfig

        self.demo = build_app(model, history_dir)  # launched as `lwdpo-edge chat` launches it (theme, queue)
        _, self.url, _ = launch_app(self.demo, ChatConfig(port=free_port(), open_browser=False), block=False)
        self.client = Client(self.url, verbose=False)

    def ask(self, text: str, weights=(0.5, 0.3, 0.2), system: str = "", sampling=SAMPLING):
        return self.client.predict(text, system, *sampling, *weights, api_name="/respond")

    def saved(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.history_dir.glob("*.json"))]

    def close(self):
        self.client.close()
        self.demo.close()


def text_of(message: dict) -> str:
    """A chatbot message's text (gradio 6 sends content as a list of typed parts)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content if part["type"] == "text")
