"""Your own slider end to end on the real default model (slow: ~40 min at 1 thread; run with -m slow).

A simulated user with a rule the project's raters do not know (prefers answers that give a number) makes
~50 judgements through the app's code path (bench/simulated_user.py); `lwdpo-edge train --feedback`
adds the `user` adapter. Greedy answers under the app's own decoding (repetition penalty 1.1), to every
prompt the user never saw (the held-out split and the training prompts after the last one asked, ~260),
must follow the rule more often at user = 1 than at user = 0 and than the base model, by a margin the
untrained model cannot show (the base model against itself differs by 0) and by more than twice the
standard error of the difference.

The difference is paired by prompt (all three settings answer the same prompts), its s.e. sd(d) / sqrt(n).
Under the penalty the effect over user = 0 is about 0.12 (docs/feedback.md): on the 58 held-out prompts
alone that is under two standard errors, so the test judges every prompt the user never saw. The
effect-size floor is 0.10; the significance rule is what separates an effect from noise. One thread, as
docs/feedback.md's command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

MARGIN = 0.10


@pytest.mark.slow
def test_a_simulated_user_gets_a_slider_that_follows_their_rule(tmp_path):
    import simulated_user

    result = simulated_user.main(["--run", str(tmp_path / "run"), "--judgements", "50", "--threads", "1"])
    assert 40 <= result["collect"]["judgements"] <= 60
    rates = {label: {k: v for k, v in r.items() if k in ("rate", "se")} for label, r in result["rates"].items()}
    for other in ("user = 0", "base model"):
        paired = result["paired"][f"user = 1 vs {other}"]
        assert paired["n"] == len(result["rates"]["user = 1"]["hits"]) > len(simulated_user.prompts("heldout"))
        assert paired["diff"] >= MARGIN, (paired, rates)
        assert paired["diff"] > 2 * paired["se"], (paired, rates)
    # the run's other objectives and the new slider are all in the contract the app reads
    assert (tmp_path / "run" / "adapters" / "user" / "adapter_config.json").is_file()
