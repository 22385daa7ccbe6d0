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


def step_rng(seed: int, step: int, micro_step: int, rank: int) -> np.random.Generator:
    """The generator for one micro-batch: reproducible across interruptions and distinct per rank."""
    return np.random.default_rng([seed, step, micro_step, rank])


def build_sampler(name: str, objectives: Sequence[str], alpha: float, vertex_prob: float, fixed: str | None,
                  every: int = 20) -> LambdaSampler:
    if name == "performance":
        return PerformanceScheduler(objectives, every=every)
    if name == "dirichlet":
        return DirichletSampler(objectives, alpha, vertex_prob)
    if name == "uniform":  # uniform on the simplex = Dirichlet(1, ..., 1), no extra vertex mass
        return DirichletSampler(objectives, 1.0, 0.0)
    if name == "fixed":
        return FixedSampler(objectives, normalize_lambda(parse_lambda_arg(fixed or ""), objectives))
    raise ValueError(f"unknown lambda scheduler {name!r}; choose dirichlet, uniform, fixed or performance")


def simplex_anchors(objectives: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
    """Named probe points of the simplex: every vertex, every edge midpoint, the centre."""
    objectives = list(objectives)
    anchors = [(name, quantize_lambda({name: 1.0}, objectives)) for name in objectives]
    for i, a in enumerate(objectives):
        for b in objectives[i + 1:]:
            anchors.append((f"{a}+{b}", quantize_lambda({a: 1.0, b: 1.0}, objectives)))
    if len(objectives) > 2:
        anchors.append(("centre", quantize_lambda(dict.fromkeys(objectives, 1.0), objectives)))
    return anchors


class PerformanceScheduler(LambdaSampler):
    """The performance-driven stochastic lambda scheduler (paper sec. 'learned scheduler'), made a
    real online rule.

    State: a logit per anchor a_j (vertices, edge midpoints, centre; `simplex_anchors`).
    Draw:  anchor j ~ p = (1 - explore) * softmax(logits) + explore / J,
           then lambda ~ Dirichlet(1 + concentration * a_j)   (a cloud around the anchor).
    Input: every `every` optimizer steps the trainer measures L_j, the held-out listwise loss of
           the current policy at lambda = a_j (`update(losses)`).
    Update: priority_j = (L_j + gain * max(0, L_prev_j - L_j)) / mean_j(L_j)
                         -- weak regions (high loss) and regions improving most get mass;
            logits <- (1 - decay) * logits + step_size * (priority - mean(priority)).
    The state (logits, previous losses, update count) is logged and saved in every checkpoint.
    """

    def __init__(self, objectives, every: int = 20, step_size: float = 2.0, gain: float = 2.0,
                 decay: float = 0.1, explore: float = 0.2, concentration: float = 8.0):
        super().__init__(objectives)
        self.anchors = simplex_anchors(self.objectives)
        self.every, self.step_size, self.gain = every, step_size, gain
        self.decay, self.explore, self.concentration = decay, explore, concentration
        self.logits = np.zeros(len(self.anchors))
        self.previous_losses: np.ndarray | None = None
        self.updates = 0

    def probabilities(self) -> np.ndarray:
        soft = np.exp(self.logits - self.logits.max())
        return (1 - self.explore) * soft / soft.sum() + self.explore / len(self.anchors)

    def draw(self, n, rng):
        picks = rng.choice(len(self.anchors), size=n, p=self.probabilities())
        out = []
        for j in picks:
            alphas = 1.0 + self.concentration * np.array([self.anchors[j][1][name] for name in self.objectives])
            out.append(quantize_lambda(list(rng.dirichlet(alphas)), self.objectives))
        return out

    def update(self, losses: Sequence[float]) -> None:
        losses = np.asarray(losses, dtype=float)
        improvement = (np.zeros_like(losses) if self.previous_losses is None
                       else np.maximum(0.0, self.previous_losses - losses))
        priority = (losses + self.gain * improvement) / max(losses.mean(), 1e-8)
        self.logits = (1 - self.decay) * self.logits + self.step_size * (priority - priority.mean())
        self.previous_losses = losses
        self.updates += 1

    def state_dict(self) -> dict:
        return {"logits": self.logits.tolist(), "updates": self.updates,
                "previous_losses": None if self.previous_losses is None else self.previous_losses.tolist(),
                "anchors": [name for name, _ in self.anchors]}

    def load_state_dict(self, state: dict) -> None:
        if state.get("anchors") != [name for name, _ in self.anchors]:
            raise ValueError(f"scheduler state is for anchors {state.get('anchors')}, "
                             f"this run has {[n for n, _ in self.anchors]}")
        self.logits = np.asarray(state["logits"], dtype=float)
        self.updates = int(state["updates"])
        self.previous_losses = None if state["previous_losses"] is None else np.asarray(state["previous_losses"])
