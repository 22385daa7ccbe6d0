"""Every GGUF is opened through lwdpo_edge.llama_load.load_llama (or its stand-alone copy in
examples/no_repack.py), and the setting it applies is in force in the loaded model: no weight is
repacked into an extra buffer type (AMX, CPU_REPACK), whose first decode crashes AMX CPUs."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["lwdpo_edge", "train", "export", "apps", "examples", "bench", "tests", "scripts"]
HELPERS = {ROOT / "lwdpo_edge" / "llama_load.py", ROOT / "examples" / "no_repack.py"}
# Plain loads on purpose: this test's control (never decoded) and the benchmark's comparison arm
# (each arm in its own process, so a crash is reported, not fatal).
CONTROLS = {Path(__file__).resolve(), ROOT / "bench" / "llama_repack.py"}
LOADERS = {"Llama", "llama_model_load_from_file", "llama_load_model_from_file", "llama_model_load_from_splits"}
EXTRA_BUFFER = re.compile(r"^load_tensors:\s+(AMX|CPU_REPACK)\b.*model buffer", re.MULTILINE)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")


def model_loads(path: Path) -> list[str]:
    """'FILE:LINE name' of each call to (or import of) a llama.cpp model loader in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in LOADERS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}(...)")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llama_cpp"):
            found += [f"{path.relative_to(ROOT)}:{node.lineno} import {a.name}"
                      for a in node.names if a.name in LOADERS]
    return found


def test_no_code_opens_a_gguf_without_the_helper():
    sources = [p for folder in SCANNED for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(sources) > 50
    offenders = [hit for p in sources if p not in HELPERS | CONTROLS for hit in model_loads(p)]
    assert offenders == [], "open GGUFs with lwdpo_edge.llama_load.load_llama:\n" + "\n".join(offenders)


def test_the_scan_finds_a_direct_load(tmp_path):
    bad = ROOT / "tests" / "_scan_probe.py"  # inside the tree, so relative paths work; removed at once
    bad.write_text("import llama_cpp\nfrom llama_cpp import Llama\nllm = llama_cpp.Llama('x.gguf')\n")
    try:
        assert model_loads(bad) == ["tests/_scan_probe.py:2 import Llama", "tests/_scan_probe.py:3 Llama(...)"]
    finally:
        bad.unlink()


@pytest.fixture(scope="module")
def q4_0_gguf(smollm2_gguf, tmp_path_factory) -> Path:
    """The default model requantised to q4_0: a type every x86-64 llama.cpp build with AVX2 repacks
    (CPU_REPACK, or AMX where the CPU has it) unless extra buffers are off."""
    import llama_cpp

    out = tmp_path_factory.mktemp("q4_0") / "model.q4_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, True
    assert llama_cpp.llama_model_quantize(str(smollm2_gguf).encode(), str(out).encode(), params) == 0
    return out


def load_log(capsys, load) -> tuple[object, str]:
    capsys.readouterr()
    llm = load()
    return llm, capsys.readouterr().err


def stand_alone_loader():
    spec = importlib.util.spec_from_file_location("no_repack", ROOT / "examples" / "no_repack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_llama


@pytest.mark.parametrize("which", ["package", "examples"])
def test_the_helper_keeps_every_weight_in_a_plain_cpu_buffer(q4_0_gguf, capsys, which):
    import llama_cpp

    from lwdpo_edge.llama_load import load_llama

    loader = load_llama if which == "package" else stand_alone_loader()
    plain, plain_log = load_log(capsys, lambda: llama_cpp.Llama(str(q4_0_gguf), n_ctx=64, verbose=True))
    plain.close()  # loaded only: on an AMX CPU its first decode would crash
    assert EXTRA_BUFFER.search(plain_log), "control: a default load of a q4_0 file repacks on x86-64"
    llm, log = load_log(capsys, lambda: loader(q4_0_gguf, n_ctx=64, n_threads=1, verbose=True))
    try:
        assert llm.model_params.use_extra_bufts is False
        assert not EXTRA_BUFFER.search(log), EXTRA_BUFFER.search(log).group(0)
        assert "model buffer" in log  # the log was captured at all
        assert llama_cpp.llama_model_default_params().use_extra_bufts  # the swap is undone after loading
        llm.eval(llm.tokenize(b"The capital of France is"))  # decodes (crashed AMX CPUs before)
        assert len(llm.scores[llm.n_tokens - 1]) == llm.n_vocab()
    finally:
        llm.close()
