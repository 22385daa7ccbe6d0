"""Lambda samplers: which lambda each training example is scored under.

Every draw is a pure function of (seed, optimizer step, micro-batch index, rank), so a resumed
run draws exactly the lambdas an uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lwdpo_edge.lambdas import normalize_lambda, parse_lambda_arg, quantize_lambda, sample_lambda


class LambdaSampler:
    """Base: `draw(n, rng)` returns n quantised lambdas (dicts in objective order)."""

    def __init__(self, objectives: Sequence[str]):
        self.objectives = list(objectives)

    def draw(self, n: int, rng: np.random.Generator) -> list[dict[str, float]]:
        raise NotImplementedError

    # Samplers with state (the performance scheduler) checkpoint it through these two.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class DirichletSampler(LambdaSampler):
    """Dirichlet(alpha) draws, with probability vertex_prob a random vertex instead."""

    def __init__(self, objectives, alpha: float = 1.0, vertex_prob: float = 0.3):
        super().__init__(objectives)
        self.alpha, self.vertex_prob = alpha, vertex_prob

    def draw(self, n, rng):
        return [sample_lambda(self.objectives, rng, self.alpha, self.vertex_prob) for _ in range(n)]


class FixedSampler(LambdaSampler):
    """Always the same lambda (uniform when none is given)."""

    def __init__(self, objectives, lam: dict[str, float] | None = None):
        super().__init__(objectives)
        self.lam = quantize_lambda(lam or dict.fromkeys(self.objectives, 1.0), self.objectives)

    def draw(self, n, rng):
        return [dict(self.lam) for _ in range(n)]


def distinct_lambdas(sampler: LambdaSampler, n: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """n lambdas for one prompt; when n >= 2 the first two are different vertices, so every such
    step contrasts two headers that ask for opposite things on the same list."""
    if n == 1 or len(sampler.objectives) < 2:
        return sampler.draw(n, rng)
    first, second = rng.choice(len(sampler.objectives), size=2, replace=False)
    vertices = [quantize_lambda({sampler.objectives[i]: 1.0}, sampler.objectives) for i in (first, second)]
    return vertices + sampler.draw(n - 2, rng)


def step_rng(seed: int, step: int, micro_step: int, rank: int) -> np.random.Generator:
    """The generator for one micro-batch: reproducible across interruptions and distinct per rank."""
    return np.random.default_rng([seed, step, micro_step, rank])


def build_sampler(name: str, objectives: Sequence[str], alpha: float, vertex_prob: float, fixed: str | None) -> LambdaSampler:
    if name == "dirichlet":
        return DirichletSampler(objectives, alpha, vertex_prob)
    if name == "uniform":  # uniform on the simplex = Dirichlet(1, ..., 1), no extra vertex mass
        return DirichletSampler(objectives, 1.0, 0.0)
    if name == "fixed":
        return FixedSampler(objectives, normalize_lambda(parse_lambda_arg(fixed or ""), objectives))
    raise ValueError(f"unknown lambda sampler {name!r}; choose dirichlet, uniform or fixed")
