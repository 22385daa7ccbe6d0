"""Lambda: a weight vector on the simplex over a run's named objectives (docs/design.md, section 4).

This module owns the lambda header contract that every stage shares:

  [lambda] helpfulness=0.50 conciseness=0.30 readability=0.20 | helpfulness medium, conciseness medium, readability low

`format_lambda_header` is the only writer and `parse_lambda_header` the only reader. Values are
quantised to hundredths that sum to exactly 1 (largest-remainder rounding), so
`parse(format(lam))` is the quantised lambda and `format(parse(header)) == header` exactly.
Training uses the quantised lambda both in the header and in the loss, so what the model reads is
what it was trained on.

After " | " the same weights are spelled in words for a small model: objectives with a non-zero
weight, heaviest first (ties in objective order), each with a coarse level (`weight_level`). A
pilot showed a 135M model does not learn to read headers that differ only in a digit token
(docs/experiments.md, the pilot); the words put the objective that matters most right after the bar, as a
whole word. They carry no information beyond the numbers, so the round trip stays exact; a
hand-written header without them is accepted, one whose words contradict its numbers is not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

HEADER_MARKER = "[lambda]"
HEADER_FORMAT = "[lambda] {name}={value:.2f} ... | {name} {level}, ..."  # documented in lwdpo.json / GGUF metadata
WORDS_SEPARATOR = " | "
# Coarse levels on hundredths: (lowest hundredths, word). 0 is never spelled (the objective is left out).
LEVELS = ((100, "max"), (60, "high"), (30, "medium"), (1, "low"))
DEFAULT_OBJECTIVES = ("helpfulness", "conciseness", "readability")
_GRID = 100  # hundredths: the header prints two decimals

# A marker anywhere in user text, tolerant of case and inner spaces ("[ LAMBDA ]").
_MARKER_RE = re.compile(r"\[\s*lambda\s*\]", re.IGNORECASE)
_PAIR_RE = re.compile(r"([A-Za-z_][\w-]*)=([0-9]*\.?[0-9]+)")


class LambdaError(ValueError):
    """A lambda that is not a valid point on the objectives' simplex."""


def normalize_lambda(lam: Mapping[str, float] | Sequence[float], objectives: Sequence[str]) -> dict[str, float]:
    """Validate lambda against `objectives` and scale it to sum to 1.

    Accepts a mapping (missing objectives count as 0) or a sequence in objective order.
    Negative, NaN/inf, unknown names, a wrong length or an all-zero vector raise LambdaError.
    """
    objectives = list(objectives)
    if isinstance(lam, Mapping):
        unknown = [name for name in lam if name not in objectives]
        if unknown:
            raise LambdaError(f"unknown objective(s) {unknown} in lambda; this model knows {objectives}")
        values = [lam.get(name, 0.0) for name in objectives]
    else:
        values = list(lam)
        if len(values) != len(objectives):
            raise LambdaError(f"lambda has {len(values)} values but there are {len(objectives)} objectives "
                              f"{objectives}")
    for name, value in zip(objectives, values):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise LambdaError(f"lambda[{name}] = {value!r} is not a number") from None
        if not math.isfinite(value):
            raise LambdaError(f"lambda[{name}] = {value} is not finite")
        if value < 0:
            raise LambdaError(f"lambda[{name}] = {value} is negative; lambda must lie on the simplex")
    total = float(sum(float(v) for v in values))
    if total <= 0:
        raise LambdaError(f"lambda {dict(zip(objectives, values))} sums to 0; give at least one positive weight")
    return {name: float(v) / total for name, v in zip(objectives, values)}


def quantize_lambda(lam: Mapping[str, float] | Sequence[float], objectives: Sequence[str]) -> dict[str, float]:
    """Normalise, then round to hundredths that still sum to exactly 1 (largest remainder)."""
    weights = normalize_lambda(lam, objectives)
    scaled = [weights[name] * _GRID for name in objectives]
    units = [math.floor(x) for x in scaled]
    # Hand out the missing hundredths to the largest remainders, ties to the earlier objective.
    order = sorted(range(len(scaled)), key=lambda i: (-(scaled[i] - units[i]), i))
    for i in order[: _GRID - sum(units)]:
        units[i] += 1
    return {name: u / _GRID for name, u in zip(objectives, units)}


def weight_level(hundredths: int) -> str:
    """The word for a weight of `hundredths`/100 (> 0): low, medium, high or max."""
    return next(word for lowest, word in LEVELS if hundredths >= lowest)


def lambda_in_words(weights: Mapping[str, float], objectives: Sequence[str]) -> str:
    """'conciseness max' / 'readability medium, helpfulness medium, conciseness medium' (quantised weights)."""
    units = {name: round(weights[name] * _GRID) for name in objectives}
    # stable: ties keep objective order
    order = sorted((name for name in objectives if units[name] > 0), key=lambda name: -units[name])
    return ", ".join(f"{name} {weight_level(units[name])}" for name in order)


def format_lambda_header(lam: Mapping[str, float], objectives: Sequence[str] | None = None) -> str:
    """The canonical header line for lambda, objectives in a fixed order (the run's order).

    >>> format_lambda_header({"helpfulness": 1, "conciseness": 1, "readability": 2})
    '[lambda] helpfulness=0.25 conciseness=0.25 readability=0.50 | readability medium, helpfulness low, conciseness low'
    """
    objectives = list(objectives) if objectives is not None else list(lam)
    weights = quantize_lambda(lam, objectives)
    pairs = " ".join(f"{name}={weights[name]:.2f}" for name in objectives)
    return f"{HEADER_MARKER} {pairs}{WORDS_SEPARATOR}{lambda_in_words(weights, objectives)}"


def parse_lambda_header(text: str, objectives: Sequence[str] | None = None) -> dict[str, float]:
    """Read the lambda header at the start of `text` (a system message) back into a dict.

    Raises LambdaError when `text` does not start with a header, or when a pair is malformed.
    With `objectives`, names are checked and the result is put in that order. The result is
    normalised and quantised to hundredths, like everything `format_lambda_header` writes.
    """
    first_line = text.lstrip().split("\n", 1)[0].strip()
    if not first_line.startswith(HEADER_MARKER):
        raise LambdaError(f"no lambda header: expected a first line starting with {HEADER_MARKER!r}")
    numbers, bar, words = first_line[len(HEADER_MARKER):].partition(WORDS_SEPARATOR.strip())
    body = numbers.split()
    lam: dict[str, float] = {}
    for token in body:
        match = _PAIR_RE.fullmatch(token)
        if match is None:
            raise LambdaError(f"malformed lambda header item {token!r}; expected name=0.25")
        lam[match.group(1)] = float(match.group(2))
    if not lam:
        raise LambdaError("lambda header has no objective=value items")
    # Quantise: a header holds hundredths, and float division must not turn 0.58 into 0.5800000000000001.
    weights = quantize_lambda(lam, objectives if objectives is not None else list(lam))
    expected = lambda_in_words(weights, list(lam))  # words follow the header's own order
    if bar and " ".join(words.split()) != expected:
        raise LambdaError(f"lambda header words {words.strip()!r} do not match its weights (expected {expected!r})")
    return weights


def split_lambda_header(system_text: str) -> tuple[dict[str, float] | None, str]:
    """(lambda or None, the rest of the system message after the header line)."""
    try:
        lam = parse_lambda_header(system_text)
    except LambdaError:
        return None, system_text
    rest = system_text.lstrip().split("\n", 1)
    return lam, rest[1] if len(rest) > 1 else ""


def neutralize_header_marker(text: str) -> str:
    """Defuse any lambda marker in user-supplied text so it cannot override the app's lambda."""
    return _MARKER_RE.sub("(lambda)", text)


def system_message_with_lambda(lam: Mapping[str, float], objectives: Sequence[str], system_prompt: str = "") -> str:
    """Header first, then the (neutralised) user-supplied system prompt, if any."""
    header = format_lambda_header(lam, objectives)
    system_prompt = neutralize_header_marker(system_prompt.strip())
    return f"{header}\n{system_prompt}" if system_prompt else header


def sample_lambda(
    objectives: Sequence[str],
    rng: np.random.Generator,
    alpha: float | Sequence[float] = 1.0,
    vertex_prob: float = 0.0,
) -> dict[str, float]:
    """One lambda: with probability `vertex_prob` a vertex (one objective only), else Dirichlet(alpha).

    The result is quantised, i.e. exactly what the header will show.
    """
    k = len(objectives)
    if rng.random() < vertex_prob:
        weights = np.zeros(k)
        weights[rng.integers(k)] = 1.0
    else:
        alphas = np.full(k, float(alpha)) if np.isscalar(alpha) else np.asarray(alpha, dtype=float)
        weights = rng.dirichlet(alphas)
    return quantize_lambda(list(weights), objectives)


def parse_lambda_arg(text: str) -> dict[str, float]:
    """Lambda typed by a user on a command line: 'helpfulness=0.5,conciseness=0.5' (also spaces)."""
    lam: dict[str, float] = {}
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise LambdaError(f"lambda item {item!r} is not name=value")
        try:
            lam[name.strip()] = float(value)
        except ValueError:
            raise LambdaError(f"lambda[{name.strip()}] = {value!r} is not a number") from None
    if not lam:
        raise LambdaError("empty lambda; expected e.g. 'helpfulness=0.5,conciseness=0.5'")
    return lam


BALANCED = "balanced"
DEFAULT = "default"


def preset_lambdas(objectives: Sequence[str],
                   lambda_default: Mapping[str, float] | None = None) -> dict[str, dict[str, float]]:
    """The named lambdas every stage offers (the app's preset buttons, `export --preset`), quantised:
    each objective's vertex under its own name, "balanced" (uniform) and "default" (the run's default
    lambda; uniform when it has none)."""
    table = {name: quantize_lambda({name: 1.0}, objectives) for name in objectives}
    table[BALANCED] = quantize_lambda(dict.fromkeys(objectives, 1.0), objectives)
    table[DEFAULT] = quantize_lambda(lambda_default or dict.fromkeys(objectives, 1.0), objectives)
    return table


def lambda_slug(lam: Mapping[str, float], objectives: Sequence[str]) -> str:
    """A file-name-safe name for a lambda in hundredths, zero weights left out:
    {helpfulness: 0.2, conciseness: 0.8, readability: 0} -> 'helpfulness20-conciseness80'."""
    lam = quantize_lambda(lam, objectives)
    return "-".join(f"{name}{round(lam[name] * _GRID)}" for name in objectives if lam[name] > 0)
