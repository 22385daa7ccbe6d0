"""The Pareto view of a lambda sweep: which grid points are not dominated, and the volume they cover.

Each grid point of a run gives one mean score vector (score_1, ..., score_K) over the prompts. A
steerable model spreads these vectors out; a better one pushes them further up in every direction.

    pareto_mask(points)            (G,) True where no other point is >= everywhere and > somewhere
    hypervolume(points, reference) the volume of the union of boxes [reference, point] over the
                                   points that beat the reference on every objective

The reference is the base model's own mean score vector (averaged over the grid), so the volume
measures how much better-than-base trade-off space the run reaches. Scores are the raters' raw
units, so volumes compare runs of the same raters, not objectives with each other.

Written by hand: the exact volume of at most a few dozen points in K <= 4 dimensions is a loop
over the cells of the coordinate grid (G^K cells), which needs no library such as pymoo.
"""

from __future__ import annotations

from itertools import product

import numpy as np


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """(G, K) mean scores -> (G,) bool: the non-dominated points (higher is better on every axis)."""
    points = np.asarray(points, dtype=np.float64)
    keep = np.ones(len(points), dtype=bool)
    for i, p in enumerate(points):
        dominated_by = np.all(points >= p, axis=1) & np.any(points > p, axis=1)  # (G,)
        keep[i] = not dominated_by.any()
    return keep


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact volume dominated by `points` (G, K) and dominating `reference` (K,).

    The coordinates of the points above the reference cut each axis into intervals; a cell of that
    grid is covered when some point dominates its upper corner. Sum the covered cells' volumes.
    """
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    better = points[np.all(points > reference, axis=1)]  # (G', K) only these add volume
    if len(better) == 0:
        return 0.0
    edges = [np.unique(np.concatenate([[reference[k]], better[:, k]])) for k in range(points.shape[1])]  # K x (E_k,)
    volume = 0.0
    for cell in product(*(range(len(e) - 1) for e in edges)):
        upper = np.array([edges[k][i + 1] for k, i in enumerate(cell)])  # (K,)
        if np.any(np.all(better >= upper, axis=1)):
            volume += float(np.prod([edges[k][i + 1] - edges[k][i] for k, i in enumerate(cell)]))
    return volume


def pareto_report(policy_points: list[dict], base_points: list[dict], rated: list[str]) -> dict | None:
    """Front and hypervolume of a run's grid means against the base model's mean point.

    policy_points / base_points: controllability_report()["points"] (each with "mean_scores").
    """
    policy = [p for p in policy_points if p.get("mean_scores")]
    base = [p for p in base_points if p.get("mean_scores")]
    if not rated or not policy or not base:
        return None
    run = np.array([[p["mean_scores"][name] for name in rated] for p in policy])  # (G, K)
    reference = np.array([[p["mean_scores"][name] for name in rated] for p in base]).mean(axis=0)  # (K,)
    front = pareto_mask(run)
    return {
        "objectives": list(rated),
        "reference": dict(zip(rated, reference.tolist())),
        "reference_is": "the base model's mean score over the grid",
        "front": [p["name"] for p, on in zip(policy, front) if on],
        "hypervolume": hypervolume(run, reference),
        "points_above_reference": int(np.all(run > reference, axis=1).sum()),
    }
