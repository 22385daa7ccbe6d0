"""lwdpo_edge/decoding.py: the repetition penalty every backend decodes with, one rule in one place."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lwdpo_edge.decoding import (REPETITION_WINDOW, RecentRepetitionPenalty, check_repetition_penalty, penalize_recent,
                                 transformers_processors)

LOGITS = np.array([2.0, -1.0, 0.5, 3.0, 0.0], dtype=np.float32)


def test_the_rule_divides_positive_and_multiplies_non_positive_logits_of_recent_tokens():
    out = penalize_recent(LOGITS, [0, 1, 0, 4], 1.25)
    np.testing.assert_allclose(out, [1.6, -1.25, 0.5, 3.0, 0.0])  # tokens 2 and 3 were not generated: unchanged
    assert out is not LOGITS and LOGITS[0] == 2.0  # a copy; the input is untouched
    torch.testing.assert_close(penalize_recent(torch.tensor(LOGITS), [0, 1, 0, 4], 1.25), torch.tensor(out))


def test_penalty_one_or_nothing_generated_is_the_identity():
    assert penalize_recent(LOGITS, [0, 1], 1.0) is LOGITS
    assert penalize_recent(LOGITS, [], 1.5) is LOGITS


def test_only_the_last_window_tokens_count():
    generated = [0] + [3] * REPETITION_WINDOW  # token 0 fell out of the window
    out = penalize_recent(LOGITS, generated, 2.0)
    assert out[0] == LOGITS[0] and out[3] == pytest.approx(1.5)


def test_the_transformers_processor_is_the_same_rule_per_row_and_spares_the_prompt():
    prompt = torch.tensor([[3, 3, 2], [2, 2, 2]])  # (B, T_prompt): token 3 and 2 in the prompt only
    generated = torch.tensor([[0, 1, 0], [4, 4, 1]])  # (B, T_new)
    scores = torch.tensor(np.stack([LOGITS, LOGITS]))  # (B, V)
    processed = RecentRepetitionPenalty(1.25, prompt.shape[1])(torch.cat([prompt, generated], 1), scores)
    for row in range(2):
        expected = penalize_recent(LOGITS, generated[row].tolist(), 1.25)
        np.testing.assert_allclose(processed[row].numpy(), expected)
    assert processed[0, 3] == LOGITS[3] and processed[1, 2] == LOGITS[2]  # prompt tokens are not penalised
    assert len(transformers_processors(1.0, 3)) == 0 and len(transformers_processors(1.1, 3)) == 1


@pytest.mark.parametrize("value", [0.9, 2.5, float("nan"), "x", None])
def test_a_bad_penalty_is_refused_naming_the_value(value):
    with pytest.raises(ValueError, match="repetition_penalty"):
        check_repetition_penalty(value)


def test_generate_with_the_processor_picks_the_penalised_argmax(tiny_llama_dir):
    """model.generate + RecentRepetitionPenalty == a hand loop taking argmax(penalize_recent(logits))."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    prompt = torch.tensor([[1, 5, 9, 200, 31]])
    with torch.no_grad():
        plain = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)[0, 5:].tolist()
        penalised = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0,
                                   logits_processor=transformers_processors(1.8, 5))[0, 5:].tolist()
        by_hand: list[int] = []
        for _ in range(12):
            logits = model(torch.cat([prompt, torch.tensor([by_hand], dtype=torch.long)], 1)).logits[0, -1]
            by_hand.append(int(penalize_recent(logits, by_hand, 1.8).argmax()))
    assert penalised == by_hand
    assert len(set(plain)) < len(plain) and penalised != plain  # the random tiny model repeats; the penalty acts
