"""How every backend decodes an answer, set once: the repetition penalty that keeps a small model out of loops.

    REPETITION_PENALTY   the default everywhere: eval, `generate`, the runtime (transformers, GGUF, ONNX),
                         the chat app and `serve` (1.0 switches it off: plain greedy / sampling)
    REPETITION_WINDOW    how many of the most recent *generated* tokens it looks at

The rule is CTRL's (Keskar et al., 2019) as llama.cpp applies it: for each distinct token among the
last REPETITION_WINDOW generated tokens, a logit > 0 is divided by the penalty and a logit <= 0 is
multiplied by it, before greedy choice or sampling. The prompt is not penalised: an answer should
be free to use the question's words (the helpfulness rater rewards exactly that).

llama.cpp does this itself (its penalties sampler sees only sampled tokens; the GGUF backend sets
the window with `last_n_tokens_size`). transformers' RepetitionPenaltyLogitsProcessor penalises the
prompt too and has no window, so the transformers paths use `RecentRepetitionPenalty` below, and the
transformers and ONNX runtime loops call `penalize_recent`: the same rule, written once here.
Why a penalty at all: greedy answers of the 135M soup repeat a 4-gram three times in 12% of answers
(37% at the readability vertex) without one (docs/experiments.md, "Repetition penalty").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

REPETITION_PENALTY = 1.1  # measured choice: docs/experiments.md "Repetition penalty"
REPETITION_WINDOW = 64  # llama.cpp's default penalty window
MAX_REPETITION_PENALTY = 2.0  # far past where answers lose common words; beyond it is a typo


def check_repetition_penalty(value) -> float:
    """The penalty as a float in [1, MAX_REPETITION_PENALTY]; ValueError naming the value otherwise."""
    try:
        penalty = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"repetition_penalty = {value!r}; "
                         f"expected a number from 1 (off) to {MAX_REPETITION_PENALTY:g}") from None
    if not 1.0 <= penalty <= MAX_REPETITION_PENALTY:  # also rejects NaN
        raise ValueError(f"repetition_penalty = {value!r}; "
                         f"expected a number from 1 (off) to {MAX_REPETITION_PENALTY:g}")
    return penalty


def penalize_recent(logits, generated: Sequence[int], penalty: float, window: int = REPETITION_WINDOW):
    """`logits` (V,), a numpy array or a torch tensor, with the rule above applied to the last `window`
    generated tokens: a new array of the same kind; `logits` itself at penalty 1 or before any token."""
    recent = sorted({int(t) for t in list(generated)[-window:]})
    if penalty == 1.0 or not recent:
        return logits
    if isinstance(logits, np.ndarray):
        out, picked = logits.copy(), logits[recent]
        out[recent] = np.where(picked > 0, picked / penalty, picked * penalty)
        return out
    import torch  # torch: heavy, not needed for --help

    out, picked = logits.clone(), logits[recent]
    out[recent] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return out


def transformers_processors(penalty: float, prompt_length: int):
    """A LogitsProcessorList for `model.generate` applying the rule to the tokens after `prompt_length`
    (the padded prompt width of a left-padded batch); empty at penalty 1."""
    from transformers import LogitsProcessorList  # transformers: heavy, not needed for --help

    return LogitsProcessorList([RecentRepetitionPenalty(penalty, prompt_length)] if penalty != 1.0 else [])


class RecentRepetitionPenalty:
    """transformers LogitsProcessor form of `penalize_recent` for a batch: (B, T) ids, (B, V) scores."""

    def __init__(self, penalty: float, prompt_length: int, window: int = REPETITION_WINDOW):
        self.penalty, self.prompt_length, self.window = check_repetition_penalty(penalty), int(prompt_length), window

    def __call__(self, input_ids, scores):
        import torch  # torch: heavy, not needed for --help

        generated = input_ids[:, self.prompt_length:]  # (B, T_new): left padding ends every prompt here
        if generated.shape[1] == 0:
            return scores
        return torch.stack([penalize_recent(row_scores, row.tolist(), self.penalty, self.window)
                            for row_scores, row in zip(scores, generated)])  # (B, V), one rule per row
