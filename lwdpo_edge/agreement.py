"""When do two backends agree? Next-token argmax compared only where the reference is sure.

Two correct computations of one model (fp32 in torch, f16 in llama.cpp, llama.cpp built with AVX-512
or with AVX2 only) add their floats in a different order, so their logits differ a little. Where
the reference's best two tokens are closer than that, which one wins is decided by the CPU's SIMD
kernels, and free-running greedy text then diverges for good (docs/testing.md: 'La' 25.085 vs 'The' 25.042).
So two backends are compared teacher-forced, over one fixed token sequence, and only where the
reference has a clear winner:

    margin_t   = top-1 minus top-2 logit of the reference at position t
    confident  = margin_t >= min_margin
    agree      = argmax(candidate_t) == argmax(reference_t) at every confident position

Teacher forcing means one coin-toss position cannot change every later one. The threshold is an
honest statement: "a backend may flip a token whose two best logits are within min_margin".
MIN_MARGIN (0.5 logits) is 22x the largest margin shift measured between an f16 GGUF in llama.cpp
and the fp32 model in torch (0.022 over 980 answer positions of the default model, with AVX-512 and
with AVX2 only: bench/backend_agreement.py, docs/testing.md), and 12x the 0.04 near tie that flipped
on the AVX2 machine. It is for exports that keep the weights (f16 / fp32): a quantised file moves
margins by up to 0.9 (Q4_1 vs its own dequantised weights), so those are judged by a top-1 floor.

Pure numpy: logits in, a report out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_MARGIN = 0.5  # logits; see the module docstring


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """top-1 minus top-2 logit at each position.  (T, V) -> (T,)."""
    return ReferenceChoices.from_logits(logits).margin


@dataclass
class ReferenceChoices:
    """What a comparison needs of the reference's (T, V) logits: three (T,) arrays, not T x V floats."""

    top1: np.ndarray  # (T,) argmax
    runner_up: np.ndarray  # (T,) the second-best token
    margin: np.ndarray  # (T,) top-1 minus top-2 logit

    @classmethod
    def from_logits(cls, logits: np.ndarray) -> "ReferenceChoices":
        logits = np.asarray(logits, dtype=np.float64)
        rows = np.arange(len(logits))
        top1 = logits.argmax(-1)  # argmax's own tie rule, as the candidate side uses
        best_two = np.argpartition(logits, -2, axis=-1)[:, -2:]  # (T, 2), in either order
        runner_up = np.where(best_two[:, 1] == top1, best_two[:, 0], best_two[:, 1])
        return cls(top1, runner_up, logits[rows, top1] - logits[rows, runner_up])


@dataclass
class Agreement:
    """Teacher-forced comparison of a candidate's logits with a reference's, position by position."""

    min_margin: float
    margins: np.ndarray = field(repr=False)  # (T,) the reference's top-2 margin
    agree: np.ndarray = field(repr=False)  # (T,) bool: same argmax
    # max over positions of |change of (top-1 minus runner-up logit)|: a flip needs shift > margin
    max_margin_shift: float

    @property
    def positions(self) -> int:
        return len(self.margins)

    @property
    def confident(self) -> np.ndarray:
        return self.margins >= self.min_margin  # (T,) bool

    @property
    def top1(self) -> float:
        """Share of all positions with the same argmax (knife-edge ones included)."""
        return float(self.agree.mean()) if self.positions else 1.0

    @property
    def confident_disagreements(self) -> list[tuple[int, float]]:
        """(position, reference margin) where the reference was sure and the candidate chose otherwise."""
        return [(int(t), float(self.margins[t])) for t in np.flatnonzero(self.confident & ~self.agree)]

    @property
    def ok(self) -> bool:
        return not self.confident_disagreements

    def summary(self) -> str:
        flips = ", ".join(f"t={t} (margin {m:.2f})" for t, m in self.confident_disagreements) or "none"
        smallest = f"{self.margins.min():.3f}" if self.positions else "-"
        return (f"top-1 agreement {self.top1:.1%} over {self.positions} positions; {int(self.confident.sum())} with "
                f"reference margin >= {self.min_margin:g}, disagreements there: {flips}; smallest margin "
                f"{smallest}; max margin shift {self.max_margin_shift:.4f}")


def compare(reference: ReferenceChoices, candidate_logits: np.ndarray, min_margin: float = MIN_MARGIN) -> Agreement:
    """The candidate's (T, V) logits against the reference's choices at the same T positions."""
    candidate = np.asarray(candidate_logits, dtype=np.float64)
    if candidate.shape[0] != len(reference.top1):
        raise ValueError(f"{candidate.shape[0]} candidate positions vs {len(reference.top1)} reference positions")
    rows = np.arange(len(reference.top1))
    # (T,) how far the candidate moved the reference's deciding gap; a common offset of all logits is no shift
    shift = np.abs(candidate[rows, reference.top1] - candidate[rows, reference.runner_up] - reference.margin)
    return Agreement(min_margin, reference.margin, candidate.argmax(-1) == reference.top1,
                     float(shift.max()) if len(shift) else 0.0)


def compare_logits(reference: np.ndarray, candidate: np.ndarray, min_margin: float = MIN_MARGIN) -> Agreement:
    """Two (T, V) logit arrays computed teacher-forced over the same tokens."""
    if np.shape(reference) != np.shape(candidate):
        raise ValueError(f"logit shapes differ: reference {np.shape(reference)}, candidate {np.shape(candidate)}")
    return compare(ReferenceChoices.from_logits(reference), candidate, min_margin)


def backend_agreement(reference, candidate, messages, lam=None, *, max_tokens: int = 24,
                      min_margin: float = MIN_MARGIN, **mix) -> Agreement:
    """Two loaded models (lwdpo_edge.load_model) compared on one conversation: the reference's greedy
    answer is the fixed continuation; both score it teacher-forced (ChatModel.next_token_logits).
    `mix` passes `strength=` to soup models."""
    answer = reference.chat(messages, lam, max_tokens=max_tokens, repetition_penalty=1.0, **mix)  # plain argmax path
    continuation = reference.encode(answer)
    return compare_logits(reference.next_token_logits(messages, continuation, lam, **mix),
                          candidate.next_token_logits(messages, continuation, lam, **mix), min_margin)
