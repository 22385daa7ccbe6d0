"""Ranking: does the policy's implicit reward order held-out lists the way each objective does?

For every held-out list and every ranking point lambda (each vertex, uniform), the candidates are
encoded exactly as training encoded them (`encode_listwise_packed`, same header switch, same token
caps) and scored by one model as policy (adapter on; a soup: its mix at the point, folded into the
weights) and as reference (adapter off = the base model, once per distinct sequence).

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
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from lwdpo_edge.batching import (PackedListwiseBatch, cached_candidate_logps, candidate_logps, encode_listwise_packed,
                                 fill_sequence_cache)
from lwdpo_edge.evaluate.grid import LambdaPoint
from lwdpo_edge.evaluate.metrics import (chance_ndcg, chance_top1, kendall_tau, mean_or_none, ndcg, rankable,
                                         standard_error_or_none, top1_accuracy)
from lwdpo_edge.logprobs import scored_sequence_logps
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


def adapter_on(point: LambdaPoint):
    """The policy of a single-adapter run: the model as loaded, at every point (the header carries lambda)."""
    return nullcontext()


def ranking_passes(points: Sequence[LambdaPoint], settings: RankingSettings) -> int:
    """Passes over the lists `score_lists` makes: a policy pass per point, and a reference pass per
    distinct input (one for a run whose prompts carry no header, whatever the number of points)."""
    return len(points) + (len(points) if settings.condition_on_lambda else 1)


def _by_length(records) -> list[int]:
    """Record indices, shortest text first: lists of similar length share a batch, so little of it is padding."""
    def characters(record) -> int:
        return sum(len(response.text) for response in record.responses) + len(str(record.prompt))

    return sorted(range(len(records)), key=lambda i: characters(records[i]))


@torch.inference_mode()
def score_lists(model, tokenizer, records, points: Sequence[LambdaPoint], objectives, settings: RankingSettings,
                lists_per_batch: int = 1, advance: Callable[[int], None] = lambda n: None,
                policy_at: Callable[[LambdaPoint], AbstractContextManager] = adapter_on,
                reference_logps: dict[str, float] | None = None) -> dict[str, list[ListLogps]]:
    """{point name: [ListLogps per record]}, scored as training scores lists (`batching.candidate_logps`:
    each distinct sequence once, the prompt shared by its candidates, the LM head on candidate tokens only).

    policy_at(point): a context in which `model` is the policy at that point (a soup: its mix folded into
    the weights). The reference (`model.disable_adapter()`) is computed once per distinct sequence and kept
    in `reference_logps` (sequence key -> summed log-prob; pass a dict to share it between calls).
    """
    reference_logps = {} if reference_logps is None else reference_logps
    order = _by_length(records)
    chunks = [[records[i] for i in order[start:start + lists_per_batch]]
              for start in range(0, len(records), lists_per_batch)]
    encoded: dict[tuple, list[PackedListwiseBatch]] = {}  # distinct inputs: one per point with a header, else one
    for point in points:
        key = tuple(point.lam.items()) if settings.condition_on_lambda else ()
        if key not in encoded:
            encoded[key] = [_encode(chunk, point.lam, tokenizer, objectives, settings).to(model.device)
                            for chunk in chunks]
            for batch, chunk in zip(encoded[key], chunks):
                _fill_reference(model, batch, reference_logps)
                advance(len(chunk))
    position = {i: n for n, i in enumerate(order)}  # file index -> place in the length order
    out = {}
    for point in points:
        batches = encoded[tuple(point.lam.items()) if settings.condition_on_lambda else ()]
        scored = []
        with policy_at(point):
            for batch, chunk in zip(batches, chunks):
                policy = candidate_logps(model, batch, settings.length_normalize).float().cpu()  # (B, N_max)
                reference = cached_candidate_logps(reference_logps, batch, settings.length_normalize,
                                                   batch.candidate_mask.device).cpu()  # (B, N_max)
                scored += _list_logps(chunk, batch, policy, reference)
                advance(len(chunk))
        out[point.name] = [scored[position[i]] for i in range(len(records))]  # back to file order
    return out


def _encode(records, lam: dict[str, float], tokenizer, objectives, settings: RankingSettings) -> PackedListwiseBatch:
    return encode_listwise_packed(
        records, [lam] * len(records), tokenizer, objectives, shared_prompt=True,
        condition_on_lambda=settings.condition_on_lambda, score_normalization="none",
        max_prompt_tokens=settings.max_prompt_tokens, max_response_tokens=settings.max_response_tokens)


def _fill_reference(model, batch: PackedListwiseBatch, reference_logps: dict[str, float]) -> None:
    """Summed reference log-prob of each of the batch's sequences not yet in `reference_logps`."""
    def reference_sums(rows) -> torch.Tensor:
        with model.disable_adapter():
            return scored_sequence_logps(model, rows.model_inputs(), rows.scored, chunked=True)  # (len(rows),)

    fill_sequence_cache(reference_logps, batch, reference_sums, model.device)


def _list_logps(records, batch: PackedListwiseBatch, policy: torch.Tensor, reference: torch.Tensor) -> list[ListLogps]:
    scores = batch.scores.cpu().numpy()  # (B, K, N_max) raw
    return [ListLogps(policy[b, :len(r.responses)].numpy(), reference[b, :len(r.responses)].numpy(),
                      scores[b, :, :len(r.responses)]) for b, r in enumerate(records)]


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
