"""`lwdpo-edge eval` on a tiny trained run: scoring as training did, batched greedy decoding, the report, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lwdpo_edge.contract import RunFolderError, write_run_manifest
from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.data.schema import DataError
from lwdpo_edge.evaluate.controllability import generate_answers, make_jobs
from lwdpo_edge.evaluate.grid import lambda_grid, ranking_points
from lwdpo_edge.evaluate.run import EvalConfig, run_evaluation
from lwdpo_edge.lambdas import parse_lambda_header
from train_helpers import OBJECTIVES, tiny_config, write_dataset


@pytest.fixture(scope="module")
def lively_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A tiny random Llama with larger weights: its greedy answers depend on the prompt (the default
    init of tiny_llama_dir answers newlines to everything, which would make comparisons vacuous)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import build_tiny_model

    return build_tiny_model(LlamaConfig, LlamaForCausalLM, smollm2_tokenizer, tmp_path_factory.mktemp("lively"),
                            seed=0, initializer_range=0.2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, lively_dir) -> Path:
    """A run folder trained for 2 steps on the lively tiny model (objectives helpfulness, conciseness)."""
    from lwdpo_edge.train.recipe import run_training

    root = tmp_path_factory.mktemp("eval_run")
    data = write_dataset(root / "train.jsonl")
    return run_training(tiny_config(lively_dir, data, root / "run", max_steps=2, learning_rate=1e-2, threads=1))


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("heldout") / "heldout.jsonl", n_prompts=3, seed=1)


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from lwdpo_edge.generate import load_run

    torch.set_num_threads(1)
    return load_run(tiny_run)


# ----------------------------------------------------------------------------- ranking


def test_eval_scores_lists_as_training_did(loaded, heldout, lively_dir):
    """Policy log-probs = the adapter merged into the base; reference = the plain base model."""
    from transformers import AutoModelForCausalLM

    from lwdpo_edge.batching import encode_listwise
    from lwdpo_edge.evaluate.ranking import RankingSettings, score_lists
    from lwdpo_edge.logprobs import sequence_logps

    model, tokenizer, manifest = loaded
    settings = RankingSettings.from_manifest(manifest)
    assert settings.max_response_tokens == 32 and settings.condition_on_lambda  # from the run's lwdpo.json
    records = load_records(heldout, OBJECTIVES)
    point = ranking_points(OBJECTIVES)[1]  # the conciseness vertex
    scored = score_lists(model, tokenizer, records, [point], OBJECTIVES, settings, lists_per_batch=2)[point.name]

    batch = encode_listwise(records, [point.lam] * len(records), tokenizer, OBJECTIVES, score_normalization="none",
                            max_response_tokens=settings.max_response_tokens)
    base = AutoModelForCausalLM.from_pretrained(lively_dir).eval()
    with torch.no_grad():
        reference = sequence_logps(base, batch.input_ids, batch.attention_mask, batch.completion_mask)
    flat_ref = torch.cat([torch.tensor(item.reference) for item in scored])
    torch.testing.assert_close(flat_ref, reference, atol=1e-4, rtol=0)
    policy = torch.cat([torch.tensor(item.policy) for item in scored])
    assert (policy - flat_ref).abs().max() > 1e-4  # the trained adapter moved the log-probs


def test_an_adapter_that_changes_nothing_ranks_at_chance(tiny_run, heldout):
    """lora_B = 0 makes pi_theta = pi_ref, so r = 0 for every candidate: exactly chance, tau 0."""
    from lwdpo_edge.evaluate.ranking import RankingSettings, ranking_report, score_lists
    from lwdpo_edge.generate import load_run

    model, tokenizer, manifest = load_run(tiny_run)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.zero_()
    records = load_records(heldout, OBJECTIVES)
    points = ranking_points(OBJECTIVES)
    scored = score_lists(model, tokenizer, records, points, OBJECTIVES, RankingSettings.from_manifest(manifest))
    report = ranking_report(scored, OBJECTIVES, beta=0.1)
    for point in points:
        for name in OBJECTIVES:
            assert report["policy"][point.name][name]["top1"] == pytest.approx(
                report["chance"][point.name][name]["top1"])
            assert report["policy"][point.name][name]["ndcg"] == pytest.approx(
                report["chance"][point.name][name]["ndcg"])
            assert report["policy"][point.name][name]["kendall_tau"] == 0.0


# ----------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def lively_model(lively_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(lively_dir).eval()


def test_batched_greedy_answers_equal_one_at_a_time(lively_model, smollm2_tokenizer):
    from lwdpo_edge.evaluate.backends import TransformersBackend
    from lwdpo_edge.generate import generate_answer

    prompts = [[{"role": "user", "content": "Hi"}],
               [{"role": "user", "content": "Explain in detail why the sky looks blue on a clear summer day."}]]
    grid = lambda_grid(OBJECTIVES)
    jobs = make_jobs(prompts, grid, OBJECTIVES, conditioned=True)  # 2 prompts x 3 lambdas, very different lengths
    batched = TransformersBackend(lively_model, smollm2_tokenizer).generate_batch([j.messages for j in jobs], 6)
    single = [generate_answer(lively_model, smollm2_tokenizer, prompts[j.prompt_index], j.point.lam, OBJECTIVES, 6)
              for j in jobs]
    assert batched == single  # left padding changes nothing
    assert all(batched) and len(set(batched)) > 1  # real, prompt-dependent tokens were compared
    # Text equality is sound because no greedy step is a near tie: padding moves fp32 logits by ~5e-6,
    # and every step of these answers wins by more than TORCH_PATH_TOLERANCE (shown here).
    from agreement_helpers import TORCH_PATH_TOLERANCE, greedy_margins

    for job in jobs:
        margins = greedy_margins(lively_model, smollm2_tokenizer, job.messages, 6)
        assert margins.min() >= TORCH_PATH_TOLERANCE, (job.messages, margins)


class RecordingBackend:
    name = "recording"

    def __init__(self):
        self.calls = []

    def generate_batch(self, prompts, max_new_tokens):
        self.calls.append(len(prompts))
        return [f"answer to {p[-1]['content']} under {p[0]['content']}" for p in prompts]


def test_generation_jobs_carry_the_header_and_unconditioned_runs_generate_once_per_prompt():
    prompts = [[{"role": "user", "content": "Why?"}], [{"role": "user", "content": "How?"}]]
    grid = lambda_grid(OBJECTIVES)
    jobs = make_jobs(prompts, grid, OBJECTIVES, conditioned=True)
    assert [(j.prompt_index, j.point.name) for j in jobs[:3]] == [(0, "helpfulness"), (0, "conciseness"),
                                                                  (0, "uniform")]
    assert parse_lambda_header(jobs[1].messages[0]["content"]) == {"helpfulness": 0.0, "conciseness": 1.0}
    backend = RecordingBackend()
    advanced = []
    answers = generate_answers(backend, jobs, 8, batch_size=4, advance=advanced.append)
    assert backend.calls == [4, 2] and sum(advanced) == 6 and len(answers) == 6
    # Without conditioning lambda never reaches the model: one generation per prompt serves the whole grid.
    backend = RecordingBackend()
    plain = make_jobs(prompts, grid, OBJECTIVES, conditioned=False)
    answers = generate_answers(backend, plain, 8, batch_size=4)
    assert backend.calls == [2] and len(answers) == 6 and answers[0] == answers[2] != answers[3]


# ----------------------------------------------------------------------------- end to end


def test_eval_writes_the_report_with_baselines(tiny_run, heldout, loaded, tmp_path):
    from lwdpo_edge.generate import generate_answer
    from lwdpo_edge.raters import ConcisenessRater

    out = tmp_path / "eval"
    raters = {"conciseness": ConcisenessRater()}  # helpfulness has no rater here: reported as unrated
    folder = run_evaluation(EvalConfig(run_dir=tiny_run, data=str(heldout), n_prompts=2, max_new_tokens=5,
                                       output=out, batch_size=4, threads=1), raters=raters)
    assert folder == out
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["n_lists"] == 3 and report["prompts"]["n"] == 2
    from lwdpo_edge.decoding import REPETITION_PENALTY

    assert report["settings"]["repetition_penalty"] == REPETITION_PENALTY  # the runtime's, from lwdpo_edge/decoding.py
    assert report["ranking"]["points"] == ["helpfulness", "conciseness", "uniform"]
    assert report["ranking"]["policy"]["uniform"]["conciseness"]["n_lists"] == 3
    control = report["controllability"]
    assert control["rated"] == ["conciseness"] and control["unrated"] == ["helpfulness"]
    assert [p["name"] for p in control["policy"]["points"]] == ["helpfulness", "conciseness", "uniform"]
    assert set(report["criteria"]["objectives"]) == {"conciseness"} and report["criteria"]["passed"] is False
    # The data ceiling is the imitation policy's Spearman on the same held-out lists and points.
    from lwdpo_edge.evaluate.ceiling import data_ceiling
    from lwdpo_edge.evaluate.criteria import judged_points
    from lwdpo_edge.evaluate.grid import lambda_grid
    from lwdpo_edge.evaluate.heldout import load_heldout_lists

    expected = data_ceiling(load_heldout_lists(str(heldout), OBJECTIVES),
                            judged_points(lambda_grid(OBJECTIVES, "full")), OBJECTIVES, ["conciseness"])
    assert control["data_ceiling"]["n_lists"] == 3
    assert (report["criteria"]["objectives"]["conciseness"]["data_ceiling_spearman"]
            == expected["objectives"]["conciseness"]["spearman"])
    assert sorted(report["plots"]) == ["controllability.png", "ranking.png"]  # one rated objective: no trade-off pair
    assert {p.name for p in out.iterdir()} == {"report.json", "generations.jsonl", "summary.md", *report["plots"]}

    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 * 2  # prompts x grid points x (run, base)
    model, tokenizer, _ = loaded
    policy_row = next(r for r in rows if r["model"] == "policy" and r["point"] == "conciseness")
    messages = [{"role": "user", "content": policy_row["prompt"]}]
    # The report's answer is the run's own greedy answer (batched, adapter merged) under that lambda...
    assert policy_row["answer"] == generate_answer(model, tokenizer, messages, policy_row["lambda"], OBJECTIVES, 5)
    # ...and its score is the rater's score of that answer.
    assert policy_row["scores"]["conciseness"] == ConcisenessRater().score([""], [policy_row["answer"]])[0]
    base_row = next(r for r in rows if r["model"] == "base" and r["point"] == "conciseness")
    with model.disable_adapter():
        assert base_row["answer"] == generate_answer(model, tokenizer, messages, base_row["lambda"], OBJECTIVES, 5)
    assert policy_row["answer"] and base_row["answer"] != policy_row["answer"]  # the adapter changed the answer
    assert "## Controllability: 2 prompts x 3 lambda points" in (out / "summary.md").read_text()


# ----------------------------------------------------------------------------- bad input


@pytest.fixture()
def fake_run(tmp_path) -> Path:
    """A run folder with a manifest and an adapter config: enough for every check before the model loads."""
    run = tmp_path / "run"
    write_run_manifest(run, OBJECTIVES, base_model={"spec": "x", "path": str(tmp_path / "nowhere")}, training={})
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    return run


def _fails_cleanly(config: EvalConfig, error, match: str):
    with pytest.raises(error, match=match):
        run_evaluation(config)
    assert not config.output_dir.exists()
    assert not [p for p in config.output_dir.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_run_folder_from_another_version_is_refused(fake_run, heldout):
    manifest = json.loads((fake_run / "lwdpo.json").read_text())
    (fake_run / "lwdpo.json").write_text(json.dumps({**manifest, "lwdpo_version": 99}))
    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(heldout)), RunFolderError, "lwdpo_version 99")


def test_soup_strength_is_refused_for_a_header_run_and_checked_for_range(fake_run, heldout):
    from lwdpo_edge.evaluate.run import EvalError

    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(heldout), soup_strength=2.0), EvalError,
                   "adapter-soup runs only")
    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(heldout), repetition_penalty=0.5), EvalError,
                   "--repetition-penalty: repetition_penalty = 0.5")


def test_run_folder_without_adapter_or_with_unknown_conditioning(fake_run, heldout):
    shutil.rmtree(fake_run / "adapter")
    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(heldout)), RunFolderError, "no trained adapter")
    write_run_manifest(fake_run, OBJECTIVES, base_model={"spec": "x", "path": "x"}, training={}, conditioning="magic")
    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(heldout)), RunFolderError, "conditioning 'magic'")


def test_heldout_objectives_the_run_does_not_know(fake_run, tmp_path):
    data = tmp_path / "other.jsonl"
    row = {"prompt": "Why?", "responses": [{"text": "a", "scores": {"helpfulness": 1, "readability": 2}},
                                            {"text": "b", "scores": {"helpfulness": 0, "readability": 3}}]}
    data.write_text(json.dumps(row) + "\n")
    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(data)), DataError,
                   r"other.jsonl:1: .*unknown objective 'readability'.*trained on \['helpfulness', 'conciseness'\]")


def test_empty_or_train_only_prompt_files(fake_run, heldout, tmp_path):
    empty = tmp_path / "prompts.txt"
    empty.write_text("\n# only a comment\n")
    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(heldout), prompts=str(empty)), DataError, "holds no prompts")
    train_only = tmp_path / "prompts.jsonl"
    train_only.write_text(json.dumps({"prompt": "Why?", "split": "train"}) + "\n")
    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(heldout), prompts=str(train_only)), DataError,
                   "none is 'heldout'")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    _fails_cleanly(EvalConfig(run_dir=fake_run, data=str(heldout), prompts=str(broken)), DataError,
                   r"broken.jsonl:2: prompt")


def test_prompt_files_keep_only_the_heldout_split(tmp_path):
    from lwdpo_edge.evaluate.heldout import load_prompt_file

    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "Train me", "split": "train"}, {"prompt": "Test me", "split": "heldout"},
        {"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}],
         "split": "heldout"}]))
    assert load_prompt_file(path) == [[{"role": "user", "content": "Test me"}],
                                      [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello"}]]
    text = tmp_path / "prompts.txt"
    text.write_text("One?\n\nTwo?\n")
    assert [m[0]["content"] for m in load_prompt_file(text)] == ["One?", "Two?"]


def test_cli_help_and_clear_error(fake_run, heldout, tmp_path):
    import typer
    from typer.testing import CliRunner

    from lwdpo_edge.evaluate.cli import evaluate

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so "eval" is a subcommand as in lwdpo_edge.cli
    app.command("eval")(evaluate)
    runner = CliRunner()
    help_text = runner.invoke(app, ["eval", "--help"]).output
    for option in ("--data", "--prompts", "--n-prompts", "--max-new-tokens", "--output", "--no-baseline", "--grid",
                   "--soup-strength"):
        assert option in help_text
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = runner.invoke(app, ["eval", str(fake_run), "--data", str(heldout), "--prompts", str(empty)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long paths at the terminal width
    assert "error:" in output and "holds no prompts" in output
