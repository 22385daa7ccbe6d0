"""Cheaper candidate log-probs, same numbers: the chunked LM head vs the full-logits path.

The reference for every comparison is the original path: one padded row per (prompt, candidate)
(`encode_listwise`) and full (M, T, V) logits (`sequence_logps`). Tiny random llama, fp32, LoRA B
moved off its zero init so the policy differs from the reference.
"""

from __future__ import annotations

import pytest
import torch

from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.logprobs import ScoredTokens, scored_sequence_logps, sequence_logps
from lwdpo_edge.train.batching import encode_listwise
from train_helpers import OBJECTIVES, write_dataset

TOLERANCE = 1e-5  # max abs difference allowed in the loss and the LoRA gradients, fp32
SUM_TOLERANCE = 1e-6  # relative, for summed sequence log-probs (~-200: 1 fp32 ulp is 1.5e-5, i.e. 8e-8 relative)
LAMBDAS = [{"helpfulness": 1.0, "conciseness": 0.0}, {"helpfulness": 0.5, "conciseness": 0.5},
           {"helpfulness": 0.2, "conciseness": 0.8}, {"helpfulness": 0.0, "conciseness": 1.0}]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def lists(tmp_path):
    """Four lists of 2-4 candidates (ragged: padding in both layouts)."""
    records = load_records(write_dataset(tmp_path / "lists.jsonl", n_prompts=4, seed=3))
    assert len({len(r.responses) for r in records}) > 1
    return records


def lora_model(model_dir, attn_implementation="sdpa", checkpointing=False):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn_implementation)
    if checkpointing:  # as load_policy does: transformers' own (non-reentrant) activation checkpointing
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    model.train()
    return model


def lora_grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max((a[n] - b[n]).abs().max().item() for n in a)


def relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs() / b.abs().clamp_min(1.0)).max().item()


# ------------------------------------------------------------------------------------------ chunked LM head


def test_chunked_logps_equal_full_logits_in_value_and_gradient(tiny_llama_dir, lists, smollm2_tokenizer):
    model = lora_model(tiny_llama_dir)
    batch = encode_listwise(lists, LAMBDAS, smollm2_tokenizer, OBJECTIVES)
    args = batch.input_ids, batch.attention_mask, batch.completion_mask
    full = sequence_logps(model, *args)
    full.sum().backward()
    full_grads = lora_grads(model)
    chunked = sequence_logps(model, *args, chunked=True)
    chunked.sum().backward()
    assert relative_diff(chunked, full) <= SUM_TOLERANCE
    assert max_diff(full_grads, lora_grads(model)) <= TOLERANCE
    with torch.no_grad(), model.disable_adapter():  # the reference pass: same numbers too
        reference = sequence_logps(model, *args), sequence_logps(model, *args, chunked=True)
    assert relative_diff(reference[1], reference[0]) <= SUM_TOLERANCE
    assert (reference[0] - full).abs().max().item() > 1e-3  # the adapter really was off


def test_lm_head_sees_only_candidate_positions_a_chunk_at_a_time(tiny_llama_dir, lists, smollm2_tokenizer):
    model = lora_model(tiny_llama_dir)
    batch = encode_listwise(lists, LAMBDAS, smollm2_tokenizer, OBJECTIVES)
    scored = ScoredTokens.from_completion_mask(batch.input_ids, batch.completion_mask)
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    rows_seen = []
    head = model.get_base_model().get_output_embeddings()
    hook = head.register_forward_hook(lambda module, args, output: rows_seen.append(output.shape[:-1].numel()))
    try:
        scored_sequence_logps(model, inputs, scored, chunk_size=16).sum().backward()
    finally:
        hook.remove()
    forward_rows = rows_seen[: len(rows_seen) // 2 + 1]  # then the backward's recomputes, chunk by chunk
    assert forward_rows[0] == 0  # the model's own LM head call: no position
    assert max(rows_seen) <= 16  # never more than one chunk of logits, forward or backward
    n_candidate_tokens = int((batch.completion_mask[:, 1:]).sum())
    assert sum(forward_rows[1:]) == n_candidate_tokens < batch.attention_mask.sum()  # prompt positions: never
