"""Alternatives to the last answer: N candidates for one prompt, for the user to order.

    candidates = generate_alternatives(model, prompt, lam, n=3, mode=SEEDS, temperature=0.8, ...)

Two ways to make them differ:
  - SEEDS  ("same λ, different seeds"): every candidate at the current lambda, sampled with seeds
           seed, seed + 1, ...;
  - SPREAD ("spread over λ"): candidate 0 at the current lambda, candidate i > 0 halfway from it to
           the vertex of objective (i - 1) mod K, so the list shows what each slider would change.

Sampling needs a temperature above 0 to differ by seed; at 0 (greedy) the app's setting is raised
to ALT_TEMPERATURE, since greedy would give N copies of one answer. The same function serves the
app and the simulated user of the end-to-end test (bench/simulated_user.py), so what is trained on
is what the app would have recorded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

SEEDS = "same λ, different seeds"
SPREAD = "spread over λ"
MODES = (SEEDS, SPREAD)
MIN_N, MAX_N = 2, 4
ALT_TEMPERATURE = 0.8  # used when the app is set to greedy (temperature 0)


@dataclass
class Candidate:
    text: str
    seed: int
    lam: dict[str, float] | None  # the lambda it was generated at (None: a plain model)


def alternative_lambdas(model, lam: Mapping[str, float] | None, n: int, mode: str) -> list[dict | None]:
    """The lambda of each of the n candidates (validated by the model, as the sliders' are)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if not lam or mode == SEEDS or not getattr(model, "steerable", True):
        return [dict(lam) if lam else None] * n
    names = list(model.objectives)
    points = [dict(lam)]
    for i in range(n - 1):
        target = names[i % len(names)]
        points.append({k: 0.5 * v + (0.5 if k == target else 0.0) for k, v in lam.items()})
    return [model.validate_lambda(p) for p in points]


def iter_alternatives(model, prompt: Sequence[Mapping[str, str]], lam, *, n: int, mode: str = SEEDS,
                      temperature: float, top_p: float, max_tokens: int, strength: float | None = None,
                      seed: int = 0) -> Iterator[Candidate]:
    """The n candidate answers to `prompt` (plain messages ending with a user turn), one at a time
    (the app fills its columns as each is done)."""
    if not MIN_N <= n <= MAX_N:
        raise ValueError(f"n = {n}: alternatives come in {MIN_N} to {MAX_N}")
    settings = sampling_settings(temperature, top_p, max_tokens, strength)
    for i, point in enumerate(alternative_lambdas(model, lam, n, mode)):
        text = model.chat(list(prompt), point, stream=False, seed=seed + i, **settings).strip()
        yield Candidate(text or "(empty answer)", seed + i, point)


def generate_alternatives(model, prompt, lam, **kwargs) -> list[Candidate]:
    """All n candidates at once (iter_alternatives' keywords)."""
    return list(iter_alternatives(model, prompt, lam, **kwargs))


def sampling_settings(temperature: float, top_p: float, max_tokens: int, strength: float | None) -> dict:
    """The model.chat keywords for alternatives (a strength only for soup models, which take one)."""
    settings = {"temperature": float(temperature) if temperature > 0 else ALT_TEMPERATURE,
                "top_p": float(top_p), "max_tokens": int(max_tokens)}
    if strength is not None:
        settings["strength"] = float(strength)
    return settings


def last_exchange(turns: Sequence[Mapping]) -> int | None:
    """Index of the last user turn that an assistant answered (the prompt the alternatives answer), or None."""
    for i in range(len(turns) - 1, 0, -1):
        if turns[i]["role"] == "assistant" and turns[i - 1]["role"] == "user":
            return i - 1
    return None
