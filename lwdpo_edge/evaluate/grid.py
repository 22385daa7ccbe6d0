"""The lambda points evaluation is run at: vertices, edge midpoints and the uniform centre.

Every point is quantised (`quantize_lambda`), i.e. it is exactly the lambda the header shows the
model, and it is that quantised lambda which is correlated with the measured scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from lwdpo_edge.lambdas import quantize_lambda

UNIFORM = "uniform"
_PRIORITY = {"vertex": 0, "centre": 1, "midpoint": 2}  # which name a shared point keeps


@dataclass(frozen=True)
class LambdaPoint:
    name: str  # "helpfulness" (a vertex), "helpfulness+conciseness" (an edge midpoint), "uniform"
    kind: str  # "vertex" | "midpoint" | "centre"
    lam: dict[str, float]


def vertices(objectives: Sequence[str]) -> list[LambdaPoint]:
    return [LambdaPoint(name, "vertex", quantize_lambda({name: 1.0}, objectives)) for name in objectives]


def centre(objectives: Sequence[str]) -> LambdaPoint:
    return LambdaPoint(UNIFORM, "centre", quantize_lambda(dict.fromkeys(objectives, 1.0), objectives))


def midpoints(objectives: Sequence[str]) -> list[LambdaPoint]:
    return [LambdaPoint(f"{a}+{b}", "midpoint", quantize_lambda({a: 1.0, b: 1.0}, objectives))
            for a, b in combinations(objectives, 2)]


def lambda_grid(objectives: Sequence[str], kind: str = "full") -> list[LambdaPoint]:
    """'full': vertices, edge midpoints, centre; 'vertices': vertices and centre. A point listed twice
    is kept once (two objectives: the only edge midpoint is the centre, named "uniform")."""
    if kind not in ("full", "vertices"):
        raise ValueError(f"unknown lambda grid {kind!r}; expected 'full' or 'vertices'")
    points = vertices(objectives) + (midpoints(objectives) if kind == "full" else []) + [centre(objectives)]
    unique: dict[tuple, LambdaPoint] = {}
    for point in points:
        key = tuple(point.lam[name] for name in objectives)
        if key not in unique or _PRIORITY[point.kind] < _PRIORITY[unique[key].kind]:
            unique[key] = point
    return list(unique.values())


def ranking_points(objectives: Sequence[str]) -> list[LambdaPoint]:
    """Where held-out lists are ranked: each objective's vertex and the uniform lambda."""
    return lambda_grid(objectives, "vertices")
