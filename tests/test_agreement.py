"""lwdpo_edge/agreement.py: the rule every backend comparison uses (docs/testing.md)."""

from __future__ import annotations

import numpy as np
import pytest

from lwdpo_edge.agreement import MIN_MARGIN, ReferenceChoices, compare, compare_logits, top2_margin

REFERENCE = np.array([[5.0, 1.0, 0.0],    # confident: margin 4
                      [2.0, 1.96, 0.0],   # near tie: margin 0.04 (docs/testing.md's 'La' vs 'The')
                      [0.0, 0.0, 3.0]])   # confident: margin 3


def test_margin_is_the_gap_between_the_two_best_logits():
    assert top2_margin(REFERENCE) == pytest.approx([4.0, 0.04, 3.0])
    choices = ReferenceChoices.from_logits(REFERENCE)
    assert list(choices.top1) == [0, 0, 2] and list(choices.runner_up[:2]) == [1, 1]  # row 2: a tie for second
    assert choices.margin == pytest.approx([4.0, 0.04, 3.0])


def test_a_flip_on_a_near_tie_is_reported_but_not_a_failure():
    candidate = REFERENCE + np.array([[0, 0, 0], [0, 0.1, 0], [0, 0, 0]])  # position 1 flips by 0.06
    agreement = compare_logits(REFERENCE, candidate)
    assert agreement.ok and agreement.top1 == pytest.approx(2 / 3)
    assert list(agreement.confident) == [True, False, True] and agreement.max_margin_shift == pytest.approx(0.1)


def test_a_flip_where_the_reference_was_sure_fails_and_is_named():
    candidate = REFERENCE.copy()
    candidate[2] = [0.0, 4.0, 3.0]  # position 2 (margin 3) now picks token 1
    agreement = compare_logits(REFERENCE, candidate)
    assert not agreement.ok and agreement.confident_disagreements == [(2, 3.0)]
    assert "t=2 (margin 3.00)" in agreement.summary()


def test_a_common_offset_is_no_shift_and_the_threshold_is_stated():
    agreement = compare_logits(REFERENCE, REFERENCE + 7.5)  # llama.cpp and torch may differ by a constant
    assert agreement.ok and agreement.top1 == 1.0 and agreement.max_margin_shift == pytest.approx(0.0)
    assert MIN_MARGIN == 0.5  # docs/testing.md and the README state this number
    strict = compare(ReferenceChoices.from_logits(REFERENCE), REFERENCE + np.array([[0, 0, 0], [0, 0.1, 0], [0, 0, 0]]),
                     min_margin=0.01)
    assert not strict.ok  # with a threshold below the near tie, the same flip fails


def test_shapes_must_match():
    with pytest.raises(ValueError, match="logit shapes differ"):
        compare_logits(REFERENCE, REFERENCE[:2])
    with pytest.raises(ValueError, match="2 candidate positions vs 3 reference positions"):
        compare(ReferenceChoices.from_logits(REFERENCE), REFERENCE[:2])
