"""Issue 6's bar for "lambda really steers", checked on an evaluation's numbers.

Per rated objective k, on generations at the vertices and the centre only (the points issue 6
names; the full grid's midpoints are left out here):
  - spearman_ok:   Spearman(lambda_k, score_k) >= MIN_SPEARMAN for the trained run;
  - base_near_zero: the untrained base under the same headers has |Spearman| <= MAX_BASE_SPEARMAN;
  - monotone:      mean score_k never falls from lambda_k = 0 (other vertices) to lambda_k = 1;
  - top1_ok:       held-out ranking top-1 accuracy for k at k's vertex is above chance.
Plus enough_prompts: at least MIN_PROMPTS held-out prompts were generated for.
"""

from __future__ import annotations

from collections.abc import Sequence

from lwdpo_edge.evaluate.controllability import Generation, controllability_report
from lwdpo_edge.evaluate.grid import LambdaPoint

MIN_SPEARMAN = 0.6
MAX_BASE_SPEARMAN = 0.2  # "must stay near 0": our reading, stated in the report
MIN_PROMPTS = 30
JUDGED_KINDS = ("vertex", "centre")


def judged_subset(generations: Sequence[Generation], points: Sequence[LambdaPoint]):
    """Generations and points at the vertices and the centre only."""
    keep = [p for p in points if p.kind in JUDGED_KINDS]
    names = {p.name for p in keep}
    return [g for g in generations if g.point in names], keep


def _at_least(value, bound) -> bool:
    return value is not None and value >= bound


def objective_verdict(name: str, policy: dict, base: dict, ranking: dict) -> dict:
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
        "monotone": policy["monotone"],
        "top1_at_vertex": top1,
        "chance_top1": chance_top1,
        "top1_ok": top1 is not None and chance_top1 is not None and top1 > chance_top1,
    }


def judge(policy_gens, base_gens, points, rated: Sequence[str], ranking: dict, n_prompts: int) -> dict:
    """The verdict: per objective checks, and passed = every check of every objective holds."""
    policy_subset, judged_points = judged_subset(policy_gens, points)
    policy = controllability_report(policy_subset, judged_points, rated)["objectives"]
    base = controllability_report(judged_subset(base_gens, points)[0], judged_points, rated)["objectives"] if base_gens else {}
    verdicts = {name: objective_verdict(name, policy[name], base.get(name), ranking) for name in rated}
    # Without a baseline run (--no-baseline) base_near_zero is None: unchecked, not failed.
    checks = [v[key] for v in verdicts.values() for key in ("spearman_ok", "base_near_zero", "monotone", "top1_ok")
              if v[key] is not None]
    return {
        "thresholds": {"min_spearman": MIN_SPEARMAN, "max_base_spearman": MAX_BASE_SPEARMAN, "min_prompts": MIN_PROMPTS,
                       "points": [p.name for p in judged_points]},
        "objectives": verdicts,
        "n_prompts": n_prompts,
        "enough_prompts": n_prompts >= MIN_PROMPTS,
        "passed": bool(verdicts) and n_prompts >= MIN_PROMPTS and all(c is True for c in checks),
    }
