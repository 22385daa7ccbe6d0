"""Ranking metrics over lists, the steering verdict, and the all-or-nothing report folder (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lwdpo_edge.evaluate import report as report_module
from lwdpo_edge.evaluate.controllability import Generation, controllability_report
from lwdpo_edge.evaluate.criteria import judge
from lwdpo_edge.evaluate.grid import lambda_grid, ranking_points
from lwdpo_edge.evaluate.ranking import ListLogps, ranking_report
from lwdpo_edge.evaluate.report import summary_markdown, write_report

OBJ = ["helpfulness", "conciseness"]


def _list(policy, reference, scores):
    return ListLogps(np.array(policy, float), np.array(reference, float), np.array(scores, float))


def test_ranking_report_knows_the_answer():
    """Rewards that order candidates exactly by helpfulness and exactly against conciseness."""
    # Candidates 0..3: helpfulness rises, conciseness falls; the policy's log-ratio rises with helpfulness.
    lists = [_list([-10, -9, -8, -7], [-10, -10, -10, -10], [[0, 1, 2, 3], [3, 2, 1, 0]])] * 3
    # A list where conciseness is missing for two candidates and constant for the rest: not rankable for it.
    lists.append(_list([-5, -4, -6], [-5, -5, -5], [[1, 2, 0], [1, 1, float("nan")]]))
    report = ranking_report({"uniform": lists}, OBJ, beta=0.1)
    help_, conc = report["policy"]["uniform"]["helpfulness"], report["policy"]["uniform"]["conciseness"]
    assert help_["top1"] == 1.0 and help_["kendall_tau"] == pytest.approx(1.0) and help_["ndcg"] == pytest.approx(1.0)
    assert help_["n_lists"] == 4
    assert conc["top1"] == 0.0 and conc["kendall_tau"] == pytest.approx(-1.0) and conc["n_lists"] == 3
    # The base model's log-probs are all equal here: a random order, i.e. chance.
    assert report["base_logprob"]["uniform"]["helpfulness"]["top1"] == pytest.approx(
        report["chance"]["uniform"]["helpfulness"]["top1"])
    assert report["chance"]["uniform"]["conciseness"]["top1"] == 0.25


def test_ranking_report_gives_the_standard_error_of_each_mean():
    """Top-1 right on 2 of 4 lists: per-list values 1, 1, 0, 0 -> se = sd(ddof=1) / 2 = 0.2887."""
    right = _list([-7, -8], [-8, -8], [[1, 0], [0, 1]])   # helpfulness ranked right, conciseness wrong
    wrong = _list([-8, -7], [-8, -8], [[1, 0], [0, 1]])
    report = ranking_report({"uniform": [right, right, wrong, wrong]}, OBJ, beta=0.1)
    cell = report["policy"]["uniform"]["helpfulness"]
    assert cell["top1"] == 0.5 and cell["top1_se"] == pytest.approx(np.std([1, 1, 0, 0], ddof=1) / 2)
    assert cell["kendall_tau_se"] == pytest.approx(np.std([1, 1, -1, -1], ddof=1) / 2)
    one = ranking_report({"uniform": [right]}, OBJ, beta=0.1)["policy"]["uniform"]["helpfulness"]
    assert one["top1_se"] is None  # one list: no spread to measure


def _steered_generations(prompts: int, steer: bool):
    out = []
    for p in range(prompts):
        for point in lambda_grid(OBJ):
            scores = {n: (point.lam[n] if steer else 0.0) + 0.01 * p for n in OBJ}
            out.append(Generation(p, point.name, point.lam, "answer", 1, scores))
    return out


def _ranking(top1: float):
    cell = {"top1": top1, "kendall_tau": 0.0, "ndcg": 0.9, "n_lists": 5}
    chance = {"top1": 0.25, "kendall_tau": 0.0, "ndcg": 0.8, "n_lists": 5}
    points = [p.name for p in ranking_points(OBJ)]
    return {"policy": {pt: dict.fromkeys(OBJ, cell) for pt in points},
            "base_logprob": {pt: dict.fromkeys(OBJ, chance) for pt in points},
            "chance": {pt: dict.fromkeys(OBJ, chance) for pt in points}}


def test_verdict_passes_only_a_steering_run_with_enough_prompts():
    grid = lambda_grid(OBJ)
    good = judge(_steered_generations(30, True), _steered_generations(30, False), grid, OBJ, _ranking(0.6), 30)
    assert good["passed"]
    assert good["objectives"]["conciseness"]["spearman"] > 0.9
    assert good["objectives"]["conciseness"]["base_near_zero"]  # the base varies by prompt only: rho 0
    assert not judge(_steered_generations(3, True), [], grid, OBJ, _ranking(0.6), 3)["passed"]  # too few prompts
    flat = judge(_steered_generations(30, False), [], grid, OBJ, _ranking(0.6), 30)
    assert not flat["passed"] and not flat["objectives"]["helpfulness"]["monotone"]
    at_chance = judge(_steered_generations(30, True), [], grid, OBJ, _ranking(0.25), 30)
    assert not at_chance["passed"] and not at_chance["objectives"]["helpfulness"]["top1_ok"]
    # 0.26 over 5 lists is chance plus noise (needs > 0.25 + 1.645 * 0.19): not a pass
    assert not judge(_steered_generations(30, True), [], grid, OBJ, _ranking(0.26),
                     30)["objectives"]["helpfulness"]["top1_ok"]


def test_a_rise_within_noise_is_not_monotone():
    """Means that rise in order but by far less than their standard error: not a real rise."""
    # Every lambda level sees the same +-1 prompt effects, so the level means are ordered exactly.
    noisy = [Generation(g.prompt_index, g.point, g.lam, "a", 1,
                        {n: 0.001 * g.lam[n] + (-1) ** g.prompt_index for n in OBJ})
             for g in _steered_generations(30, True)]
    grid = lambda_grid(OBJ)
    verdict = judge(noisy, [], grid, OBJ, _ranking(0.6), 30)["objectives"]
    levels = verdict["conciseness"]["levels"]
    assert levels == sorted(levels) and levels[-1] > levels[0]  # ordered...
    assert not verdict["helpfulness"]["monotone"] and not verdict["conciseness"]["monotone"]  # ...but within noise


def _report(prompts=30):
    grid = lambda_grid(OBJ)
    policy, base = _steered_generations(prompts, True), _steered_generations(prompts, False)
    ranking = _ranking(0.6)
    return {
        "run": {"dir": "runs/x", "conditioning": "header", "steps": 5},
        "objectives": OBJ,
        "data": {"source": "default", "n_lists": 5},
        "settings": {"backend": "transformers", "max_new_tokens": 8},
        "ranking": {"points": list(ranking["policy"]), **ranking},
        "controllability": {"grid": [p.name for p in grid], "rated": OBJ, "unrated": [], "n_prompts": prompts,
                            "policy": controllability_report(policy, grid, OBJ),
                            "base": controllability_report(base, grid, OBJ)},
        "criteria": judge(policy, base, grid, OBJ, ranking, prompts),
        "timing": {"total_s": 12.0},
    }


def test_summary_states_the_verdict_and_every_baseline():
    text = summary_markdown(_report())
    assert "**Passed.**" in text
    assert "| conciseness | 0.94 (yes) | 0.00 (yes) |" in text  # run Spearman, base Spearman
    assert "| uniform | helpfulness | 0.60 / 0.25 / 0.25 |" in text  # top-1 run / base log-prob / chance


def test_report_folder_is_all_or_nothing(tmp_path, monkeypatch):
    out = tmp_path / "eval"
    write_report(_report(), [{"model": "policy", "answer": "a"}], out)
    first = (out / "report.json").read_text()
    assert json.loads(first)["plots"] == ["controllability.png", "tradeoff.png", "ranking.png"]
    assert (out / "generations.jsonl").read_text() == '{"model": "policy", "answer": "a"}\n'

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_module, "write_plots", broken)
    with pytest.raises(RuntimeError):
        write_report(_report(prompts=3), [], out)
    assert (out / "report.json").read_text() == first  # the complete earlier report survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no staging folder left behind


def test_report_never_replaces_a_folder_of_other_files(tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an lwdpo-edge eval folder"):
        write_report(_report(), [], other)
    assert (other / "notes.txt").read_text() == "keep me"
