"""The steering verdict: the bar for "lambda really steers", checked on an evaluation's numbers.

Per rated objective k, on generations at the vertices and the centre only (the points the
verdict judges; the full grid's midpoints are left out here):
  - spearman_ok:   Spearman(lambda_k, score_k) >= MIN_SPEARMAN for the trained run;
  - base_near_zero: the untrained base under the same headers has |Spearman| <= MAX_BASE_SPEARMAN;
  - monotone:      mean score_k never falls from lambda_k = 0 (other vertices) to lambda_k = 1, and
                   the rise from low to high exceeds 2 standard errors (noise alone does not pass);
  - top1_ok:       held-out ranking top-1 accuracy for k at k's vertex is above chance by more than
                   1.645 binomial standard errors of chance over the lists (one-sided 95%).
Plus enough_prompts: at least MIN_PROMPTS held-out prompts were generated for.
Reported beside each objective, not checked: the held-out data's own ceiling (ceiling.py), the
Spearman a model would reach by reproducing each list's lambda-best candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

from lwdpo_edge.evaluate.controllability import Generation, controllability_report
from lwdpo_edge.evaluate.grid import LambdaPoint

MIN_SPEARMAN = 0.6
MAX_BASE_SPEARMAN = 0.2  # "must stay near 0": our reading, stated in the report
MIN_PROMPTS = 30
RISE_STANDARD_ERRORS = 2.0  # monotone: high-vertex mean minus low mean must exceed this many SEs
TOP1_Z = 1.645  # top-1 must beat chance by this many binomial SEs (one-sided 95%)
JUDGED_KINDS = ("vertex", "centre")


def judged_points(points: Sequence[LambdaPoint]) -> list[LambdaPoint]:
    """The vertices and the centre: the points the verdict judges."""
    return [p for p in points if p.kind in JUDGED_KINDS]


def judged_subset(generations: Sequence[Generation], points: Sequence[LambdaPoint]):
    """Generations and points at the vertices and the centre only."""
    keep = judged_points(points)
    names = {p.name for p in keep}
    return [g for g in generations if g.point in names], keep


def _at_least(value, bound) -> bool:
    return value is not None and value >= bound


def significant_rise(levels: Sequence[dict]) -> bool:
    """Mean at the highest lambda_k minus the mean at the lowest > RISE_STANDARD_ERRORS standard errors."""
    if len(levels) < 2:
        return False
    low, high = levels[0], levels[-1]
    se = (low["sd"] ** 2 / max(low["n"], 1) + high["sd"] ** 2 / max(high["n"], 1)) ** 0.5
    return high["mean"] - low["mean"] > RISE_STANDARD_ERRORS * se


def beats_chance(top1, chance, n_lists) -> bool:
    """Top-1 above chance by TOP1_Z binomial standard errors of a random order over n_lists lists."""
    if top1 is None or chance is None or not n_lists:
        return False
    return top1 - chance > TOP1_Z * (chance * (1 - chance) / n_lists) ** 0.5


def objective_verdict(name: str, policy: dict, base: dict, ranking: dict, ceiling: dict | None = None) -> dict:
    """One objective's checks; policy/base are controllability_report()['objectives'][name]."""
    vertex = ranking.get("policy", {}).get(name, {}).get(name, {})  # point "name" (the vertex), objective name
    chance = ranking.get("chance", {}).get(name, {}).get(name, {})
    top1, chance_top1 = vertex.get("top1"), chance.get("top1")
    base_rho = base["spearman"] if base else None
    return {
        "spearman": policy["spearman"],
        "spearman_ok": _at_least(policy["spearman"], MIN_SPEARMAN),
        "base_spearman": base_rho,
        "base_near_zero": None if base is None else (base_rho is None or abs(base_rho) <= MAX_BASE_SPEARMAN),
        "levels": [level["mean"] for level in policy["levels"]],
        "monotone": bool(policy["monotone"] and significant_rise(policy["levels"])),
        "top1_at_vertex": top1,
        "chance_top1": chance_top1,
        "top1_ok": beats_chance(top1, chance_top1, vertex.get("n_lists")),
        "data_ceiling_spearman": ceiling["spearman"] if ceiling else None,
    }


def judge(policy_gens, base_gens, points, rated: Sequence[str], ranking: dict, n_prompts: int,
          ceiling: dict | None = None) -> dict:
    """The verdict: per objective checks, and passed = every check of every objective holds."""
    policy_subset, judged_points = judged_subset(policy_gens, points)
    policy = controllability_report(policy_subset, judged_points, rated)["objectives"]
    base = (controllability_report(judged_subset(base_gens, points)[0], judged_points, rated)["objectives"]
            if base_gens else {})
    ceilings = (ceiling or {}).get("objectives", {})
    verdicts = {name: objective_verdict(name, policy[name], base.get(name), ranking, ceilings.get(name))
                for name in rated}
    # Without a baseline run (--no-baseline) base_near_zero is None: unchecked, not failed.
    checks = [v[key] for v in verdicts.values() for key in ("spearman_ok", "base_near_zero", "monotone", "top1_ok")
              if v[key] is not None]
    return {
        "thresholds": {"min_spearman": MIN_SPEARMAN, "max_base_spearman": MAX_BASE_SPEARMAN, "min_prompts": MIN_PROMPTS,
                       "rise_standard_errors": RISE_STANDARD_ERRORS, "top1_z": TOP1_Z,
                       "points": [p.name for p in judged_points]},
        "objectives": verdicts,
        "n_prompts": n_prompts,
        "enough_prompts": n_prompts >= MIN_PROMPTS,
        "passed": bool(verdicts) and n_prompts >= MIN_PROMPTS and all(c is True for c in checks),
    }
