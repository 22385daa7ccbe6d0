"""The data ceiling: the controllability of a policy that answers with each list's lambda-best candidate."""

from __future__ import annotations

import pytest

from lwdpo_edge.data import ListwiseRecord, Response
from lwdpo_edge.evaluate.ceiling import data_ceiling, imitation_generations
from lwdpo_edge.evaluate.criteria import judged_points
from lwdpo_edge.evaluate.grid import lambda_grid

OBJECTIVES = ["helpfulness", "conciseness"]
POINTS = judged_points(lambda_grid(OBJECTIVES, "full"))  # helpfulness, conciseness, uniform


def record(question: str, scored: list[tuple[str, float | None, float | None]]) -> ListwiseRecord:
    return ListwiseRecord([{"role": "user", "content": question}],
                          [Response(text, {"helpfulness": h, "conciseness": c}) for text, h, c in scored])


def test_each_point_picks_the_lambda_best_candidate_with_its_stored_scores():
    lists = [record("q", [("long and thorough answer here", 0.9, -3.0), ("short", 0.2, -1.0),
                          ("medium one", 0.8, -1.8)])]
    gens = imitation_generations(lists, POINTS, OBJECTIVES, OBJECTIVES)
    picked = {g.point: g.answer for g in gens}
    assert picked == {"helpfulness": "long and thorough answer here", "conciseness": "short",
                      "uniform": "medium one"}  # sum of z-scores: -0.44, -0.27, +0.70
    by_point = {g.point: g for g in gens}
    assert by_point["conciseness"].scores == {"helpfulness": 0.2, "conciseness": -1.0}
    assert by_point["helpfulness"].words == 5 and by_point["uniform"].lam == {"helpfulness": 0.5, "conciseness": 0.5}


def test_data_with_clear_contrast_has_a_high_ceiling_and_alike_candidates_none():
    # Every list: a long relevant answer and a short less relevant one; prompts differ in level.
    contrasting = [record(f"q{i}", [("a " * 40, 0.5 + i / 100, -4.0 - i / 10), ("b", 0.3 + i / 100, -1.0 - i / 10)])
                   for i in range(10)]
    high = data_ceiling(contrasting, POINTS, OBJECTIVES, OBJECTIVES)["objectives"]
    assert high["helpfulness"]["spearman"] > 0.6 and high["conciseness"]["spearman"] > 0.6
    assert high["conciseness"]["monotone"]
    alike = [record(f"q{i}", [("same", 0.5, -2.0), ("same", 0.5, -2.0)]) for i in range(5)]
    flat = data_ceiling(alike, POINTS, OBJECTIVES, OBJECTIVES)["objectives"]
    assert flat["conciseness"]["spearman"] is None  # constant scores: no correlation defined


def test_prompt_spread_larger_than_the_contrast_lowers_the_ceiling_but_not_the_within_prompt_one():
    # Same within-list contrast (0.1) as above, but prompts spread over 0..0.9.
    spread = [record(f"q{i}", [("a " * 40, i / 10 + 0.1, -4.0), ("b", i / 10, -1.0)]) for i in range(10)]
    report = data_ceiling(spread, POINTS, OBJECTIVES, OBJECTIVES)["objectives"]["helpfulness"]
    assert report["spearman"] < 0.3 < report["spearman_within_prompt"]


def test_lists_missing_a_rated_score_are_skipped():
    lists = [record("q0", [("x", 0.9, -1.0), ("y", 0.1, None)]), record("q1", [("x", 0.9, -1.0), ("y", 0.1, -2.0)])]
    result = data_ceiling(lists, POINTS, OBJECTIVES, OBJECTIVES)
    assert result["n_lists"] == 1
    only_helpfulness = data_ceiling(lists, POINTS, OBJECTIVES, ["helpfulness"])
    assert only_helpfulness["n_lists"] == 2


@pytest.mark.parametrize("normalization", ["zscore", "rank", "none"])
def test_vertices_pick_the_best_of_their_objective_under_every_normalization(normalization):
    lists = [record("q", [("a", 0.1, -1.0), ("b", 0.9, -3.0), ("c", 0.5, -2.0)])]
    picked = {g.point: g.answer for g in imitation_generations(lists, POINTS, OBJECTIVES, OBJECTIVES, normalization)}
    assert picked["helpfulness"] == "b" and picked["conciseness"] == "a"


def test_a_point_weighing_only_unscored_objectives_imitates_nothing():
    lists = [record("q", [("x", 0.9, None), ("y", 0.1, None)])]  # scored on helpfulness only
    picked = {g.point: g.answer for g in imitation_generations(lists, POINTS, OBJECTIVES, ["helpfulness"])}
    assert picked == {"helpfulness": "x", "uniform": "x"}  # conciseness vertex: no target, not candidate 0
