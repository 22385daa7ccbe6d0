"""Ranking and correlation statistics, pure functions on numpy arrays.

Ranking metrics compare a model's value per candidate (`values`, e.g. implicit rewards, shape (N,))
with one objective's scores (`scores`, shape (N,), higher is better) on one list. Ties in `values`
are common (an untrained adapter gives r = 0 for every candidate), so the metrics take the
expectation over a random order of tied candidates instead of letting argmax pick the first one:
a model that cannot tell candidates apart scores exactly chance, never better.
"""

from __future__ import annotations

import math

import numpy as np


def rankable(scores: np.ndarray) -> bool:
    """A list says something about objective k when >= 2 candidates have finite, unequal scores."""
    finite = scores[np.isfinite(scores)]
    return finite.size >= 2 and float(finite.max() - finite.min()) > 0


def top1_accuracy(values: np.ndarray, scores: np.ndarray) -> float:
    """P(the model's favourite is among the objective's best), ties in `values` broken at random."""
    favourites = values == values.max()
    best = scores == scores.max()
    return float((favourites & best).sum() / favourites.sum())


def chance_top1(scores: np.ndarray) -> float:
    """top-1 accuracy of a uniformly random pick: share of candidates tied for the best score."""
    return float((scores == scores.max()).mean())


def kendall_tau(values: np.ndarray, scores: np.ndarray) -> float:
    """Kendall tau-b between `values` and `scores`; 0 when `values` are all equal (no order at all)."""
    from scipy.stats import kendalltau  # scipy: heavy, optional (train extra)

    if np.all(values == values[0]):
        return 0.0
    return float(kendalltau(values, scores).statistic)


def _gains(scores: np.ndarray) -> np.ndarray:
    """Scores rescaled to [0, 1] within the list (worst 0, best 1): NDCG needs gains >= 0."""
    return (scores - scores.min()) / (scores.max() - scores.min())


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(n) + 2.0)  # position 0 -> 1, 1 -> 0.63, 2 -> 0.5, ...


def ndcg(values: np.ndarray, scores: np.ndarray) -> float:
    """NDCG of the order by `values` (descending), gains from `scores`; expected value over tie orders.

    A group of tied candidates occupying positions P contributes mean(gains of the group) * sum(discounts[P]).
    """
    gains, discounts = _gains(scores), _discounts(len(scores))
    dcg, position = 0.0, 0
    for value in np.unique(values)[::-1]:  # highest value first
        group = values == value
        size = int(group.sum())
        dcg += gains[group].mean() * discounts[position : position + size].sum()
        position += size
    ideal = (np.sort(gains)[::-1] * discounts).sum()
    return float(dcg / ideal)


def chance_ndcg(scores: np.ndarray) -> float:
    """Expected NDCG of a uniformly random order: every candidate equally likely at every position."""
    gains, discounts = _gains(scores), _discounts(len(scores))
    return float(gains.mean() * discounts.sum() / (np.sort(gains)[::-1] * discounts).sum())


def spearman(x, y) -> float | None:
    """Spearman rank correlation, or None when either side is constant (the correlation is undefined)."""
    from scipy.stats import spearmanr  # scipy: heavy, optional (train extra)

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    value = float(spearmanr(x, y).statistic)
    return None if math.isnan(value) else value


def mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def standard_error_or_none(values) -> float | None:
    """sd / sqrt(n) of a per-list metric (sample sd, ddof=1): the noise of its mean over lists.
    None with fewer than 2 values, where no spread can be measured."""
    values = [v for v in values if v is not None]
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) >= 2 else None
