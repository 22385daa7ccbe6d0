"""The data's own ceiling on controllability: how much could imitating the data steer at best?

A policy that reproduced, at every lambda point, exactly the held-out list's lambda-best candidate
(the candidate the conditioned-SFT warm-up trains on: argmax_i sum_k lambda_k * z_{k,i}) is the best
a model can do by imitating the data. Its "answers" are the list's own texts with the raters' stored
scores, so the same Spearman(lambda_k, score_k) as `controllability.py` can be computed for it
without generating anything. If the ceiling is below a bar, no imitation recipe reaches the bar on
that data: the candidates of one list are too alike next to the spread between prompts, and the
fix is in the data (or in a mixing rule that extrapolates beyond it), not in more training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lwdpo_edge.evaluate.controllability import Generation, controllability_report
from lwdpo_edge.evaluate.grid import LambdaPoint
from lwdpo_edge.objective import lambda_best_index, normalize_scores
from lwdpo_edge.raters import count_words


def fully_scored(record, rated: Sequence[str]) -> bool:
    return all(r.scores.get(name) is not None for r in record.responses for name in rated)


def imitation_generations(lists, points: Sequence[LambdaPoint], objectives: Sequence[str], rated: Sequence[str],
                          normalization: str = "zscore") -> list[Generation]:
    """One pseudo-generation per (list, point): the lambda-best candidate with its stored scores.

    Lists missing a rated objective's score on any candidate are skipped (their ceiling is undefined).
    """
    gens = []
    for index, record in enumerate(r for r in lists if fully_scored(r, rated)):
        raw = torch.tensor([[float("nan") if r.scores.get(name) is None else float(r.scores[name])
                             for r in record.responses] for name in objectives])  # (K, N)
        normalised = normalize_scores(raw, normalization)[None]  # (1, K, N)
        mask = torch.ones(1, raw.shape[1], dtype=torch.bool)
        for point in points:
            lam = torch.tensor([[point.lam[name] for name in objectives]])  # (1, K)
            chosen = int(lambda_best_index(normalised, lam, mask))
            if chosen < 0:
                continue  # no objective this list can rank carries weight at this point: nothing to imitate
            best = record.responses[chosen]
            gens.append(Generation(index, point.name, dict(point.lam), best.text, count_words(best.text),
                                   {name: float(best.scores[name]) for name in rated}))
    return gens


def data_ceiling(lists, points: Sequence[LambdaPoint], objectives: Sequence[str], rated: Sequence[str],
                 normalization: str = "zscore") -> dict:
    """controllability_report of the imitation policy, plus how many lists it covers."""
    gens = imitation_generations(lists, points, objectives, rated, normalization)
    n_lists = len({g.prompt_index for g in gens})
    return {"n_lists": n_lists, "normalization": normalization, **controllability_report(gens, points, rated)}
