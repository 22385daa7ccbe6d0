"""Evaluation statistics on hand-made numbers: ranking metrics, Spearman, the lambda grid, controllability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lwdpo_edge.evaluate.controllability import Generation, controllability_report, objective_control
from lwdpo_edge.evaluate.grid import lambda_grid, ranking_points
from lwdpo_edge.evaluate.metrics import (chance_ndcg, chance_top1, kendall_tau, ndcg, rankable, spearman,
                                         top1_accuracy)

OBJ3 = ["helpfulness", "conciseness", "readability"]


def test_top1_is_tie_aware_and_chance_is_the_share_of_best():
    scores = np.array([1.0, 3.0, 3.0, 0.0])
    assert top1_accuracy(np.array([0.1, 0.9, 0.2, 0.0]), scores) == 1.0
    assert top1_accuracy(np.array([0.9, 0.1, 0.2, 0.0]), scores) == 0.0
    # All rewards tied (an untrained adapter): expected accuracy of a random pick = 2 best of 4.
    assert top1_accuracy(np.zeros(4), scores) == 0.5 == chance_top1(scores)
    assert top1_accuracy(np.array([1.0, 1.0, 0.0, 0.0]), scores) == 0.5  # favourites {0, 1}, one is best


def test_kendall_tau_and_ndcg_extremes():
    scores = np.array([0.0, 1.0, 2.0, 3.0])
    assert kendall_tau(scores * 2, scores) == pytest.approx(1.0)
    assert kendall_tau(-scores, scores) == pytest.approx(-1.0)
    assert kendall_tau(np.zeros(4), scores) == 0.0  # no order at all, not NaN
    assert ndcg(scores, scores) == pytest.approx(1.0)
    # Reversed order, gains (0, 1/3, 2/3, 1) meet discounts (1, .63, .5, .43).
    d = 1 / np.log2(np.arange(4) + 2)
    g = np.array([0, 1 / 3, 2 / 3, 1])
    assert ndcg(-scores, scores) == pytest.approx((g * d).sum() / (g[::-1] * d).sum())


def test_ndcg_of_all_tied_values_is_exactly_chance():
    scores = np.array([5.0, -1.0, 2.0])
    assert ndcg(np.zeros(3), scores) == pytest.approx(chance_ndcg(scores))
    # Chance by brute force: the mean NDCG over all 6 orders.
    from itertools import permutations

    orders = [ndcg(-np.array(p, dtype=float), scores) for p in permutations(range(3))]
    assert chance_ndcg(scores) == pytest.approx(np.mean(orders))


def test_rankable_needs_two_distinct_finite_scores():
    assert rankable(np.array([1.0, 2.0]))
    assert not rankable(np.array([1.0, 1.0, 1.0]))
    assert not rankable(np.array([1.0, np.nan]))


def test_spearman_by_hand_and_undefined_cases():
    # Ranks x = (1, 2, 3, 4), y = (2, 1, 4, 3): d^2 sums to 4, rho = 1 - 6*4 / (4*15) = 0.6.
    assert spearman([1, 2, 3, 4], [10, 5, 40, 30]) == pytest.approx(0.6)
    assert spearman([0, 0.5, 1], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([0, 0, 0], [1, 2, 3]) is None  # lambda never varies
    assert spearman([0, 0.5, 1], [2, 2, 2]) is None  # the score never varies


def test_grid_has_vertices_midpoints_and_centre_quantised():
    grid = lambda_grid(OBJ3)
    assert [p.name for p in grid] == OBJ3 + ["helpfulness+conciseness", "helpfulness+readability",
                                              "conciseness+readability", "uniform"]
    assert grid[3].lam == {"helpfulness": 0.5, "conciseness": 0.5, "readability": 0.0}
    assert grid[-1].lam == {"helpfulness": 0.34, "conciseness": 0.33, "readability": 0.33}  # what the header shows
    assert all(math.isclose(sum(p.lam.values()), 1.0) for p in grid)
    # Two objectives: the only edge midpoint is the centre, kept once under the name "uniform".
    assert [p.name for p in lambda_grid(["a", "b"])] == ["a", "b", "uniform"]
    assert [p.name for p in ranking_points(OBJ3)] == OBJ3 + ["uniform"]


def _generations(score_of_lambda, prompts=3, noise=0.0):
    """One generation per (prompt, grid point), score_k = f(lambda_k) + a per-prompt offset."""
    rng = np.random.default_rng(0)
    out = []
    for p in range(prompts):
        for point in lambda_grid(OBJ3):
            scores = {n: score_of_lambda(point.lam[n]) + 10 * p + noise * rng.normal() for n in OBJ3}
            out.append(Generation(p, point.name, point.lam, "x", 1, scores))
    return out


def test_controllability_of_a_perfectly_steered_model():
    gens = _generations(lambda lam: lam)  # score_k rises with lambda_k, plus a large per-prompt offset
    control = objective_control(gens, "conciseness")
    assert [lvl["lambda"] for lvl in control["levels"]] == [0.0, 0.33, 0.5, 1.0]
    assert control["monotone"] and control["low_to_high"] == pytest.approx(1.0)
    assert control["spearman_within_prompt"] == pytest.approx(1.0)  # prompt offsets removed
    assert 0 < control["spearman"] < 0.6  # pooled over prompts, the offsets dominate the ranks


def test_controllability_of_an_unsteered_model():
    gens = _generations(lambda lam: 0.0)
    control = objective_control(gens, "readability")
    assert control["spearman_within_prompt"] is None and not control["monotone"]
    assert control["spearman"] == pytest.approx(0.0)
    report = controllability_report(gens, lambda_grid(OBJ3), OBJ3)
    assert len(report["points"]) == 7 and report["points"][0]["n"] == 3
    assert report["points"][0]["mean_scores"]["helpfulness"] == pytest.approx(10.0)  # mean offset of 0, 10, 20


def test_controllability_detects_a_non_monotone_response():
    gens = _generations(lambda lam: -abs(lam - 0.5))  # best in the middle of the edge
    control = objective_control(gens, "helpfulness")
    assert not control["monotone"]
