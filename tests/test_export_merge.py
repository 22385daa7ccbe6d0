"""Merging: the fp32 base + adapter folded together equals the run model, and never goes through 4-bit."""

from __future__ import annotations

import json

import pytest
import torch

from export_helpers import tiny_run
from lwdpo_edge.export.merge import load_run_model, merge_adapter, read_run, save_merged
from lwdpo_edge.export_contract import ExportContract


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, smollm2_tokenizer):
    return tiny_run("llama", tmp_path_factory, smollm2_tokenizer)


def test_merged_folder_reproduces_the_run_model(llama_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest, base_dir, arch = read_run(llama_run)
    assert arch == "llama"
    model, tokenizer = load_run_model(llama_run, base_dir)
    inputs = tokenizer(["The capital of France is", "Go to bed"], return_tensors="pt", padding=True)
    with torch.no_grad():
        adapted = model(**inputs).logits
        with model.disable_adapter():
            base = model(**inputs).logits
    assert not torch.allclose(adapted, base, atol=1e-2)  # the adapter matters, so the merge is tested

    folder = save_merged(merge_adapter(model), tokenizer, ExportContract.from_manifest(manifest), tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    assert all(p.dtype == torch.float32 for p in reloaded.parameters())
    assert not any("4bit" in type(m).__name__ for m in reloaded.modules())
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, adapted, atol=1e-5)

    # the merged tokenizer carries the lambda template: plain apply_chat_template writes the header
    merged_tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = merged_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                  add_generation_prompt=True, lwdpo_lambda={"readability": 1})
    assert prompt.startswith("<|im_start|>system\n[lambda] helpfulness=0.00 conciseness=0.00 readability=1.00 | "
                             "readability max<|im_end|>")
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
