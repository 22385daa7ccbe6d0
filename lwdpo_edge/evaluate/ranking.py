"""Ranking: does the policy's implicit reward order held-out lists the way each objective does?

For every held-out list and every ranking point lambda (each vertex, uniform), the candidates are
encoded exactly as training encoded them (`encode_listwise`, same header switch, same token caps)
and scored twice by one model: adapter on (policy) and adapter off (reference = the base model).

    r_i = beta * (log pi_theta(y_i | x, lambda) - log pi_ref(y_i | x, lambda))     (N,) per list

and r is compared with each objective's scores: tie-aware top-1 accuracy, Kendall tau-b, NDCG.
At every point r is also compared with the lambda-weighted score of the list, sum_k lambda_k * z_k
(each objective z-scored within the list, as training's targets): at a mix such as the centre or an
edge midpoint no single objective says which answer is best, the weighted sum does.

Baselines. The base model's implicit reward is 0 for every candidate by definition, which is
exactly chance under tie-aware metrics; so two baselines are reported instead:
  - "chance": the expected metric of a random order (exact per list, not simulated);
  - "base_logprob": the base model's own sequence log-prob log pi_ref(y_i | x, lambda) as the
    ranking, i.e. what the untrained model "prefers". Summed log-probs favour short answers, so
    this baseline is strong on conciseness by construction; a policy has to beat it there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lwdpo_edge.batching import ListwiseBatch, encode_listwise
from lwdpo_edge.evaluate.grid import LambdaPoint
from lwdpo_edge.evaluate.metrics import (chance_ndcg, chance_top1, kendall_tau, mean_or_none, ndcg, rankable,
                                         standard_error_or_none, top1_accuracy)
from lwdpo_edge.logprobs import sequence_logps
from lwdpo_edge.objective import lambda_weighted_scores, normalize_scores


@dataclass(frozen=True)
class RankingSettings:
    """How the run was trained, from lwdpo.json: eval must encode lists the same way."""

    beta: float = 0.1
    condition_on_lambda: bool = True
    length_normalize: bool = False
    max_prompt_tokens: int = 256
    max_response_tokens: int = 160
    score_normalization: str = "zscore"  # how the lambda-weighted score puts objectives on one scale

    @classmethod
    def from_manifest(cls, manifest: dict) -> "RankingSettings":
        config = manifest.get("training", {}).get("config", {})
        defaults = cls()
        return cls(
            beta=float(config.get("beta", defaults.beta)),
            condition_on_lambda=manifest.get("conditioning", "header") == "header",
            length_normalize=bool(config.get("length_normalize", defaults.length_normalize)),
            max_prompt_tokens=int(config.get("max_prompt_tokens", defaults.max_prompt_tokens)),
            max_response_tokens=int(config.get("max_response_tokens", defaults.max_response_tokens)),
            score_normalization=str(config.get("score_normalization", defaults.score_normalization)),
        )


@dataclass
class ListLogps:
    """One held-out list under one lambda."""

    policy: np.ndarray  # (N,) log pi_theta(y_i | x, lambda)
    reference: np.ndarray  # (N,) log pi_ref(y_i | x, lambda), adapter disabled
    scores: np.ndarray  # (K, N) raw objective scores, NaN where missing


def candidate_logps(model, batch: ListwiseBatch, length_normalize: bool, rows_per_pass: int = 8) -> torch.Tensor:
    """Log-prob of every candidate on the (B, N_max) grid, as LambdaDPOTrainer.candidate_logps.

    Rows are right-padded to the longest of the whole batch; here they go through the model in
    passes of similar length, each cut to its own longest row, so little compute is spent on padding.
    Cutting trailing padding changes no real token's log-prob (causal attention, masked pads).
    """
    lengths = batch.attention_mask.sum(dim=1)  # (M,)
    flat = torch.zeros(len(lengths))  # (M,)
    for rows in torch.argsort(lengths, descending=True).split(rows_per_pass):
        T = int(lengths[rows].max())
        flat[rows] = sequence_logps(model, batch.input_ids[rows, :T], batch.attention_mask[rows, :T],
                                    batch.completion_mask[rows, :T], length_normalize).float().cpu()
    grid = flat.new_zeros(batch.candidate_mask.numel()).index_put((batch.candidate_index.cpu(),), flat)
    return grid.view(batch.candidate_mask.shape)  # (B, N_max)


@torch.inference_mode()
def score_chunk(model, tokenizer, records, lam: dict[str, float], objectives,
                settings: RankingSettings) -> list[ListLogps]:
    """Policy and reference log-probs of every candidate of `records` under `lam`."""
    batch = encode_listwise(
        records, [lam] * len(records), tokenizer, objectives,
        condition_on_lambda=settings.condition_on_lambda, score_normalization="none",
        max_prompt_tokens=settings.max_prompt_tokens, max_response_tokens=settings.max_response_tokens,
    ).to(model.device)
    policy = candidate_logps(model, batch, settings.length_normalize)  # (B, N_max)
    with model.disable_adapter():
        reference = candidate_logps(model, batch, settings.length_normalize)
    out = []
    for b, record in enumerate(records):
        n = len(record.responses)
        out.append(ListLogps(policy[b, :n].numpy(), reference[b, :n].numpy(), batch.scores[b, :, :n].cpu().numpy()))
    return out


def score_lists(model, tokenizer, records, points: Sequence[LambdaPoint], objectives, settings: RankingSettings,
                lists_per_batch: int = 8,
                advance: Callable[[int], None] = lambda n: None) -> dict[str, list[ListLogps]]:
    """{point name: [ListLogps per record]}. Without conditioning every lambda sees the same
    inputs, so the lists are scored once and shared by all points."""
    done: dict[tuple, list[ListLogps]] = {}
    out = {}
    for point in points:
        key = tuple(point.lam.items()) if settings.condition_on_lambda else ()
        if key not in done:
            scored = []
            for start in range(0, len(records), lists_per_batch):
                chunk = records[start : start + lists_per_batch]
                scored += score_chunk(model, tokenizer, chunk, point.lam, objectives, settings)
                advance(len(chunk))
            done[key] = scored
        else:
            advance(len(records))
        out[point.name] = done[key]
    return out


# ----------------------------------------------------------------------------- metrics over lists


def policy_rewards(item: ListLogps, beta: float) -> np.ndarray:
    return beta * (item.policy - item.reference)


def target_metrics(lists: Sequence[ListLogps], target_of: Callable[[ListLogps], np.ndarray],
                   values_of: Callable[[ListLogps], np.ndarray] | None) -> dict:
    """Mean top-1 / Kendall tau / NDCG of values_of(item) against target_of(item) (N,) over the lists
    whose target can rank; values_of=None gives the chance level of a random order."""
    rows = []  # (top1, tau, ndcg) per rankable list
    for item in lists:
        target = target_of(item)
        if not rankable(target):
            continue
        present = np.isfinite(target)  # candidates without a score are left out, as in the loss
        s = target[present]
        if values_of is None:
            rows.append((chance_top1(s), 0.0, chance_ndcg(s)))
        else:
            v = values_of(item)[present]
            rows.append((top1_accuracy(v, s), kendall_tau(v, s), ndcg(v, s)))
    top1, tau, gain = zip(*rows) if rows else ((), (), ())
    # *_se: standard error of each mean over the lists, so two runs' gap can be read against noise
    return {"top1": mean_or_none(top1), "kendall_tau": mean_or_none(tau), "ndcg": mean_or_none(gain),
            "n_lists": len(rows), "top1_se": standard_error_or_none(top1),
            "kendall_tau_se": standard_error_or_none(tau), "ndcg_se": standard_error_or_none(gain)}


def objective_metrics(lists: Sequence[ListLogps], k: int, values_of: Callable[[ListLogps], np.ndarray] | None) -> dict:
    """Metrics against objective k's own scores."""
    return target_metrics(lists, lambda item: item.scores[k], values_of)


def rankers(beta: float) -> dict:
    """What orders a list: the policy's implicit reward, the base model's log-prob, or chance (None)."""
    return {"policy": lambda item: policy_rewards(item, beta), "base_logprob": lambda item: item.reference,
            "chance": None}


def ranking_report(scored: dict[str, list[ListLogps]], objectives: Sequence[str], beta: float) -> dict:
    """{"policy" | "base_logprob" | "chance": {point: {objective: metrics}}}."""
    return {
        ranker: {point: {name: objective_metrics(lists, k, values_of) for k, name in enumerate(objectives)}
                 for point, lists in scored.items()}
        for ranker, values_of in rankers(beta).items()
    }


def weighted_target(item: ListLogps, lam: Sequence[float], normalization: str) -> np.ndarray:
    """The list's lambda-weighted score under the training rule (`lwdpo_edge.objective.lambda_weighted_scores`:
    usable objectives only, lambda renormalised over them, NaN for a candidate it cannot judge).  (K, N) -> (N,)"""
    normalised = normalize_scores(torch.from_numpy(np.asarray(item.scores, dtype=np.float64)), normalization)
    lam_row = torch.tensor([list(lam)], dtype=torch.float64)  # (1, K)
    mask = torch.ones(1, normalised.shape[1], dtype=torch.bool)
    return lambda_weighted_scores(normalised[None], lam_row, mask)[0].numpy()


def weighted_ranking_report(scored: dict[str, list[ListLogps]], points: Sequence[LambdaPoint],
                            objectives: Sequence[str], beta: float, normalization: str = "zscore") -> dict:
    """{"policy" | "base_logprob" | "chance": {point: metrics against the point's lambda-weighted score}}."""
    lams = {p.name: [p.lam[name] for name in objectives] for p in points}
    return {ranker: {point: target_metrics(lists,
                                           lambda item, lam=lams[point]: weighted_target(item, lam, normalization),
                                           values_of)
                     for point, lists in scored.items()}
            for ranker, values_of in rankers(beta).items()}
