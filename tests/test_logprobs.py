"""Cheaper candidate log-probs, same numbers: chunked LM head and shared-prompt packing vs the full path.

The reference for every comparison is the original path: one padded row per (prompt, candidate)
(`encode_listwise`) and full (M, T, V) logits (`sequence_logps`). Tiny random llama, fp32, LoRA B
moved off its zero init so the policy differs from the reference.
"""

from __future__ import annotations

import pytest
import torch

from lwdpo_edge import batching
from lwdpo_edge.batching import encode_listwise, encode_listwise_packed
from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.logprobs import ScoredTokens, scored_sequence_logps, sequence_logps
from lwdpo_edge.objective import lambda_dpo_loss
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


def on_grid(flat, batch):
    grid = flat.new_zeros(batch.candidate_mask.numel()).index_put((batch.candidate_index,), flat)
    return grid.view(batch.candidate_mask.shape)


def old_path_loss(model, records, tokenizer):
    """Loss (and reference log-probs) the original way: padded rows, full logits."""
    batch = encode_listwise(records, LAMBDAS[: len(records)], tokenizer, OBJECTIVES)
    args = batch.input_ids, batch.attention_mask, batch.completion_mask
    with torch.no_grad(), model.disable_adapter():
        reference = on_grid(sequence_logps(model, *args), batch)
    policy = on_grid(sequence_logps(model, *args), batch)
    loss, _ = lambda_dpo_loss(policy, reference, batch.scores, batch.lam, beta=0.5, mask=batch.candidate_mask)
    return loss, reference


def new_path_loss(model, records, tokenizer, *, shared_prompt=True, chunked=True):
    """Loss the trainer's way: distinct sequences, packed per prompt, chunked LM head."""
    batch = encode_listwise_packed(records, LAMBDAS[: len(records)], tokenizer, OBJECTIVES, shared_prompt=shared_prompt)

    def logps():
        sums = scored_sequence_logps(model, batch.rows.model_inputs(), batch.rows.scored, chunked=chunked,
                                     chunk_size=16)
        return on_grid(sums[batch.sequence_of_candidate], batch)

    with torch.no_grad(), model.disable_adapter():
        reference = logps()
    loss, _ = lambda_dpo_loss(logps(), reference, batch.scores, batch.lam, beta=0.5, mask=batch.candidate_mask)
    return loss, reference


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


# ------------------------------------------------------------------------------------------ shared prompt


@pytest.mark.parametrize("attn_implementation, checkpointing", [("sdpa", False), ("eager", False), ("sdpa", True)])
def test_shared_prompt_gives_the_same_loss_and_lora_gradients(tiny_llama_dir, lists, smollm2_tokenizer,
                                                               attn_implementation, checkpointing):
    model = lora_model(tiny_llama_dir, attn_implementation, checkpointing)
    results = {}
    for name, run in {"old": lambda: old_path_loss(model, lists, smollm2_tokenizer),
                      "packed": lambda: new_path_loss(model, lists, smollm2_tokenizer),
                      "packed-full-logits": lambda: new_path_loss(model, lists, smollm2_tokenizer, chunked=False),
                      "padded-chunked": lambda: new_path_loss(model, lists, smollm2_tokenizer,
                                                              shared_prompt=False)}.items():
        loss, reference = run()
        loss.backward()
        results[name] = (loss.detach(), reference, lora_grads(model))
    old_loss, old_reference, old_grads = results["old"]
    assert max(g.abs().max().item() for g in old_grads.values()) > 1e-3  # a real gradient to compare
    for name, (loss, reference, grads) in results.items():
        assert abs(loss.item() - old_loss.item()) <= TOLERANCE, name
        assert relative_diff(reference, old_reference) <= SUM_TOLERANCE, name  # adapter disabled
        assert max_diff(grads, old_grads) <= TOLERANCE, name


def test_a_wrong_mask_or_wrong_positions_change_the_loss(tiny_llama_dir, lists, smollm2_tokenizer, monkeypatch):
    """The parity above is not vacuous: candidates that see each other, or positions that do not
    restart after the prompt, give another loss."""
    model = lora_model(tiny_llama_dir)
    with torch.no_grad():
        right, _ = new_path_loss(model, lists, smollm2_tokenizer)

        causal_only = lambda segments: torch.ones(segments.shape[1], segments.shape[1], dtype=torch.bool).tril().expand(  # noqa: E731
            segments.shape[0], 1, -1, -1)
        with monkeypatch.context() as patch:
            patch.setattr(batching, "block_attention_mask", causal_only)
            leaky, _ = new_path_loss(model, lists, smollm2_tokenizer)

        original_pack = batching._pack_one_prompt

        def positions_run_on(prompt, members):
            row = original_pack(prompt, members)
            row["positions"] = list(range(len(row["tokens"])))
            return row

        with monkeypatch.context() as patch:
            patch.setattr(batching, "_pack_one_prompt", positions_run_on)
            shifted, _ = new_path_loss(model, lists, smollm2_tokenizer)
    assert abs(leaky.item() - right.item()) > 1e-4
    assert abs(shifted.item() - right.item()) > 1e-4


def test_packed_batch_keeps_the_candidate_bookkeeping(lists, smollm2_tokenizer):
    old = encode_listwise(lists, LAMBDAS, smollm2_tokenizer, OBJECTIVES)
    new = encode_listwise_packed(lists, LAMBDAS, smollm2_tokenizer, OBJECTIVES)
    assert new.rows.input_ids.shape[0] == len(lists)  # one row per list
    assert new.rows.attention_mask.shape == (len(lists), 1, new.rows.input_ids.shape[1], new.rows.input_ids.shape[1])
    for name in ("candidate_index", "candidate_mask", "lam"):
        assert torch.equal(getattr(new, name), getattr(old, name)), name
    assert torch.equal(new.scores.nan_to_num(-9), old.scores.nan_to_num(-9))
    assert torch.equal(new.candidate_lengths(), old.completion_mask.sum(dim=1))
    for m, s in enumerate(new.sequence_of_candidate.tolist()):  # sequence s holds row m's tokens
        prompt, answer = new.sequences[s]
        assert list(prompt) + list(answer) == old.input_ids[m][old.attention_mask[m].bool()].tolist()
    assert new.rows.input_ids.numel() < old.input_ids.numel()  # the prompt is there once per list


def test_identical_lambda_copies_are_one_sequence(lists, smollm2_tokenizer):
    """Without a header, a list repeated under two lambdas is the same tokens: computed once."""
    records = [lists[0], lists[0], lists[1]]
    batch = encode_listwise_packed(records, LAMBDAS[:3], smollm2_tokenizer, OBJECTIVES, condition_on_lambda=False)
    n0, n1 = len(lists[0].responses), len(lists[1].responses)
    assert len(batch.sequences) == n0 + n1 and batch.rows.input_ids.shape[0] == 2
    assert batch.sequence_of_candidate.tolist() == [*range(n0), *range(n0), *range(n0, n0 + n1)]
    with_header = encode_listwise_packed(records, LAMBDAS[:3], smollm2_tokenizer, OBJECTIVES)
    assert len(with_header.sequences) == 2 * n0 + n1  # the headers differ: nothing to share


def test_shared_prompt_refuses_sliding_window_models(tiny_llama_dir, lists, smollm2_tokenizer):
    model = lora_model(tiny_llama_dir)
    batch = encode_listwise_packed(lists, LAMBDAS, smollm2_tokenizer, OBJECTIVES)
    model.get_base_model().config.layer_types = ["sliding_attention", "full_attention"]
    with pytest.raises(ValueError, match="--no-shared-prompt"):
        scored_sequence_logps(model, batch.rows.model_inputs(), batch.rows.scored)


def test_rows_for_a_subset_give_those_sequences_their_values(tiny_llama_dir, lists, smollm2_tokenizer):
    """The reference cache forwards only the sequences it misses: a subset's own rows give the same sums."""
    model = lora_model(tiny_llama_dir)
    batch = encode_listwise_packed(lists, LAMBDAS, smollm2_tokenizer, OBJECTIVES)
    subset = [len(batch.sequences) - 1, 1]  # a candidate of the last list and one of the first
    with torch.no_grad():
        full = scored_sequence_logps(model, batch.rows.model_inputs(), batch.rows.scored)
        rows = batch.rows_for(subset)
        part = scored_sequence_logps(model, rows.model_inputs(), rows.scored)
    assert rows.input_ids.shape[0] == 2 < batch.rows.input_ids.shape[0]
    assert relative_diff(part, full[subset]) <= SUM_TOLERANCE
