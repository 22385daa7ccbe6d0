"""The export examples (issue 16) run as documented against tiny soup exports, each in its own process,
without importing lwdpo_edge: a soup GGUF steered by adapter scales, a merged preset GGUF, ONNX with lambda.

The tiny soup run (export_helpers) memorises ANSWERS at the helpfulness vertex and SHORT at conciseness;
each printed answer is compared as text only after the runtime shows its every token wins by >= 0.5.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agreement_helpers import confident_answer
from export_helpers import ANSWERS, SHORT, tiny_soup_run
from lwdpo_edge.export.verify import PROBE_PROMPTS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONCISE = {"conciseness": 1.0}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, smollm2_tokenizer):
    from lwdpo_edge.export.pipeline import export_run
    from lwdpo_edge.export.preset import export_presets

    run = tiny_soup_run(tmp_path_factory, smollm2_tokenizer)
    out = tmp_path_factory.mktemp("examples")
    (preset,) = export_presets(run, "gguf", "f16", [("conciseness", {"helpfulness": 0.0, "conciseness": 1.0})], out,
                               show_progress=False)
    return {"gguf": export_run(run, "gguf", quant="f16", output=out, show_progress=False).output,
            "onnx": export_run(run, "onnx", precision="fp32", output=out, show_progress=False).output,
            "preset": preset.output}


def run_example(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lwdpo_edge" not in (EXAMPLES / name).read_text().split('"""', 2)[2]  # embeds without this package
    return done.stdout


def expected(path: Path, lam=None) -> str:
    from lwdpo_edge import load_model

    with load_model(path, threads=1) as model:
        return confident_answer(model, [{"role": "user", "content": PROBE_PROMPTS[0]}], lam)


def test_llama_cpp_soup_sets_adapter_scales_from_lambda(exports):
    out = run_example("llama_cpp_soup.py", str(exports["gguf"]), PROBE_PROMPTS[0], "--lambda", "conciseness=1",
                      "--max-tokens", "24")
    assert "'conditioning': 'soup'" in out and "'strength': 1.0" in out
    assert expected(exports["gguf"], CONCISE) == SHORT[0]
    assert f"[lambda {{'conciseness': 1.0}}] {SHORT[0]}" in out
    assert expected(exports["gguf"], {"helpfulness": 1.0}) == ANSWERS[0]  # and the other vertex differs


def test_llama_cpp_preset_loads_a_merged_preset_as_a_plain_gguf(exports):
    out = run_example("llama_cpp_preset.py", str(exports["preset"]), PROBE_PROMPTS[0], "--max-tokens", "24")
    assert "conditioning: merged | lambda merged: {'helpfulness': 0.0, 'conciseness': 1.0}" in out
    assert expected(exports["preset"]) == SHORT[0] and f"[answer] {SHORT[0]}" in out


@pytest.mark.parametrize("lam, answer", [("conciseness=1", SHORT[0]), ("helpfulness=1", ANSWERS[0])])
def test_onnx_genai_feeds_the_lora_inputs_for_a_lambda(exports, lam, answer):
    out = run_example("onnx_genai.py", str(exports["onnx"]), PROBE_PROMPTS[0], "--lambda", lam, "--max-tokens", "24")
    name = lam.split("=")[0]
    assert "conditioning: soup" in out
    assert expected(exports["onnx"], {name: 1.0}) == answer and f"[lambda {{'{name}': 1.0}}] {answer}" in out
