"""Turn ranked lists + lambdas into the tensors of one listwise step.

A step holds B lists (a prompt scored under one lambda each); list b has N_b candidates, M = sum_b N_b
in all. `candidate_index` puts candidate m's log-prob back at (b, i) of a (B, N_max) grid. Two encoders:

- `encode_listwise`: M rows, one per (prompt + candidate) sequence, right-padded. The prompt is
  encoded N_b times. Used by the SFT warm-up and by evaluation.
- `encode_listwise_packed` (the trainer's default): each distinct (prompt, candidate) token sequence
  once (lambda copies of a list without a header are the same tokens), laid out as one packed row
  per prompt, [prompt, cand_1, ..., cand_N], with a block attention mask in which candidate i sees
  the prompt and itself (causally) but no other candidate, and position ids that restart at
  len(prompt) for every candidate (prefix sharing, arXiv 2410.20305). Each candidate then gets
  exactly the log-probs it would get alone after the prompt, for prompt + N x response tokens of
  work instead of N x (prompt + response). shared_prompt=False keeps one padded row per sequence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lwdpo_edge.conditioning import conditioned_messages, prompt_text, response_text
from lwdpo_edge.logprobs import ScoredTokens, scored_sequence_logps
from lwdpo_edge.objective import normalize_scores

TokenSequence = tuple[tuple[int, ...], tuple[int, ...]]  # (prompt ids, candidate ids)


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


@dataclass
class TokenizedLists:
    """The token ids of B lists before any layout, with their scores and lambdas."""

    prompts: list[list[int]]  # [b] prompt ids of list b (header included)
    answers: list[list[list[int]]]  # [b][i] candidate i of list b, end-of-turn included
    scores: torch.Tensor  # (B, K, N_max) normalised, NaN where missing / padding
    lam: torch.Tensor  # (B, K)

    @property
    def n_max(self) -> int:
        return self.scores.shape[-1]


def _truncate_prompt(ids: list[int], limit: int, keep_head: int = 32) -> list[int]:
    """Cut an over-long prompt in the middle: the head holds the lambda header, the tail the question."""
    if len(ids) <= limit:
        return ids
    return ids[:keep_head] + ids[len(ids) - (limit - keep_head):]


def tokenize_lists(
    records,
    lambdas: Sequence[dict[str, float]],
    tokenizer,
    objectives: Sequence[str],
    *,
    condition_on_lambda: bool = True,
    score_normalization: str = "zscore",
    max_prompt_tokens: int = 256,
    max_response_tokens: int = 160,
) -> TokenizedLists:
    """records[b] under lambdas[b]: prompt ids (with the header), candidate ids, scores, lambdas."""
    K, n_max = len(objectives), max(len(r.responses) for r in records)
    prompts, answers = [], []
    scores = torch.full((len(records), K, n_max), float("nan"))
    for b, (record, lam) in enumerate(zip(records, lambdas)):
        messages = conditioned_messages(record.prompt, lam if condition_on_lambda else None, objectives)
        prompt = prompt_text(tokenizer, messages)
        prompts.append(_truncate_prompt(tokenizer(prompt, add_special_tokens=False)["input_ids"], max_prompt_tokens))
        answers.append([tokenizer(response_text(tokenizer, messages, response.text, prompt),
                                  add_special_tokens=False)["input_ids"][:max_response_tokens]
                        for response in record.responses])
        raw = torch.full((K, n_max), float("nan"))
        for i, response in enumerate(record.responses):
            for k, name in enumerate(objectives):
                value = response.scores.get(name)
                raw[k, i] = float("nan") if value is None else float(value)
        scores[b] = normalize_scores(raw, score_normalization)
    lam = torch.tensor([[lam[name] for name in objectives] for lam in lambdas], dtype=torch.float32)
    return TokenizedLists(prompts, answers, scores, lam)


def _candidate_grid(tokens: TokenizedLists) -> tuple[torch.Tensor, torch.Tensor]:
    """candidate_index (M,) = b * N_max + i in list order, and candidate_mask (B, N_max)."""
    index = [b * tokens.n_max + i for b, answers in enumerate(tokens.answers) for i in range(len(answers))]
    mask = torch.zeros(len(tokens.answers) * tokens.n_max, dtype=torch.bool)
    mask[index] = True
    return torch.tensor(index), mask.view(len(tokens.answers), tokens.n_max)


def encode_listwise(records, lambdas: Sequence[dict[str, float]], tokenizer, objectives: Sequence[str],
                    **settings) -> ListwiseBatch:
    """records[b] is scored under lambdas[b]; returns the padded batch for one forward pass
    (one row per candidate). settings: those of `tokenize_lists`."""
    tokens = tokenize_lists(records, lambdas, tokenizer, objectives, **settings)
    rows = [prompt + answer for prompt, answers in zip(tokens.prompts, tokens.answers) for answer in answers]
    starts = [len(prompt) for prompt, answers in zip(tokens.prompts, tokens.answers) for _ in answers]
    candidate_index, candidate_mask = _candidate_grid(tokens)
    return ListwiseBatch(
        *_pad_rows(rows, starts, tokenizer.pad_token_id),
        candidate_index=candidate_index, candidate_mask=candidate_mask, scores=tokens.scores, lam=tokens.lam,
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


# ----------------------------------------------------------------------------------------------------
# Distinct sequences, packed (shared prompt) or padded


@dataclass
class SequenceRows:
    """Model inputs that hold S distinct (prompt, candidate) sequences, and where their scored tokens are."""

    input_ids: torch.Tensor  # (R, T)
    attention_mask: torch.Tensor  # (R, T) padding mask, or (R, 1, T, T) bool block mask (True = may attend)
    position_ids: torch.Tensor  # (R, T)
    scored: ScoredTokens  # the P candidate tokens: predicting position, token id, sequence s
    lengths: torch.Tensor  # (S,) candidate tokens of each sequence

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}

    def to(self, device) -> "SequenceRows":
        return SequenceRows(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                            self.scored.to(device), self.lengths.to(device))


def padded_rows(sequences: Sequence[TokenSequence], pad_id: int) -> SequenceRows:
    """One row per sequence, prompt + candidate, right-padded: encode_listwise's layout."""
    rows = [list(prompt) + list(answer) for prompt, answer in sequences]
    input_ids, attention_mask, completion_mask = _pad_rows(rows, [len(prompt) for prompt, _ in sequences], pad_id)
    R, T = input_ids.shape
    return SequenceRows(
        input_ids, attention_mask, position_ids=torch.arange(T).expand(R, T).clone(),
        scored=ScoredTokens.from_completion_mask(input_ids, completion_mask), lengths=completion_mask.sum(dim=1),
    )


def packed_rows(sequences: Sequence[TokenSequence], pad_id: int) -> SequenceRows:
    """One row per distinct prompt: [prompt, cand_1, ..., cand_n], right-padded, with a block mask.

    Candidate j's positions restart at len(prompt), and its first token is predicted by the
    prompt's last position (not by the previous candidate's last token).
    """
    groups: dict[tuple[int, ...], list[int]] = {}  # prompt -> its sequences, in first-seen order
    for s, (prompt, _) in enumerate(sequences):
        groups.setdefault(prompt, []).append(s)
    packed = [_pack_one_prompt(prompt, [(s, sequences[s][1]) for s in members]) for prompt, members in groups.items()]
    R, T = len(packed), max(len(row["tokens"]) for row in packed)
    input_ids = torch.full((R, T), pad_id, dtype=torch.long)
    segments = torch.full((R, T), -1, dtype=torch.long)  # 0 prompt, j candidate j, -1 padding
    position_ids = torch.zeros((R, T), dtype=torch.long)
    source, target, owner = [], [], []
    for r, row in enumerate(packed):
        n = len(row["tokens"])
        input_ids[r, :n] = torch.tensor(row["tokens"])
        segments[r, :n] = torch.tensor(row["segments"])
        position_ids[r, :n] = torch.tensor(row["positions"])
        source += [r * T + t for t in row["source"]]
        target += row["target"]
        owner += row["owner"]
    scored = ScoredTokens(torch.tensor(source), torch.tensor(target), torch.tensor(owner), n_sequences=len(sequences))
    lengths = torch.tensor([len(answer) for _, answer in sequences])
    return SequenceRows(input_ids, block_attention_mask(segments), position_ids, scored, lengths)


def _pack_one_prompt(prompt: tuple[int, ...], members: list[tuple[int, tuple[int, ...]]]) -> dict[str, list[int]]:
    """The packed row of one prompt and its candidates (sequence s, candidate ids): tokens,
    segment and position per token, and for each scored token its predicting position, id and s."""
    row = {"tokens": list(prompt), "segments": [0] * len(prompt), "positions": list(range(len(prompt))),
           "source": [], "target": [], "owner": []}
    for j, (s, answer) in enumerate(members, start=1):
        if not answer:
            continue
        start = len(row["tokens"])
        # Token 0 of the candidate is predicted by the prompt's last position, token t > 0 by the one before it.
        row["source"] += [len(prompt) - 1] + list(range(start, start + len(answer) - 1))
        row["target"] += answer
        row["owner"] += [s] * len(answer)
        row["tokens"] += answer
        row["segments"] += [j] * len(answer)
        row["positions"] += range(len(prompt), len(prompt) + len(answer))
    return row


def block_attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """(R, T) segment ids (0 prompt, j > 0 candidate j, -1 padding) -> (R, 1, T, T) bool, True = may attend.

    Query q sees key k iff k <= q and k is a prompt token or in q's own candidate. Padding sees
    itself only (besides prompt tokens), so no softmax row is all masked (that would be NaN, and
    NaN reaches the gradients even at positions the loss ignores).
    """
    T = segments.shape[1]
    query, key = segments[:, :, None], segments[:, None, :]  # (R, T, 1), (R, 1, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    visible = causal & (key >= 0) & ((key == 0) | (key == query))  # (R, T, T)
    return (visible | torch.eye(T, dtype=torch.bool))[:, None]


@dataclass
class PackedListwiseBatch:
    """One listwise step in which every distinct (prompt, candidate) sequence is computed once."""

    rows: SequenceRows  # model inputs holding the S distinct sequences (packed or padded)
    sequences: list[TokenSequence]  # (S) token ids of each distinct sequence
    sequence_keys: list[str]  # (S) content hash of each: the reference cache's key
    sequence_of_candidate: torch.Tensor  # (M,) candidate m is sequence s
    candidate_index: torch.Tensor  # (M,) flat index b * N_max + i
    candidate_mask: torch.Tensor  # (B, N_max) True where list b has a candidate i
    scores: torch.Tensor  # (B, K, N_max) normalised scores, NaN where missing / padding
    lam: torch.Tensor  # (B, K)
    shared_prompt: bool  # rows are packed per prompt (True) or one padded row per sequence
    pad_token_id: int

    def to(self, device) -> "PackedListwiseBatch":
        moved = {k: v.to(device) if isinstance(v, (torch.Tensor, SequenceRows)) else v
                 for k, v in self.__dict__.items()}
        return PackedListwiseBatch(**moved)

    def candidate_lengths(self) -> torch.Tensor:
        """(M,) candidate tokens of each candidate."""
        return self.rows.lengths[self.sequence_of_candidate]

    def rows_for(self, subset: Sequence[int]) -> SequenceRows:
        """Model inputs for only these sequences (the layout of this batch); their scored tokens are
        numbered 0..len(subset)-1 in subset order."""
        layout = packed_rows if self.shared_prompt else padded_rows
        return layout([self.sequences[s] for s in subset], self.pad_token_id)


def sequence_key(sequence: TokenSequence) -> str:
    """A content hash of the exact token ids of (prompt, candidate): equal keys, equal sequences."""
    prompt, answer = sequence
    return hashlib.blake2b(json.dumps([list(prompt), list(answer)]).encode(), digest_size=16).hexdigest()


def encode_listwise_packed(records, lambdas: Sequence[dict[str, float]], tokenizer, objectives: Sequence[str], *,
                           shared_prompt: bool = True, **settings) -> PackedListwiseBatch:
    """records[b] under lambdas[b], each distinct (prompt, candidate) sequence once, packed per prompt
    (shared_prompt) or one padded row each. settings: those of `tokenize_lists`."""
    tokens = tokenize_lists(records, lambdas, tokenizer, objectives, **settings)
    index_of: dict[TokenSequence, int] = {}
    for prompt, answers in zip(tokens.prompts, tokens.answers):
        for answer in answers:
            index_of.setdefault((tuple(prompt), tuple(answer)), len(index_of))
    sequence_of_candidate = [index_of[(tuple(prompt), tuple(answer))]
                             for prompt, answers in zip(tokens.prompts, tokens.answers) for answer in answers]
    sequences = list(index_of)  # insertion order = s
    layout = packed_rows if shared_prompt else padded_rows
    candidate_index, candidate_mask = _candidate_grid(tokens)
    return PackedListwiseBatch(
        rows=layout(sequences, tokenizer.pad_token_id), sequences=sequences,
        sequence_keys=[sequence_key(seq) for seq in sequences],
        sequence_of_candidate=torch.tensor(sequence_of_candidate),
        candidate_index=candidate_index, candidate_mask=candidate_mask, scores=tokens.scores, lam=tokens.lam,
        shared_prompt=shared_prompt, pad_token_id=tokenizer.pad_token_id,
    )


# Log-probs of every candidate


def on_candidate_grid(sums: torch.Tensor, batch: PackedListwiseBatch, length_normalize: bool) -> torch.Tensor:
    """(S,) summed log-prob per distinct sequence -> (B, N_max) per candidate (padding 0); differentiable.
    length_normalize: divided by the candidate's token count (the mean per-token log-prob)."""
    per_candidate = sums[batch.sequence_of_candidate]  # (M,) copies share one value (and its gradient)
    if length_normalize:
        per_candidate = per_candidate / batch.candidate_lengths().clamp_min(1)
    grid = per_candidate.new_zeros(batch.candidate_mask.numel()).index_put((batch.candidate_index,), per_candidate)
    return grid.view(batch.candidate_mask.shape)


def candidate_logps(model, batch: PackedListwiseBatch, length_normalize: bool = False,
                    chunked: bool = True) -> torch.Tensor:
    """Log-prob of every candidate of the batch under `model`, (B, N_max): each distinct sequence once,
    the LM head on candidate positions only (chunked). Training and evaluation both score lists here."""
    sums = scored_sequence_logps(model, batch.rows.model_inputs(), batch.rows.scored, chunked=chunked)  # (S,)
    return on_candidate_grid(sums, batch, length_normalize)


def fill_sequence_cache(cache: dict[str, float], batch: PackedListwiseBatch,
                        sums_of: Callable[[SequenceRows], torch.Tensor], device) -> int:
    """Store sums_of(rows) for the batch's sequences whose key `cache` lacks, computing only those
    (their own rows, on `device`); returns how many were computed. The reference log-probs of
    training's cache and of evaluation are kept this way."""
    keys = batch.sequence_keys
    missing = [s for s, key in enumerate(keys) if key not in cache]
    if missing:
        rows = batch.rows if len(missing) == len(keys) else batch.rows_for(missing).to(device)
        cache.update(zip([keys[s] for s in missing], sums_of(rows).float().cpu().tolist()))
    return len(missing)


def cached_candidate_logps(cache: dict[str, float], batch: PackedListwiseBatch, length_normalize: bool,
                           device) -> torch.Tensor:
    """The batch's (B, N_max) candidate grid from `cache`'s per-sequence sums (every key present)."""
    sums = torch.tensor([cache[key] for key in batch.sequence_keys], dtype=torch.float32, device=device)  # (S,)
    return on_candidate_grid(sums, batch, length_normalize)
