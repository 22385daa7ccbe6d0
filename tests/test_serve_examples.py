"""The scripts in examples/ run as documented against the tiny GGUF export (each in its own process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lwdpo_edge import load_model
from lwdpo_edge.apps.serve import create_app
from lwdpo_edge.export.verify import PROBE_PROMPTS
from runtime_helpers import ANSWERS, OBJECTIVES, Server, tiny_export
from lwdpo_edge.apps.serve_schema import Limits

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def gguf(tmp_path_factory, smollm2_tokenizer):
    return tiny_export("gguf", tmp_path_factory, smollm2_tokenizer)


def run_example(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_every_example_has_a_docstring_with_its_command():
    for script in EXAMPLES.glob("*.py"):
        doc = script.read_text().split('"""')[1]
        assert f"examples/{script.name}" in doc, script


def test_llama_cpp_plain_reads_the_contract_and_steers_through_the_template(gguf):
    out = run_example("llama_cpp_plain.py", str(gguf), PROBE_PROMPTS[0], "--lambda", "conciseness=1",
                      "--max-tokens", "24")
    assert f"'lwdpo.objectives': {OBJECTIVES}" in out and "'lwdpo.lambda_default': [0.5, 0.3, 0.2]" in out
    assert f"[default lambda] {ANSWERS[0]}" in out
    assert "[lambda] helpfulness=0.00 conciseness=1.00 readability=0.00" in out  # the template wrote the header
    assert f"[lambda {{'conciseness': 1.0}}] {ANSWERS[0]}" in out


def test_python_api_streams_one_answer_per_objective(gguf):
    out = run_example("python_api.py", str(gguf), PROBE_PROMPTS[1], "--max-tokens", "24")
    assert out.count(ANSWERS[1]) == len(OBJECTIVES)
    assert all(f"{name}=1.00" in out for name in OBJECTIVES)


def test_openai_client_against_serve(gguf):
    model = load_model(gguf, threads=1)
    running = Server(create_app(model, Limits()))
    try:
        out = run_example("openai_client.py", PROBE_PROMPTS[2], "--base-url", running.url + "/v1", "--max-tokens", "24")
    finally:
        running.stop()
        model.close()
    assert f"objectives {OBJECTIVES}" in out
    for name in OBJECTIVES:
        assert f"[lambda {{'{name}': 1.0}}] {ANSWERS[2]}" in out
