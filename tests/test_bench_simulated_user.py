"""bench/simulated_user.py's rule, the simulated user's order and the paired statistic the slow test judges."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import simulated_user  # noqa: E402


def test_the_rule_and_the_simulated_order():
    assert simulated_user.rule_holds("Step 1: boil water") and not simulated_user.rule_holds("no figures here")
    assert simulated_user.simulated_ranks(["in 1999", "never", "2 cups"]) == [1, 2, 1]
    assert simulated_user.simulated_ranks(["a", "b"]) is None  # all agree: no preference
    assert simulated_user.simulated_ranks(["1", "2"]) is None


def test_paired_difference_values():
    # 10 prompts: 4 gain the rule, 1 loses it, 5 agree -> d = (+1 x4, -1, 0 x5), mean 0.3
    a = [True] * 4 + [False] + [True] * 3 + [False] * 2
    b = [False] * 4 + [True] + [True] * 3 + [False] * 2
    p = simulated_user.paired_difference(a, b)
    d = [1] * 4 + [-1] + [0] * 5
    var = sum((x - 0.3) ** 2 for x in d) / 9
    assert p == {"diff": 0.3, "se": round(math.sqrt(var / 10), 3), "n": 10, "gained": 4, "lost": 1}


def test_pairing_is_tighter_than_the_unpaired_se_when_settings_agree_mostly():
    # 58 prompts: 14 gain, 0 lose, the rest agree (10 with a digit both ways)
    a = [True] * 14 + [True] * 10 + [False] * 34
    b = [False] * 14 + [True] * 10 + [False] * 34
    paired = simulated_user.paired_difference(a, b)
    pa, pb = sum(a) / 58, sum(b) / 58
    unpaired = math.sqrt(pa * (1 - pa) / 58 + pb * (1 - pb) / 58)
    assert paired["diff"] == round(pa - pb, 3) and paired["se"] < 0.75 * unpaired


def test_a_setting_against_itself_differs_by_zero_and_bad_input_is_refused():
    hits = [True, False, True, True]
    assert simulated_user.paired_difference(hits, hits) == {"diff": 0.0, "se": 0.0, "n": 4, "gained": 0, "lost": 0}
    with pytest.raises(ValueError, match="same >= 2 prompts"):
        simulated_user.paired_difference([True], [False, True])


def test_paired_report_names_each_comparison():
    rates = {"user = 1": {"hits": [True, True, False]}, "user = 0": {"hits": [False, True, False]},
             "base model": {"hits": [False, False, False]}}
    report = simulated_user.paired_report(rates)
    assert set(report) == {"user = 1 vs user = 0", "user = 1 vs base model"}
    assert report["user = 1 vs base model"]["gained"] == 2


def test_unseen_prompts_are_the_heldout_split_and_the_training_prompts_never_asked(tmp_path):
    train, heldout = simulated_user.prompts("train"), simulated_user.prompts("heldout")
    log = tmp_path / "feedback.jsonl"
    rows = [{"prompt": [{"role": "user", "content": train[i]}]} for i in (3, 10)]  # 0-10 asked, 3 and 10 judged
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    unseen, n_heldout = simulated_user.unseen_prompts(log)
    assert n_heldout == len(heldout) == 58 and unseen[:n_heldout] == heldout
    assert unseen[n_heldout:] == train[11:]
    assert not set(unseen) & set(train[:11])


def test_paired_report_over_the_first_prompts():
    rates = {"user = 1": {"hits": [True, True, False, True]}, "user = 0": {"hits": [False, True, False, False]}}
    assert simulated_user.paired_report(rates)["user = 1 vs user = 0"]["diff"] == 0.5
    assert simulated_user.paired_report(rates, first=2)["user = 1 vs user = 0"] == simulated_user.paired_difference(
        [True, True], [False, True])
