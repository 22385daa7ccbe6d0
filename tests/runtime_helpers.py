"""Tiny exported models for runtime, server and app tests: the export tests' tiny llama run
(SmolLM2 tokenizer, an adapter that memorises one answer per probe prompt) exported once per session
as a merged HF folder, an f16 GGUF and an fp32 ONNX folder (verification skipped: test_export_* own it),
and `Server`, a real uvicorn server in a thread on an ephemeral port.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from export_helpers import ANSWERS, LAMBDA_DEFAULT, OBJECTIVES, tiny_run  # noqa: F401  (re-exported)

_EXPORTS: dict[str, Path] = {}
OPTIONS = {"hf": {}, "gguf": {"quant": "f16"}, "onnx": {"precision": "fp32"}}


def tiny_export(fmt: str, tmp_path_factory, smollm2_tokenizer) -> Path:
    """The session's tiny export in `fmt` (hf | gguf | onnx); treat it as read-only."""
    if fmt not in _EXPORTS:
        from lwdpo_edge.export.pipeline import export_run

        run = tiny_run("llama", tmp_path_factory, smollm2_tokenizer)
        out = tmp_path_factory.mktemp(f"tiny-{fmt}")
        _EXPORTS[fmt] = export_run(run, fmt, output=out, verify=False, show_progress=False, **OPTIONS[fmt]).output
    return _EXPORTS[fmt]


class Server:
    """uvicorn serving `app` on 127.0.0.1 in a daemon thread, until stop()."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
