"""Issue 15 end to end on the real default model (slow: ~25 min on 2 cores; run with -m slow).

A simulated user with a rule the project's raters do not know (prefers answers that give a number) makes
~50 judgements through the app's code path (bench/simulated_user.py); `lwdpo-edge train --feedback`
adds the `user` adapter; on held-out prompts, greedy answers at user = 1 must follow the rule more often
than at user = 0 and than the base model, by a margin the untrained model cannot show (the base model
against itself differs by 0) and by more than twice the standard error of the difference.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

MARGIN = 0.15


def diff_se(a: dict, b: dict) -> float:
    return math.sqrt(a["se"] ** 2 + b["se"] ** 2)


@pytest.mark.slow
def test_a_simulated_user_gets_a_slider_that_follows_their_rule(tmp_path):
    import simulated_user

    result = simulated_user.main(["--run", str(tmp_path / "run"), "--judgements", "50", "--threads", "2"])
    assert 40 <= result["collect"]["judgements"] <= 60
    rates = result["rates"]
    at_one, at_zero, base = rates["user = 1"], rates["user = 0"], rates["base model"]
    for other in (at_zero, base):
        assert at_one["rate"] - other["rate"] >= MARGIN, rates
        assert at_one["rate"] - other["rate"] > 2 * diff_se(at_one, other), rates
    # the run's other objectives and the new slider are all in the contract the app reads
    assert (tmp_path / "run" / "adapters" / "user" / "adapter_config.json").is_file()
