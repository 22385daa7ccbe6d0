"""Turn ranked lists + lambdas into the tensors of one listwise step.

A step holds B lists (a prompt scored under one lambda each); list b has N_b candidates. All
sum_b N_b (prompt + candidate) sequences go through the model in one forward pass as M rows;
`candidate_index` puts each row's log-prob back at (b, i) of a (B, N_max) grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lwdpo_edge.conditioning import conditioned_messages, prompt_text, response_text
from lwdpo_edge.objective import normalize_scores


@dataclass
class ListwiseBatch:
    input_ids: torch.Tensor  # (M, T) prompt + candidate tokens, right-padded
    attention_mask: torch.Tensor  # (M, T)
    completion_mask: torch.Tensor  # (M, T) 1 on candidate tokens (the ones scored)
    candidate_index: torch.Tensor  # (M,) flat index b * N_max + i
    candidate_mask: torch.Tensor  # (B, N_max) True where list b has a candidate i
    scores: torch.Tensor  # (B, K, N_max) normalised scores, NaN where missing / padding
    lam: torch.Tensor  # (B, K)

    def to(self, device) -> "ListwiseBatch":
        return ListwiseBatch(**{k: v.to(device) for k, v in self.__dict__.items()})


def _truncate_prompt(ids: list[int], limit: int, keep_head: int = 32) -> list[int]:
    """Cut an over-long prompt in the middle: the head holds the lambda header, the tail the question."""
    if len(ids) <= limit:
        return ids
    return ids[:keep_head] + ids[len(ids) - (limit - keep_head):]


def encode_listwise(
    records: Sequence,
    lambdas: Sequence[dict[str, float]],
    tokenizer,
    objectives: Sequence[str],
    *,
    condition_on_lambda: bool = True,
    score_normalization: str = "zscore",
    max_prompt_tokens: int = 256,
    max_response_tokens: int = 160,
) -> ListwiseBatch:
    """records[b] is scored under lambdas[b]; returns the padded batch for one forward pass."""
    B, K = len(records), len(objectives)
    n_max = max(len(r.responses) for r in records)
    rows, completion_starts, candidate_index = [], [], []
    scores = torch.full((B, K, n_max), float("nan"))
    for b, (record, lam) in enumerate(zip(records, lambdas)):
        messages = conditioned_messages(record.prompt, lam if condition_on_lambda else None, objectives)
        prompt = prompt_text(tokenizer, messages)
        prompt_ids = _truncate_prompt(tokenizer(prompt, add_special_tokens=False)["input_ids"], max_prompt_tokens)
        raw = torch.full((K, n_max), float("nan"))
        for i, response in enumerate(record.responses):
            answer = response_text(tokenizer, messages, response.text, prompt)
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"][:max_response_tokens]
            rows.append(prompt_ids + answer_ids)
            completion_starts.append(len(prompt_ids))
            candidate_index.append(b * n_max + i)
            for k, name in enumerate(objectives):
                value = response.scores.get(name)
                raw[k, i] = float("nan") if value is None else float(value)
        scores[b] = normalize_scores(raw, score_normalization)
    candidate_mask = torch.zeros(B * n_max, dtype=torch.bool)
    candidate_mask[candidate_index] = True
    lam = torch.tensor([[lam[name] for name in objectives] for lam in lambdas], dtype=torch.float32)
    return ListwiseBatch(
        *_pad_rows(rows, completion_starts, tokenizer.pad_token_id),
        candidate_index=torch.tensor(candidate_index),
        candidate_mask=candidate_mask.view(B, n_max),
        scores=scores,
        lam=lam,
    )


def _pad_rows(rows: list[list[int]], completion_starts: list[int], pad_id: int):
    """Right-pad token rows.  -> input_ids, attention_mask, completion_mask, each (M, T)."""
    T = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), T), dtype=torch.long)
    for m, (row, start) in enumerate(zip(rows, completion_starts)):
        input_ids[m, : len(row)] = torch.tensor(row)
        attention_mask[m, : len(row)] = 1
        completion_mask[m, start : len(row)] = 1
    return input_ids, attention_mask, completion_mask
