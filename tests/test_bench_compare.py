"""bench/compare.py's pure parts: the pairwise baseline's pairs, the table, arm a's run folder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lwdpo_edge.data.schema import ListwiseRecord, Response
from train_helpers import write_dataset

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


compare = _load("compare")
common = sys.modules["_common"]  # compare.py put bench/ on sys.path and imported it


def _record(*scores: tuple) -> ListwiseRecord:
    """Candidates named A, B, C... scored on (helpfulness, conciseness); None = missing."""
    responses = [Response(chr(65 + i), {"helpfulness": h, "conciseness": c}) for i, (h, c) in enumerate(scores)]
    return ListwiseRecord([{"role": "user", "content": "q?"}], responses)


# ----------------------------------------------------------------------------- pairs


def test_best_vs_worst_is_by_mean_zscore_not_raw_sum():
    # raw sums A=11, B=7, C=3 would pick A; per-objective z-scores put B first:
    # helpfulness z = (-1.22, 1.22, 0), conciseness z = (1.34, -0.27, -1.07) -> means (0.06, 0.48, -0.53)
    record = _record((1, 10), (3, 4), (2, 1))
    assert common.pair_indices(record, "best-vs-worst") == [(1, 2)]
    table = np.array([[1, 10], [3, 4], [2, 1]], dtype=float)
    expected = ((table - table.mean(0)) / table.std(0)).mean(1)
    assert np.allclose(common.mean_z(record), expected)


def test_missing_score_is_left_out_of_the_mean():
    # conciseness missing for A: A's mean is its helpfulness z alone (the best), C has the lowest mean
    record = _record((3, None), (1, 5), (2, 0))
    z = common.mean_z(record)
    assert z[0] == pytest.approx(1.2247, abs=1e-4)
    assert common.pair_indices(record, "best-vs-worst") == [(0, 2)]


def test_tied_list_gives_no_pair_and_other_modes_count_pairs():
    assert common.pair_indices(_record((1, 1), (1, 1), (1, 1)), "best-vs-worst") == []
    record = _record((1, 10), (3, 4), (2, 1), (0, 0))
    all_pairs = common.pair_indices(record, "all-pairs")
    z = common.mean_z(record)
    assert len(all_pairs) == 6 and all(z[a] >= z[b] for a, b in all_pairs)
    assert [a for a, _ in common.pair_indices(record, "best-vs-rest")] == [1, 1, 1]
    with pytest.raises(ValueError, match="unknown pair mode"):
        common.pair_indices(record, "best-of-three")


def test_trl_rows_hold_the_chosen_and_rejected_texts():
    rows = common.trl_rows([_record((1, 10), (3, 4), (2, 1))], "best-vs-worst")
    assert rows == [{"prompt": [{"role": "user", "content": "q?"}],
                     "chosen": [{"role": "assistant", "content": "B"}],
                     "rejected": [{"role": "assistant", "content": "C"}]}]


# ----------------------------------------------------------------------------- table


def _fake_report(top1: dict, spearman: dict | None, objectives=("helpfulness", "conciseness")) -> dict:
    metrics = lambda value: {"top1": value, "kendall_tau": value / 2, "ndcg": 0.9, "n_lists": 4}  # noqa: E731
    policy = {point: {o: metrics(top1[o] if point == o else 0.0) for o in objectives}
              for point in (*objectives, "uniform")}
    chance = {point: {o: metrics(0.25) for o in objectives} for point in (*objectives, "uniform")}
    control = ({"objectives": {o: {"spearman": spearman[o], "spearman_within_prompt": None} for o in objectives}}
               if spearman else {})
    return {"objectives": list(objectives), "run": {"conditioning": "header" if spearman else "none"},
            "ranking": {"policy": policy, "chance": chance}, "data": {"n_lists": 4}, "prompts": {"n": 2},
            "controllability": {"policy": control} if spearman else {}}


def test_arm_result_reads_vertex_accuracy_and_costs():
    bench = {"seconds": 30.0, "steps": 3, "prompts_per_step": 2, "peak_rss_mb": 1500.0}
    row = compare.arm_result(compare.ARMS["c"], bench, _fake_report({"helpfulness": 0.75, "conciseness": 0.5},
                                                                     {"helpfulness": 0.8, "conciseness": None}))
    assert row["top1"] == {"helpfulness": 0.75, "conciseness": 0.5}  # at each objective's own vertex
    assert row["kendall_tau"] == {"helpfulness": 0.375, "conciseness": 0.25}
    assert row["spearman"] == {"helpfulness": 0.8, "conciseness": None}
    assert row["s_per_step"] == 10.0 and row["s_per_prompt"] == 5.0 and row["peak_rss_mb"] == 1500.0
    unconditioned = compare.arm_result(compare.ARMS["a"], bench,
                                       _fake_report({"helpfulness": 0.5, "conciseness": 0.0}, None))
    assert unconditioned["spearman"] == {"helpfulness": None, "conciseness": None}


def test_markdown_table_has_one_row_per_arm_and_chance():
    bench = {"seconds": 12.0, "steps": 4, "prompts_per_step": 1, "peak_rss_mb": 1234.4}
    results = [compare.arm_result(compare.ARMS["a"], bench,
                                  _fake_report({"helpfulness": 0.5, "conciseness": 0.25}, None)),
               compare.arm_result(compare.ARMS["d"], bench, _fake_report({"helpfulness": 1.0, "conciseness": 0.75},
                                                                          {"helpfulness": 0.9, "conciseness": -0.1}))]
    lines = compare.markdown_table(results, ["helpfulness", "conciseness"]).splitlines()
    assert lines[0] == ("| arm | top-1 helpfulness | top-1 conciseness | ρ helpfulness | ρ conciseness "
                        "| s/step | s/prompt | peak RSS MB |")
    assert lines[2] == "| a: pairwise DPO (TRL, best-vs-worst) | 0.50 | 0.25 | – | – | 3.0 | 3.00 | 1234 |"
    assert lines[3] == "| d: c + performance scheduler | 1.00 | 0.75 | 0.90 | -0.10 | 3.0 | 3.00 | 1234 |"
    assert lines[4].startswith("| chance | 0.25 | 0.25 |") and len(lines) == 5


def test_parse_arms_keeps_order_and_rejects_unknown():
    assert [a.key for a in compare.parse_arms("c,a,c")] == ["c", "a"]
    with pytest.raises(compare.CompareError, match="unknown arm"):
        compare.parse_arms("a,e")


# ----------------------------------------------------------------------------- arm a's run folder


def test_trl_arm_writes_a_run_folder_eval_reads(tiny_llama_dir, tmp_path):
    """One TRL step on the tiny model: the folder passes the eval's checks and encodes like the config."""
    import torch

    from lwdpo_edge.contract import read_run_manifest
    from lwdpo_edge.evaluate.ranking import RankingSettings
    from lwdpo_edge.evaluate.run import check_run
    from train_helpers import tiny_config

    torch.set_num_threads(1)
    config = tiny_config(tiny_llama_dir, write_dataset(tmp_path / "lists.jsonl", n_prompts=4), tmp_path / "run",
                         max_steps=1, per_device_train_batch_size=1, max_prompt_tokens=64, threads=1)
    arguments = compare.dpo_config(config, tmp_path / "run")
    assert ({n: getattr(arguments, n) for n in compare.SHARED_TRAINING_ARGS}
            == {n: getattr(config, n) for n in compare.SHARED_TRAINING_ARGS})
    assert arguments.beta == config.beta and arguments.max_length == 64 + 32

    seconds, steps = compare.train_trl(config, tmp_path / "run")
    assert steps == 1 and seconds > 0
    manifest = check_run(tmp_path / "run")  # adapter_config.json present, conditioning known
    assert manifest == read_run_manifest(tmp_path / "run")
    assert manifest["conditioning"] == "none" and manifest["objectives"] == ["helpfulness", "conciseness"]
    assert not (tmp_path / "run" / "adapter" / "ref").exists()  # TRL's frozen reference copy is not saved
    settings = RankingSettings.from_manifest(manifest)
    assert settings == RankingSettings(beta=config.beta, condition_on_lambda=False, length_normalize=False,
                                       max_prompt_tokens=64, max_response_tokens=32)
    assert (manifest["training"]["trainer"] == "trl.DPOTrainer"
            and "lambda_scheduler" not in manifest["training"]["config"])
    assert json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())["r"] == config.lora_r


# ----------------------------------------------------------------------------- OASST split


def test_oasst_split_holds_out_whole_trees_deterministically():
    oasst = _load("oasst")
    records = []
    for line in range(1, 11):  # 10 trees, 1-3 lists each
        for _ in range(1 + line % 3):
            record = _record((1, 1), (2, 2))
            record.source = f"trees.jsonl:{line}"
            records.append(record)
    split = oasst.split_by_tree(records, 0.2, seed=0)
    sides = {}
    for record in split:
        sides.setdefault(record.meta["tree_row"], set()).add(record.meta["split"])
    assert all(len(s) == 1 for s in sides.values())  # no tree on both sides
    assert sum(s == {"heldout"} for s in sides.values()) == 2  # 20% of 10 trees
    again = oasst.split_by_tree([*records], 0.2, seed=0)
    assert [r.meta["split"] for r in again] == [r.meta["split"] for r in split]
    with pytest.raises(ValueError, match="no tree to train on"):
        oasst.split_by_tree(records, 1.0, seed=0)


def test_oasst_drops_training_lists_whose_prompt_fills_trls_cap_for_both_arms(tiny_llama_dir):
    from types import SimpleNamespace

    oasst = _load("oasst")
    config = SimpleNamespace(model=str(tiny_llama_dir), max_prompt_tokens=64, max_response_tokens=32)  # TRL cap 96
    short, long_train, long_heldout = _record((1, 1), (2, 2)), _record((1, 1), (2, 2)), _record((1, 1), (2, 2))
    long_train.prompt = long_heldout.prompt = [{"role": "user", "content": "word " * 200}]
    for record, split in ((short, "train"), (long_train, "train"), (long_heldout, "heldout")):
        record.meta = {"split": split}
    lengths = oasst.prompt_lengths([short, long_train], config)
    assert lengths[0] < 96 <= lengths[1]
    kept, dropped = oasst.drop_overlong_training_lists([short, long_train, long_heldout], config)
    assert [id(r) for r in kept] == [id(short), id(long_heldout)] and dropped == 1  # held-out lists: evaluated alike


# ----------------------------------------------------------------------------- OASST at equal wall-clock


def test_oasst_budget_gives_each_arm_the_steps_its_own_pace_fits():
    oasst = _load("oasst")
    assert oasst.steps_for_budget(900, 7.1) == 126  # 126 x 7.1 = 894.6 <= 900 < 127 x 7.1
    assert oasst.steps_for_budget(900, 5.9) == 152
    assert oasst.steps_for_budget(10, 60.0) == 1  # a budget under one step still trains one
    with pytest.raises(ValueError, match="must be > 0"):
        oasst.steps_for_budget(900, 0.0)


def test_oasst_budget_run_trains_each_arm_at_its_calibrated_steps(monkeypatch, tmp_path):
    """Calibration's s/step -> floor(budget / pace) steps per arm, each arm in the budget folder."""
    oasst = _load("oasst")
    trained = []

    def fake_run_arms(inner, arms, skip_scheduler_lists=True):
        trained.append((Path(inner.runs_dir).name, [a.key for a in arms], inner.steps, inner.eval_lists))

    def fake_collect(inner, arms):
        pace = {"a": 7.1, "c": 5.9}
        return [{"s_per_step": pace[a.key], "steps": inner.steps} for a in arms]

    monkeypatch.setattr(oasst.compare, "run_arms", fake_run_arms)
    monkeypatch.setattr(oasst.compare, "collect", fake_collect)
    args = oasst.build_parser().parse_args(["--budget-seconds", "900", "--work-dir", str(tmp_path),
                                            "--eval-lists", "30"])
    results = dict(oasst.run_equal_budget(args, tmp_path / "split.jsonl", ["pairwise", "listwise"]))
    assert trained == [("calibration-4steps", ["a", "c"], 4, 1),
                       ("budget-900s", ["a"], 126, 30), ("budget-900s", ["c"], 152, 30)]
    assert results["pairwise"]["steps"] == 126 and results["listwise"]["calibrated_s_per_step"] == 5.9


def test_oasst_table_shows_each_mean_with_its_standard_error():
    oasst = _load("oasst")
    objective = oasst.OBJECTIVE
    row = {"top1": {objective: 0.45}, "top1_se": {objective: 0.081}, "kendall_tau": {objective: 0.07},
           "kendall_tau_se": {objective: None}, "ndcg": {objective: 0.84}, "ndcg_se": {objective: 0.02},
           "steps": 126, "train_seconds": 899.6, "s_per_step": 7.14, "peak_rss_mb": 3501.0,
           "base_logprob_top1": {objective: 0.18}, "chance_top1": {objective: 0.32}}
    table = oasst.markdown_table([("pairwise", row)])
    assert "| pairwise | 126 | 900 | 0.45 ± 0.08 | 0.07 | 0.84 ± 0.02 | 7.1 | 3501 |" in table
    assert "| chance | | | 0.32 | 0.00 | | | |" in table


def test_trl_cost_arms_run_in_fp32_like_the_arm_they_are_timed_against():
    """TRL 1.x defaults to bf16=True even on a CPU; the cost benches must not inherit it."""
    from trl import DPOConfig

    assert DPOConfig(output_dir="/tmp/never", use_cpu=True).bf16  # the default this guards against
    args = common.bench_dpo_config("/tmp/never", max_length=512, per_step=2, steps=6)
    assert (args.bf16, args.fp16, args.per_device_train_batch_size, args.max_steps) == (False, False, 2, 6)
