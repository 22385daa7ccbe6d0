"""Sequence log-probabilities of responses under a causal LM."""

from __future__ import annotations

import torch


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
) -> torch.Tensor:
    """Summed (or mean) log-prob of the completion tokens of each row.  (M, T) -> (M,)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    per_token = token_logps(logits, input_ids) * completion_mask[:, 1:]  # (M, T-1)
    total = per_token.sum(dim=-1)
    if length_normalize:
        total = total / completion_mask[:, 1:].sum(dim=-1).clamp_min(1)
    return total
