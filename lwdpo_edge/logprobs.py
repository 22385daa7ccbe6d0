"""Sequence log-probabilities of responses under a causal LM.

Two ways to get log p(token | prefix) for the scored (response) tokens:

- full logits (`sequence_logps`, the original path): `model(...).logits` is an (M, T, V) tensor,
  then gather minus logsumexp. With V = 49k that tensor, and its gradient, dominate memory.
- chunked (`scored_sequence_logps(..., chunked=True)`): the decoder's final hidden states are
  gathered at the P positions that predict a scored token, a (P, H) tensor, and the LM head runs
  over chunks of `chunk_size` of them. Each chunk runs under activation checkpointing, so its
  (chunk, V) logits are freed after the forward and recomputed in the backward: at most one chunk
  of logits exists at a time, and prompt positions never reach the LM head at all. The recompute
  runs the same ops on the same inputs, so forward and backward are exact.

Why by hand: TRL's `selective_log_softmax` takes full (M, T, V) logits; Liger-kernel's fused linear
cross-entropy and cut-cross-entropy are Triton / CUDA kernels with no CPU path (neither is
installed here). The chunk function below is a few lines of plain torch that runs anywhere.

`ScoredTokens` says which tokens are scored, from which hidden state, and for which sequence; it
lets one row hold several sequences (a shared prompt followed by N candidates, lwdpo_edge/batching.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK_TOKENS = 256  # (256, 49152) fp32 logits = 50 MB per chunk


def token_logps(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t = 1..T-1.  logits (M, T, V), input_ids (M, T) -> (M, T-1).

    gather minus logsumexp avoids materialising a second (M, T, V) log-softmax tensor.
    """
    logits = logits[:, :-1, :].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    return logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def sequence_logps(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    length_normalize: bool = False,
    chunked: bool = False,
) -> torch.Tensor:
    """Summed (or mean) log-prob of the completion tokens of each row.  (M, T) -> (M,).

    chunked=False is the full-logits path; chunked=True computes the same values (and gradients)
    from the hidden states of the completion positions only.
    """
    if chunked:
        scored = ScoredTokens.from_completion_mask(input_ids, completion_mask)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        total = scored_sequence_logps(model, inputs, scored, chunked=True)
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        per_token = token_logps(logits, input_ids) * completion_mask[:, 1:]  # (M, T-1)
        total = per_token.sum(dim=-1)
    if length_normalize:
        total = total / completion_mask[:, 1:].sum(dim=-1).clamp_min(1)
    return total


@dataclass
class ScoredTokens:
    """The P scored tokens of a batch of rows (R, T): which hidden state predicts each, and whose it is."""

    source: torch.Tensor  # (P,) flat index row * T + t of the hidden state that predicts the token
    target: torch.Tensor  # (P,) the token id to score
    sequence: torch.Tensor  # (P,) which of the S sequences the token belongs to
    n_sequences: int  # S

    @classmethod
    def from_completion_mask(cls, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> "ScoredTokens":
        """One sequence per row; token t (completion_mask 1) is predicted by position t - 1 of its row."""
        M, T = input_ids.shape
        rows, positions = completion_mask[:, 1:].nonzero(as_tuple=True)  # (P,) each; positions = t - 1
        return cls(source=rows * T + positions, target=input_ids[rows, positions + 1], sequence=rows, n_sequences=M)

    def to(self, device) -> "ScoredTokens":
        return ScoredTokens(self.source.to(device), self.target.to(device), self.sequence.to(device), self.n_sequences)


def scored_sequence_logps(model, inputs: dict, scored: ScoredTokens, *, chunked: bool = True,
                          chunk_size: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """Summed log-prob of each sequence's scored tokens.  inputs: model kwargs over (R, T) rows -> (S,).

    chunked: hidden states at the scored positions, LM head in checkpointed chunks (no (R, T, V)
    tensor); otherwise the full (R, T, V) logits, gathered at the scored positions.
    """
    inputs = {**inputs, "attention_mask": attention_mask_for(causal_lm(model), inputs["attention_mask"])}
    if chunked:
        hidden = final_hidden_states(model, **inputs)  # (R, T, H)
        picked = hidden.flatten(0, 1)[scored.source]  # (P, H)
        per_token = lm_head_token_logps(causal_lm(model), picked, scored.target, chunk_size)  # (P,)
    else:
        logits = model(**inputs, use_cache=False).logits  # (R, T, V)
        picked = logits.flatten(0, 1)[scored.source].float()  # (P, V)
        per_token = picked.gather(-1, scored.target[:, None]).squeeze(-1) - torch.logsumexp(picked, dim=-1)
    totals = per_token.new_zeros(scored.n_sequences)
    return totals.index_add(0, scored.sequence, per_token)  # (S,)


def causal_lm(model):
    """The Hugging Face causal LM inside a DDP wrapper and / or a peft model (LoRA layers live in it)."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def attention_mask_for(lm, mask: torch.Tensor) -> torch.Tensor:
    """A (R, 1, T, T) bool block mask in the form `lm`'s attention reads it (a 2D padding mask as is).

    transformers passes a 4D mask to the attention function untouched: sdpa takes bool (True =
    attend), eager adds the mask to the scores, so it needs 0 / -inf-like floats. Other kernels
    (flash-attention) take no dense mask, and sliding-window layers would need the window in it.
    """
    if mask.ndim != 4:
        return mask
    config = lm.config.get_text_config()
    if "sliding_attention" in (getattr(config, "layer_types", None) or []):
        raise ValueError("a shared-prompt block mask does not encode sliding-window attention: use --no-shared-prompt")
    implementation = config._attn_implementation
    if implementation == "sdpa":
        return mask
    if implementation == "eager":
        dtype = lm.get_input_embeddings().weight.dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    raise ValueError(f"a shared-prompt block mask needs sdpa or eager attention, not {implementation}: "
                     "use --no-shared-prompt")


def final_hidden_states(model, **inputs) -> torch.Tensor:
    """The decoder's last hidden states (R, T, H), after its final norm; the LM head is skipped.

    The call goes through `model` itself, so a DDP wrapper prepares its gradient sync and peft's
    LoRA layers (and `disable_adapter()`) apply. It asks for the logits of no position
    (`logits_to_keep`, an empty index) and a forward hook on the decoder keeps its output.
    """
    decoder = causal_lm(model).get_decoder()
    captured = []
    hook = decoder.register_forward_hook(lambda module, args, output: captured.append(output[0]))
    try:
        device = inputs["input_ids"].device
        model(**inputs, logits_to_keep=torch.zeros(0, dtype=torch.long, device=device), use_cache=False)
    finally:
        hook.remove()
    return captured[-1]


def lm_head_token_logps(lm, hidden: torch.Tensor, target: torch.Tensor,
                        chunk_size: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """log p(target | hidden) through `lm`'s output head, chunk_size rows at a time.  (P, H), (P,) -> (P,)."""
    head = lm.get_output_embeddings()
    softcap = getattr(lm.config.get_text_config(), "final_logit_softcapping", None)  # Gemma 2/3
    needs_grad = torch.is_grad_enabled() and hidden.requires_grad
    pieces = []
    for start in range(0, target.shape[0], chunk_size):
        h, y = hidden[start:start + chunk_size], target[start:start + chunk_size]
        if needs_grad:  # logits of this chunk are recomputed in backward instead of stored
            pieces.append(checkpoint(_chunk_token_logps, head, h, y, softcap, use_reentrant=False))
        else:
            pieces.append(_chunk_token_logps(head, h, y, softcap))
    return torch.cat(pieces) if pieces else hidden.new_zeros(0)


def _chunk_token_logps(head, hidden: torch.Tensor, target: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """One chunk: logits (C, V) -> log-softmax at the target.  (C, H), (C,) -> (C,)."""
    logits = head(hidden).float()  # (C, V)
    if softcap is not None:  # as the model's own forward does after its LM head
        logits = torch.tanh(logits / softcap) * softcap
    return logits.gather(-1, target[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
