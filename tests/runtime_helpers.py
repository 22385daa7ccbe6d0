"""Tiny exported models for runtime, server and app tests: the export tests' tiny llama run
(SmolLM2 tokenizer, an adapter that memorises one answer per probe prompt) exported once per session
as a merged HF folder, an f16 GGUF and an fp32 ONNX folder (verification skipped: test_export_* own it).
"""

from __future__ import annotations

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
