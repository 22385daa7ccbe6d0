"""The lambda points evaluation is run at: vertices, edge midpoints, the uniform centre and, on the
dense grid, one interior point leaning towards each objective (3:1:...:1, e.g. 0.6 / 0.2 / 0.2).

Every point is quantised (`quantize_lambda`), i.e. it is exactly the lambda the header shows the
model, and it is that quantised lambda which is correlated with the measured scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from lwdpo_edge.lambdas import quantize_lambda

UNIFORM = "uniform"
_PRIORITY = {"vertex": 0, "centre": 1, "midpoint": 2, "interior": 3}  # which name a shared point keeps
GRID_KINDS = ("full", "vertices", "dense")
LEAN = 3.0  # an interior point weighs its objective 3x each other one: inside the simplex, off every edge


@dataclass(frozen=True)
class LambdaPoint:
    name: str  # "helpfulness" (a vertex), "helpfulness+conciseness" (an edge midpoint), "uniform"
    kind: str  # "vertex" | "midpoint" | "centre" | "interior"
    lam: dict[str, float]


def vertices(objectives: Sequence[str]) -> list[LambdaPoint]:
    return [LambdaPoint(name, "vertex", quantize_lambda({name: 1.0}, objectives)) for name in objectives]


def centre(objectives: Sequence[str]) -> LambdaPoint:
    return LambdaPoint(UNIFORM, "centre", quantize_lambda(dict.fromkeys(objectives, 1.0), objectives))


def midpoints(objectives: Sequence[str]) -> list[LambdaPoint]:
    return [LambdaPoint(f"{a}+{b}", "midpoint", quantize_lambda({a: 1.0, b: 1.0}, objectives))
            for a, b in combinations(objectives, 2)]


def interior(objectives: Sequence[str]) -> list[LambdaPoint]:
    """One point per objective, leaning towards it: "helpfulness-lean" = 0.6 / 0.2 / 0.2 for K = 3."""
    return [LambdaPoint(f"{name}-lean", "interior",
                        quantize_lambda({other: LEAN if other == name else 1.0 for other in objectives}, objectives))
            for name in objectives]


def lambda_grid(objectives: Sequence[str], kind: str = "full") -> list[LambdaPoint]:
    """'full': vertices, edge midpoints, centre; 'vertices': vertices and centre; 'dense': full plus
    the interior points (10 points for K = 3). A point listed twice is kept once (two objectives:
    the only edge midpoint is the centre, named "uniform")."""
    if kind not in GRID_KINDS:
        raise ValueError(f"unknown lambda grid {kind!r}; expected one of {GRID_KINDS}")
    points = vertices(objectives) + (midpoints(objectives) if kind != "vertices" else []) + [centre(objectives)]
    points += interior(objectives) if kind == "dense" else []
    unique: dict[tuple, LambdaPoint] = {}
    for point in points:
        key = tuple(point.lam[name] for name in objectives)
        if key not in unique or _PRIORITY[point.kind] < _PRIORITY[unique[key].kind]:
            unique[key] = point
    return list(unique.values())


def ranking_points(objectives: Sequence[str], kind: str = "vertices") -> list[LambdaPoint]:
    """Where held-out lists are ranked: the generation grid (each vertex and the uniform lambda by
    default; 'full' and 'dense' add the edge midpoints and interior points, where a mix is judged
    by its lambda-weighted top-1)."""
    return lambda_grid(objectives, kind)
