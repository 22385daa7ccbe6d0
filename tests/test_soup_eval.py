"""`lwdpo-edge eval` and `generate` on a tiny trained soup run: the policy at each point is that point's mix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lwdpo_edge.evaluate.run import EvalConfig, run_evaluation
from train_helpers import OBJECTIVES, tiny_config, write_dataset


@pytest.fixture(scope="module")
def lively_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """Larger random weights than tiny_llama_dir, so greedy answers depend on the weights (see test_eval_run)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import build_tiny_model

    return build_tiny_model(LlamaConfig, LlamaForCausalLM, smollm2_tokenizer, tmp_path_factory.mktemp("lively_soup"),
                            seed=0, initializer_range=0.2)


@pytest.fixture(scope="module")
def soup_run(tmp_path_factory, lively_dir) -> Path:
    from lwdpo_edge.train.recipe import run_training

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("soup_eval")
    data = write_dataset(root / "train.jsonl")
    return run_training(tiny_config(lively_dir, data, root / "run", max_steps=2, learning_rate=5e-2, threads=1,
                                    save_steps=100, conditioning="soup", soup_strength=1.0))  # vertex = one adapter


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("soup_heldout") / "heldout.jsonl", n_prompts=3, seed=1)


def single_adapter_answer(lively_dir, folder, tokenizer, question, max_new_tokens):
    """Greedy answer of the base + one adapter, no header: what the soup must give at that vertex."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lwdpo_edge.generate import generate_answer

    from agreement_helpers import TORCH_PATH_TOLERANCE, greedy_margins

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lively_dir, dtype=torch.float32),
                                      folder).eval()
    messages = [{"role": "user", "content": question}]
    assert greedy_margins(model, tokenizer, messages, max_new_tokens).min() >= TORCH_PATH_TOLERANCE  # no near tie
    return generate_answer(model, tokenizer, messages, None, OBJECTIVES, max_new_tokens)


def test_eval_on_a_soup_run_uses_the_mix_of_each_point(soup_run, heldout, lively_dir, smollm2_tokenizer, tmp_path):
    from lwdpo_edge.raters import ConcisenessRater

    out = tmp_path / "eval"
    run_evaluation(EvalConfig(run_dir=soup_run, data=str(heldout), n_prompts=2, max_new_tokens=6, output=out,
                              batch_size=4, threads=1), raters={"conciseness": ConcisenessRater()})
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["conditioning"] == "soup" and report["run"]["ranking_settings"]["condition_on_lambda"] is False
    assert report["ranking"]["points"] == ["helpfulness", "conciseness", "uniform"]
    for point in report["ranking"]["points"]:
        assert report["ranking"]["policy"][point]["conciseness"]["n_lists"] == 3
    grid = [p["name"] for p in report["controllability"]["grid"]]
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    policy = {(r["prompt_index"], r["point"]): r for r in rows if r["model"] == "policy"}
    assert len(policy) == 2 * len(grid) and sum(r["model"] == "base" for r in rows) == 2 * len(grid)
    # At a vertex the policy is that objective's adapter alone, asked without a header.
    for name in OBJECTIVES:
        row = policy[(0, name)]
        assert row["answer"] == single_adapter_answer(lively_dir, soup_run / "adapters" / name, smollm2_tokenizer,
                                                      row["prompt"], 6)
    # The policy's ranking differs between the vertices (two different adapters), unlike the base's.
    ranking = report["ranking"]
    assert ranking["base_logprob"]["helpfulness"] == ranking["base_logprob"]["conciseness"]
    assert ranking["policy"]["helpfulness"] != ranking["policy"]["conciseness"]


def test_eval_at_a_steering_strength_mixes_with_it(soup_run, heldout, smollm2_tokenizer, tmp_path):
    from lwdpo_edge.generate import generate_answer
    from lwdpo_edge.evaluate.run import EvalError
    from lwdpo_edge.raters import ConcisenessRater
    from lwdpo_edge.soup import load_soup

    out = tmp_path / "eval"
    run_evaluation(EvalConfig(run_dir=soup_run, data=str(heldout), n_prompts=1, max_new_tokens=6, output=out,
                              batch_size=4, threads=1, grid="vertices", baseline=False, soup_strength=3.0),
                   raters={"conciseness": ConcisenessRater()})
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["soup_strength"] == 3.0
    row = next(json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()
               if '"point": "conciseness"' in line)
    model, _, manifest = load_soup(soup_run)
    assert manifest["soup_strength"] == 1.0 == model.soup_mixer.default_strength  # the run's own, stored at training
    model.soup_mixer.set_lambda(row["lambda"], 3.0)
    from agreement_helpers import TORCH_PATH_TOLERANCE, greedy_margins

    messages = [{"role": "user", "content": row["prompt"]}]
    assert greedy_margins(model, smollm2_tokenizer, messages, 6).min() >= TORCH_PATH_TOLERANCE  # no near tie
    assert row["answer"] == generate_answer(model, smollm2_tokenizer, [{"role": "user", "content": row["prompt"]}],
                                            None, OBJECTIVES, 6)
    with pytest.raises(EvalError, match="--soup-strength: steering strength must be in"):
        run_evaluation(EvalConfig(run_dir=soup_run, data=str(heldout), output=tmp_path / "bad", soup_strength=-1.0))
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_generate_command_on_a_soup_run(soup_run, lively_dir, smollm2_tokenizer):
    from typer.testing import CliRunner

    from lwdpo_edge.cli import app

    result = CliRunner().invoke(app, ["generate", str(soup_run), "--prompt", "Why is the sky blue?",
                                      "--lambda", "conciseness=1", "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output
    expected = single_adapter_answer(lively_dir, soup_run / "adapters" / "conciseness", smollm2_tokenizer,
                                     "Why is the sky blue?", 6)
    assert expected in result.output


def test_generate_command_takes_a_steering_strength(soup_run, smollm2_tokenizer):
    from typer.testing import CliRunner

    from lwdpo_edge.cli import app
    from lwdpo_edge.generate import generate_answer
    from lwdpo_edge.soup import load_soup

    args = ["generate", str(soup_run), "--prompt", "Why is the sky blue?", "--lambda", "conciseness=1",
            "--max-new-tokens", "6"]
    result = CliRunner().invoke(app, [*args, "--soup-strength", "3"])
    assert result.exit_code == 0, result.output
    model, _, _ = load_soup(soup_run)
    expected = generate_answer(model, smollm2_tokenizer, [{"role": "user", "content": "Why is the sky blue?"}],
                               {"conciseness": 1.0}, OBJECTIVES, 6, strength=3.0)
    assert expected in result.output
    bad = CliRunner().invoke(app, [*args, "--soup-strength", "-1"])
    assert bad.exit_code != 0 and "steering strength" in " ".join(bad.output.split())


def test_dense_eval_reports_interior_ranking_loops_and_the_pareto_front(soup_run, heldout, tmp_path):
    """--grid dense: ranked and generated at 5 points (K = 2); every per-point number is recomputable
    from the report's own rows, so the wiring (which answers, which reference) is what is tested."""
    import numpy as np

    from lwdpo_edge.evaluate.pareto import hypervolume
    from lwdpo_edge.raters import ConcisenessRater, repeats_itself

    out = tmp_path / "eval"
    run_evaluation(EvalConfig(run_dir=soup_run, data=str(heldout), n_prompts=2, max_new_tokens=6, output=out,
                              batch_size=4, threads=1, grid="dense"), raters={"conciseness": ConcisenessRater()})
    report = json.loads((out / "report.json").read_text())
    names = ["helpfulness", "conciseness", "uniform", "helpfulness-lean", "conciseness-lean"]
    assert report["ranking"]["points"] == names == [p["name"] for p in report["controllability"]["grid"]]
    assert set(report["ranking"]["lambda_weighted"]["policy"]) == set(names)
    weighted = report["ranking"]["lambda_weighted"]["policy"]
    # At a vertex the weighted score is that objective's z-score: the same order, the same lists.
    assert weighted["conciseness"]["top1"] == report["ranking"]["policy"]["conciseness"]["conciseness"]["top1"]
    assert weighted["conciseness"]["n_lists"] == 3
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    control = report["controllability"]
    for point in control["policy"]["points"]:
        answers = [r["answer"] for r in rows if r["model"] == "policy" and r["point"] == point["name"]]
        assert point["repeating"] == pytest.approx(np.mean([repeats_itself(a) for a in answers]))
    pareto = control["pareto"]
    base_mean = np.mean([p["mean_scores"]["conciseness"] for p in control["base"]["points"]])
    assert pareto["reference"] == {"conciseness": pytest.approx(base_mean)}
    run_points = np.array([[p["mean_scores"]["conciseness"]] for p in control["policy"]["points"]])
    assert pareto["hypervolume"] == pytest.approx(hypervolume(run_points, np.array([base_mean])))
    assert ("Hypervolume" in (out / "summary.md").read_text()
            and "tradeoff.png" not in report["plots"])  # one rated objective: no pair


@pytest.mark.parametrize("strength", [1.0, 2.5])
def test_fast_ranking_equals_the_padded_unmerged_path(soup_run, heldout, strength):
    """Ranking scores each list as training does (shared prompt, LM head on candidate tokens, the mix folded
    into the weights, the reference once): per list the same log-probs as one padded row per candidate
    through the full logits of the unmerged LoRA mix, to 1e-4."""
    from lwdpo_edge.batching import encode_listwise
    from lwdpo_edge.data.loaders import load_records
    from lwdpo_edge.evaluate.grid import ranking_points
    from lwdpo_edge.evaluate.ranking import RankingSettings, score_lists
    from lwdpo_edge.logprobs import sequence_logps
    from lwdpo_edge.soup import load_soup

    model, tokenizer, manifest = load_soup(soup_run)
    settings = RankingSettings.from_manifest(manifest)
    records = load_records(heldout, OBJECTIVES)
    points = ranking_points(OBJECTIVES, "full")
    reference_cache: dict[str, float] = {}
    fast = score_lists(model, tokenizer, records, points, OBJECTIVES, settings, lists_per_batch=2,
                       policy_at=lambda point: model.soup_mixer.folded(point.lam, strength),
                       reference_logps=reference_cache)
    assert len(reference_cache) == sum(len(r.responses) for r in records)  # one reference pass for every point
    batch = encode_listwise(records, [points[0].lam] * len(records), tokenizer, OBJECTIVES, condition_on_lambda=False,
                            score_normalization="none", max_response_tokens=settings.max_response_tokens)
    split = [len(r.responses) for r in records]
    with torch.no_grad():
        with model.disable_adapter():
            reference = sequence_logps(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
        for point in points:
            model.soup_mixer.set_lambda(point.lam, strength)
            policy = sequence_logps(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
            for item, want_policy, want_reference in zip(fast[point.name], policy.split(split), reference.split(split)):
                torch.testing.assert_close(torch.tensor(item.policy), want_policy, atol=1e-4, rtol=0)
                torch.testing.assert_close(torch.tensor(item.reference), want_reference, atol=1e-4, rtol=0)
    assert not torch.equal(torch.tensor(fast[points[0].name][0].policy), torch.tensor(fast[points[1].name][0].policy))
