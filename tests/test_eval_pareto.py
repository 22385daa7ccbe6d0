"""The issue 13 judging tools on hand-made numbers: the dense grid, the Pareto front and hypervolume,
the lambda-weighted ranking and the loop detector."""

from __future__ import annotations

import numpy as np
import pytest

from lwdpo_edge.evaluate.grid import lambda_grid
from lwdpo_edge.evaluate.pareto import hypervolume, pareto_mask, pareto_report
from lwdpo_edge.evaluate.ranking import ListLogps, weighted_ranking_report, weighted_target
from lwdpo_edge.raters import repeats_itself

OBJ3 = ["helpfulness", "conciseness", "readability"]


def test_dense_grid_adds_one_interior_point_per_objective():
    grid = lambda_grid(OBJ3, "dense")
    assert len(grid) == 10
    lean = [p for p in grid if p.kind == "interior"]
    assert [p.name for p in lean] == [f"{name}-lean" for name in OBJ3]
    assert lean[1].lam == {"helpfulness": 0.2, "conciseness": 0.6, "readability": 0.2}
    assert all(0 < v < 1 for p in lean for v in p.lam.values())  # inside the simplex, on no edge
    with pytest.raises(ValueError, match="dense"):
        lambda_grid(OBJ3, "everything")


def test_pareto_mask_keeps_exactly_the_non_dominated_points():
    points = np.array([[2, 1], [1, 2], [1, 1], [2, 1], [0.5, 3]])
    # (1, 1) is dominated by (2, 1); the duplicate (2, 1) dominates neither copy of itself.
    assert pareto_mask(points).tolist() == [True, True, False, True, True]


def test_hypervolume_of_boxes_is_the_union_area():
    # Two boxes from the origin: 2x1 and 1x2 overlap in 1x1 -> 3.
    assert hypervolume(np.array([[2, 1], [1, 2]]), np.zeros(2)) == pytest.approx(3.0)
    # A dominated point and a point below the reference on one axis add nothing.
    assert hypervolume(np.array([[2, 1], [1, 2], [1, 1], [5, -1]]), np.zeros(2)) == pytest.approx(3.0)
    assert hypervolume(np.array([[3, 4, 5]]), np.array([1, 1, 1])) == pytest.approx(2 * 3 * 4)
    assert hypervolume(np.array([[0.5, 0.5]]), np.ones(2)) == 0.0


def test_hypervolume_matches_monte_carlo_in_three_dimensions():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1, size=(8, 3))
    samples = rng.uniform(0, 1, size=(200_000, 3))
    covered = (samples[:, None, :] <= points[None, :, :]).all(axis=2).any(axis=1)
    assert hypervolume(points, np.zeros(3)) == pytest.approx(covered.mean(), abs=0.005)


def test_pareto_report_uses_the_base_mean_as_reference():
    policy = [{"name": "a", "mean_scores": {"x": 2.0, "y": 1.0}}, {"name": "b", "mean_scores": {"x": 1.0, "y": 2.0}},
              {"name": "c", "mean_scores": {"x": 0.5, "y": 0.5}}]
    base = [{"name": "a", "mean_scores": {"x": 0.0, "y": 0.0}}, {"name": "b", "mean_scores": {"x": 1.0, "y": 1.0}}]
    report = pareto_report(policy, base, ["x", "y"])
    assert report["reference"] == {"x": 0.5, "y": 0.5}
    assert report["front"] == ["a", "b"]
    assert report["hypervolume"] == pytest.approx(1.5 * 0.5 + 0.5 * 1.5 - 0.5 * 0.5)
    assert report["points_above_reference"] == 2
    assert pareto_report(policy, [], ["x", "y"]) is None


def _list(policy, scores):
    return ListLogps(np.array(policy, float), np.zeros(len(policy)), np.array(scores, float))


def test_lambda_weighted_score_is_the_weighted_sum_of_z_scores():
    item = _list([0, 0, 0], [[0, 1, 2], [2, 0, 1]])  # z-scores: (-1.22, 0, 1.22) and (1.22, -1.22, 0)
    z = np.sqrt(1.5)
    assert weighted_target(item, [0.5, 0.5], "zscore") == pytest.approx([0, -z / 2, z / 2])
    assert weighted_target(item, [1.0, 0.0], "zscore") == pytest.approx([-z, 0, z])


def test_lambda_weighted_score_uses_only_the_objectives_a_list_is_scored_on():
    # Scored on x only (y null everywhere): every lambda that weighs x ranks by x, renormalised;
    # the y vertex cannot judge the list at all (all NaN, so the list is not counted there).
    item = _list([0, 0, 0], [[0, 1, 2], [np.nan, np.nan, np.nan]])
    z = np.sqrt(1.5)
    assert weighted_target(item, [0.5, 0.5], "none") == pytest.approx([0, 1, 2])
    assert weighted_target(item, [0.2, 0.8], "zscore") == pytest.approx([-z, 0, z])
    assert np.isnan(weighted_target(item, [0.0, 1.0], "zscore")).all()
    # y scored on one answer only, or tied: still not usable, so it never shifts the ranking by x
    assert weighted_target(_list([0, 0, 0], [[0, 1, 2], [5, np.nan, np.nan]]), [0.5, 0.5],
                           "none") == pytest.approx([0, 1, 2])
    assert weighted_target(_list([0, 0, 0], [[0, 1, 2], [3, 3, 3]]), [0.5, 0.5], "none") == pytest.approx([0, 1, 2])


def test_weighted_ranking_rewards_the_compromise_at_a_midpoint():
    # Candidate 0 is best on x, candidate 1 on y, candidate 2 second on both: the best compromise.
    scores = [[3, 0, 2], [0, 3, 2]]
    compromise, extreme = _list([0, 0, 1], scores), _list([1, 0, 0], scores)
    from lwdpo_edge.evaluate.grid import LambdaPoint

    points = [LambdaPoint("x", "vertex", {"x": 1.0, "y": 0.0}), LambdaPoint("x+y", "midpoint", {"x": 0.5, "y": 0.5})]
    report = weighted_ranking_report({"x": [compromise, extreme], "x+y": [compromise, extreme]}, points, ["x", "y"],
                                     beta=0.1)
    assert report["policy"]["x+y"]["top1"] == 0.5  # the compromise list is right, the extreme one wrong
    assert report["policy"]["x"]["top1"] == 0.5  # at the x vertex it is the other way round
    assert report["chance"]["x+y"]["top1"] == pytest.approx(1 / 3)
    assert weighted_ranking_report({"x+y": [compromise]}, points, ["x", "y"], 0.1)["policy"]["x+y"]["top1"] == 1.0


def test_repeats_itself_flags_loops_not_lists():
    assert repeats_itself("1. **1.1.1.1: Watering** 1. **1.1.1.1: Watering** 1. **1.1.1.1: Watering**")
    assert repeats_itself("the cat sat on the cat sat on the cat sat on the mat")
    assert not repeats_itself("1. Water the plant. 2. Give it light. 3. Feed it in spring.")
    assert not repeats_itself("")
