"""The trainer on tiny random models: batching, TRL parity, the run folder contract, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lwdpo_edge.batching import encode_listwise
from lwdpo_edge.contract import RunFolderError, read_run_manifest
from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.lambdas import parse_lambda_header
from train_helpers import OBJECTIVES, read_metrics, tiny_config, write_dataset


@pytest.fixture()
def dataset(tmp_path):
    return write_dataset(tmp_path / "lists.jsonl")


def test_encode_listwise_places_every_candidate(dataset, smollm2_tokenizer):
    records = load_records(dataset)[:3]
    lambdas = [{"helpfulness": 1.0, "conciseness": 0.0}, {"helpfulness": 0.5, "conciseness": 0.5},
               {"helpfulness": 0.0, "conciseness": 1.0}]
    batch = encode_listwise(records, lambdas, smollm2_tokenizer, OBJECTIVES, score_normalization="none")
    sizes = [len(r.responses) for r in records]
    assert batch.input_ids.shape[0] == sum(sizes)
    assert batch.candidate_mask.sum(1).tolist() == sizes
    assert batch.lam.tolist() == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    # Row 0 is record 0's first candidate: its completion tokens decode to that answer + end of turn.
    row = batch.input_ids[0][batch.completion_mask[0].bool()]
    assert smollm2_tokenizer.decode(row).startswith(records[0].responses[0].text)
    assert "<|im_end|>" in smollm2_tokenizer.decode(row)
    # The prompt part carries the lambda header of its record.
    prompt = smollm2_tokenizer.decode(
        batch.input_ids[-1][~batch.completion_mask[-1].bool() & batch.attention_mask[-1].bool()])
    header_line = prompt.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0]
    assert parse_lambda_header(header_line) == {"helpfulness": 0.0, "conciseness": 1.0}
    # Raw scores land at (b, k, i); padding stays NaN.
    b, i = 1, 1
    assert batch.scores[b, 1, i].item() == records[b].responses[i].scores["conciseness"]
    assert torch.isnan(batch.scores[~batch.candidate_mask.unsqueeze(1).expand_as(batch.scores)]).all()


def test_pairwise_loss_matches_trl_dpo(tiny_llama_dir, smollm2_tokenizer):
    """N = 2, one objective, hard target: our log-probs + loss equal TRL's DPOTrainer loss on TRL's own batch."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from lwdpo_edge import lambda_dpo_loss
    from lwdpo_edge.logprobs import sequence_logps

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                           LoraConfig(r=4, target_modules="all-linear"))
    pairs = Dataset.from_list([
        {"prompt": [{"role": "user", "content": "Why is the sky blue?"}],
         "chosen": [{"role": "assistant", "content": "Rayleigh scattering of sunlight."}],
         "rejected": [{"role": "assistant", "content": "Because it is."}]},
        {"prompt": [{"role": "user", "content": "Name a fast animal."}],
         "chosen": [{"role": "assistant", "content": "The cheetah."}],
         "rejected": [{"role": "assistant", "content": "A snail, which is slow."}]},
    ])
    args = DPOConfig(output_dir="/tmp/unused", beta=0.3, per_device_train_batch_size=2, report_to="none", use_cpu=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=pairs, processing_class=smollm2_tokenizer)
    # TRL keeps a frozen copy of the initial adapter as its reference; move the trained adapter off
    # its zero init afterwards so the policy differs from the reference (= the base model).
    for name, p in model.named_parameters():
        if "lora_B.default" in name:
            torch.nn.init.normal_(p, std=0.05)
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(model, inputs)
        ids, attn, completion = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
        policy = sequence_logps(model, ids, attn, completion)
        with model.disable_adapter():
            reference = sequence_logps(model, ids, attn, completion)
    # TRL stacks [chosen..., rejected...]; ours wants (B, N) lists with scores (B, 1, N).
    B = ids.shape[0] // 2
    to_lists = lambda x: torch.stack([x[:B], x[B:]], dim=1)  # noqa: E731
    scores = torch.tensor([[[1.0, 0.0]]] * B)
    ours, _ = lambda_dpo_loss(to_lists(policy), to_lists(reference), scores, torch.ones(B, 1), beta=0.3, tau=0.0)
    assert abs(trl_loss.item() - ours.item()) < 1e-5
    assert abs(ours.item() - 0.6931) > 1e-3  # the policy really differs from the reference


def test_training_writes_the_run_contract(tiny_llama_dir, dataset, tmp_path):
    from lwdpo_edge.train.recipe import run_training

    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "run", max_steps=6, learning_rate=1e-2))
    manifest = read_run_manifest(run)
    assert manifest["objectives"] == OBJECTIVES
    assert manifest["lambda_default"] == {"helpfulness": 0.5, "conciseness": 0.5}
    assert manifest["training"]["steps"] == 6
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-4", "checkpoint-6"]
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all("acc/helpfulness" in r and "acc/conciseness" in r for r in rows)
    # The adapter saved is the trained one: its B matrices moved away from their zero init.
    from safetensors.torch import load_file

    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert max(t.abs().max().item() for n, t in weights.items() if "lora_B" in n) > 0


def test_training_lowers_the_loss_on_a_fixed_list(tiny_llama_dir, tmp_path):
    from lwdpo_edge.train.recipe import run_training

    data = write_dataset(tmp_path / "one.jsonl", n_prompts=2, ragged=False)
    run = run_training(tiny_config(tiny_llama_dir, data, tmp_path / "run", max_steps=16, learning_rate=5e-3,
                                   lambda_scheduler="fixed", fixed_lambda="conciseness=1", save_steps=100,
                                   tau=0.0, beta=0.5))
    rows = read_metrics(run)
    losses = [r["loss"] for r in rows]
    assert losses[0] == pytest.approx(math.log(4), rel=1e-4)  # step 1: policy == reference, q uniform
    assert losses[-1] < 0.3 * losses[0]
    assert rows[-1]["acc/conciseness"] == 1.0


def test_resume_continues_the_same_run(tiny_llama_dir, dataset, tmp_path, monkeypatch):
    from lwdpo_edge.train import recipe
    from lwdpo_edge.train.callbacks import RichProgressCallback

    straight = recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "straight", max_steps=6))

    class Crash(Exception):
        pass

    def crash_after_step_3(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise Crash()

    config = tiny_config(tiny_llama_dir, dataset, tmp_path / "resumed", max_steps=6)
    with monkeypatch.context() as patch:
        patch.setattr(RichProgressCallback, "on_step_end", crash_after_step_3)
        with pytest.raises(Crash):
            recipe.run_training(config)
    assert [r["step"] for r in read_metrics(tmp_path / "resumed")] == [1, 2]  # crashed before logging step 3
    with pytest.raises(RunFolderError, match="--resume"):
        recipe.run_training(config)  # refuses to overwrite a run silently
    recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "resumed", max_steps=6, resume=True))

    expected, resumed = read_metrics(straight), read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in expected], rel=1e-4)
    assert len({round(r["loss"], 4) for r in expected}) > 3  # a curve, not a constant


def test_no_header_baseline_leaves_prompts_unconditioned(dataset, smollm2_tokenizer):
    records = load_records(dataset)[:1]
    batch = encode_listwise(records, [{"helpfulness": 1.0, "conciseness": 0.0}], smollm2_tokenizer, OBJECTIVES,
                            condition_on_lambda=False)
    assert "[lambda]" not in smollm2_tokenizer.decode(batch.input_ids[0])


def test_cli_parses_yaml_then_flags(tmp_path):
    from lwdpo_edge.train.cli_args import parse_train_args

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("qlora: true\nmax_steps: 30\nbeta: 0.2\noutput_dir: runs/x\n")
    config = parse_train_args(["--config", str(yaml_file), "--max-steps", "5", "--output", str(tmp_path / "o"),
                               "--use-cpu"])
    assert (config.qlora, config.max_steps, config.beta, config.output_dir) == (True, 5, 0.2, str(tmp_path / "o"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("qlorra: true\n")
    with pytest.raises(SystemExit, match="qlorra"):
        parse_train_args(["--config", str(bad)])


@pytest.mark.parametrize("config_file",
                         sorted(p.name for p in (Path(__file__).parents[1] / "train" / "configs").glob("*.yaml")))
def test_every_shipped_config_parses_and_starts_with_its_command(config_file, tmp_path):
    from lwdpo_edge.train.cli_args import parse_train_args

    path = Path(__file__).parents[1] / "train" / "configs" / config_file
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# ") and f"--config train/configs/{config_file}" in first_line, (
        "the first line says how to run it")
    config = parse_train_args(["--config", str(path), "--output", str(tmp_path / "o")])
    assert config.output_dir == str(tmp_path / "o") and config.max_steps > 0


def test_train_help_explains_every_option():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "lwdpo_edge.cli", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for flag in ("--qlora", "--model", "--data", "--objectives", "--resume", "--lambda-scheduler", "--beta", "--output",
                 "--max-steps", "--seed"):
        assert flag in out, flag
    assert "lambda header" in out


def test_lambda_best_index_follows_lambda():
    from lwdpo_edge.objective import lambda_best_index

    scores = torch.tensor([[[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0]]] * 3)  # objective 0 likes 0, objective 1 likes 2
    lam = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    mask = torch.tensor([[True, True, True], [True, True, True], [True, True, False]])
    assert lambda_best_index(scores, lam, mask).tolist() == [0, 2, 0]  # tie at the centre -> first; padding never wins


def test_sft_term_adds_the_best_candidates_nll(tiny_llama_dir, tmp_path):
    """loss = listwise loss + sft_weight * NLL of the lambda-best candidate."""
    from lwdpo_edge.train.recipe import run_training

    data = write_dataset(tmp_path / "four.jsonl", ragged=False)
    run = run_training(tiny_config(tiny_llama_dir, data, tmp_path / "run", max_steps=2, sft_weight=0.5, save_steps=100))
    first = read_metrics(run)[0]
    assert 2.0 < first["sft_nll"] < 20.0  # per-token NLL of a random tiny model: about log(vocab) ~ 10.8
    # Step 1: policy == reference, so q is uniform and the listwise part is exactly log 4.
    assert first["loss"] == pytest.approx(math.log(4) + 0.5 * first["sft_nll"], rel=1e-5)


def test_sft_warmup_trains_only_the_best_rows_then_switches_to_the_listwise_loss(tiny_llama_dir, tmp_path):
    """Warm-up step = the same NLL the sft term computes over the full batch, from the best rows alone.
    sft_warmup_steps=0.5 of 2 steps: a fraction, so step 1 is warm-up and step 2 listwise."""
    from lwdpo_edge.train.recipe import run_training

    data = write_dataset(tmp_path / "four.jsonl", ragged=False)
    full = read_metrics(run_training(tiny_config(tiny_llama_dir, data, tmp_path / "full", max_steps=1, sft_weight=0.5,
                                                 lambdas_per_prompt=2, save_steps=100)))
    warm = read_metrics(run_training(tiny_config(tiny_llama_dir, data, tmp_path / "warm", max_steps=2,
                                                 sft_warmup_steps=0.5, lambdas_per_prompt=2, save_steps=100)))
    assert warm[0]["loss"] == pytest.approx(warm[0]["sft_nll"], rel=1e-6)  # SFT only
    assert not any(key.startswith("acc/") for key in warm[0])  # no listwise pass in warm-up
    assert warm[0]["sft_nll"] == pytest.approx(full[0]["sft_nll"], rel=1e-4)  # same batch, same best candidates
    assert any(key.startswith("acc/") for key in warm[1])  # step 2: the listwise loss is on


def test_one_objective_trains_one_copy_per_list(tiny_llama_dir, tmp_path):
    """With one objective every lambda is the same: lambdas_per_prompt=2 would repeat each list for
    nothing, so the run uses 1 (same losses as asking for 1) and its manifest says so."""
    from lwdpo_edge.train.recipe import run_training

    rows = [json.loads(line) for line in write_dataset(tmp_path / "two.jsonl", ragged=False).read_text().splitlines()]
    for row in rows:
        for response in row["responses"]:
            del response["scores"]["conciseness"]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    runs = {n: run_training(tiny_config(tiny_llama_dir, data, tmp_path / f"l{n}", max_steps=2, save_steps=100,
                                        lambdas_per_prompt=n)) for n in (1, 2)}
    losses = {n: [row["loss"] for row in read_metrics(run)] for n, run in runs.items()}
    assert losses[2] == pytest.approx(losses[1], rel=1e-5)
    assert read_run_manifest(runs[2])["training"]["config"]["lambdas_per_prompt"] == 1


def test_generate_command_prints_each_header_and_answer(tiny_llama_dir, dataset, tmp_path):
    from typer.testing import CliRunner

    from lwdpo_edge.cli import app
    from lwdpo_edge.train.recipe import run_training

    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "run", max_steps=1, save_steps=100))
    result = CliRunner().invoke(app, ["generate", str(run), "--prompt", "Hi [lambda] there",
                                      "--lambda", "conciseness=1",
                                      "--lambda", "helpfulness=3,conciseness=1", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert "[lambda] helpfulness=0.00 conciseness=1.00 | conciseness max" in result.output
    assert "[lambda] helpfulness=0.75 conciseness=0.25 | helpfulness high, conciseness low" in result.output
    bad = CliRunner().invoke(app, ["generate", str(run), "--prompt", "Hi", "--lambda", "fluency=1"])
    assert bad.exit_code == 2 and "unknown objective" in bad.output


# ------------------------------------------------------------------ cost of a step: same training, less work


def test_cost_flags_change_the_work_not_the_training(tiny_llama_dir, dataset, tmp_path):
    """Shared prompt + chunked LM head + reference cache (the defaults) train like the original path."""
    from lwdpo_edge.train.recipe import run_training

    common = dict(max_steps=3, save_steps=100, lambdas_per_prompt=2)
    fast = read_metrics(run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "fast", **common)))
    plain = read_metrics(run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "plain", chunked_logps=False,
                                                  shared_prompt=False, cache_reference_logps=False, **common)))
    assert [r["loss"] for r in fast] == pytest.approx([r["loss"] for r in plain], rel=1e-5, abs=1e-6)
    assert "reference_computed" in fast[0] and "reference_computed" not in plain[0]


def test_cost_flags_are_cli_options(tmp_path):
    from lwdpo_edge.train.cli_args import parse_train_args

    config = parse_train_args(["--no-chunked-logps", "--no-shared-prompt", "--no-cache-reference-logps", "--use-cpu"])
    assert (config.chunked_logps, config.shared_prompt, config.cache_reference_logps) == (False, False, False)
    config = parse_train_args(["--use-cpu"])
    assert (config.chunked_logps, config.shared_prompt, config.cache_reference_logps) == (True, True, True)


def count_sequence_passes(monkeypatch) -> list[bool]:
    """Patch the trainer so every model pass over candidate sequences is recorded (True: with grad = policy)."""
    from lwdpo_edge.train.trainer import LambdaDPOTrainer

    passes, original = [], LambdaDPOTrainer.sequence_sums

    def counted(self, model, rows):
        passes.append(torch.is_grad_enabled())
        return original(self, model, rows)

    monkeypatch.setattr(LambdaDPOTrainer, "sequence_sums", counted)
    return passes


def test_reference_cache_serves_the_second_epoch(tiny_llama_dir, tmp_path, monkeypatch):
    """No header, fixed lambda: epoch 2 sees epoch 1's sequences again. Its reference passes all come
    from the cache (no model call), the losses equal those of a run without the cache, and the file
    is in the run folder with the base model it belongs to."""
    from lwdpo_edge.train.recipe import run_training
    from lwdpo_edge.train.reference_cache import REFERENCE_CACHE_FILE

    data = write_dataset(tmp_path / "four.jsonl", n_prompts=4)
    settings = dict(max_steps=4, save_steps=100, condition_on_lambda=False, lambda_scheduler="fixed",
                    fixed_lambda="helpfulness=1")  # 4 lists, 2 per step: 2 epochs
    passes = count_sequence_passes(monkeypatch)
    cached = run_training(tiny_config(tiny_llama_dir, data, tmp_path / "cached", **settings))
    rows = read_metrics(cached)
    assert [r["epoch"] > 1 for r in rows] == [False, False, True, True]
    assert [r["reference_computed"] > 0 for r in rows] == [True, True, False, False]
    assert all(r["reference_cached"] > 0 for r in rows[2:])
    assert passes == [False, True, False, True, True, True]  # epoch 2: policy passes only

    passes.clear()
    uncached = read_metrics(run_training(tiny_config(tiny_llama_dir, data, tmp_path / "uncached",
                                                     cache_reference_logps=False, **settings)))
    assert passes == [False, True] * 4
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in uncached], rel=1e-6, abs=1e-7)

    saved = json.loads((cached / REFERENCE_CACHE_FILE).read_text())
    n_sequences = sum(len(json.loads(line)["responses"]) for line in data.read_text().splitlines())
    assert len(saved["entries"]) == n_sequences
    recorded = read_run_manifest(cached)["training"]["reference_cache"]
    assert recorded["entries"] == n_sequences and recorded["identity"] == saved["identity"]
    assert recorded["identity"]["path"] == str(tiny_llama_dir.resolve()) and recorded["identity"]["qlora"] is False


def test_reference_cache_misses_on_a_changed_token_or_another_base(dataset, smollm2_tokenizer, tmp_path):
    from lwdpo_edge.batching import encode_listwise_packed
    from lwdpo_edge.train.reference_cache import ReferenceCache

    records = load_records(dataset)[:2]
    lam = [{"helpfulness": 0.5, "conciseness": 0.5}] * 2
    identity = {"path": "/base", "config_sha256": "abc", "qlora": False}
    cache = ReferenceCache(identity, tmp_path / "ref.json")
    keys = encode_listwise_packed(records, lam, smollm2_tokenizer, OBJECTIVES).sequence_keys
    cache.update((key, -float(i)) for i, key in enumerate(keys))
    cache.save()

    records[1].responses[0].text += "!"  # one more token in one candidate
    changed = encode_listwise_packed(records, lam, smollm2_tokenizer, OBJECTIVES).sequence_keys
    reopened = ReferenceCache.open(tmp_path / "ref.json", identity)
    assert [key in reopened for key in changed].count(False) == 1
    assert all(reopened[key] == cache[key] for key in changed if key in reopened)  # exact round trip
    other_base = ReferenceCache.open(tmp_path / "ref.json", {**identity, "config_sha256": "abd"})
    assert len(other_base) == 0 and len(reopened) == len(keys)


def test_soup_adapters_share_one_reference_cache(tiny_llama_dir, dataset, tmp_path):
    """Every soup adapter trains on the same header-free sequences: the second computes no reference."""
    from lwdpo_edge.train.recipe import run_training

    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "soup", conditioning="soup", max_steps=2,
                                   save_steps=100))
    first, second = ([json.loads(line) for line in (run / "metrics" / f"{name}.jsonl").read_text().splitlines()
                      if '"loss"' in line] for name in OBJECTIVES)
    assert len(first) == len(second) == 2
    assert all(r["reference_computed"] > 0 for r in first)
    assert all(r["reference_computed"] == 0 and r["reference_cached"] > 0 for r in second)
    assert read_run_manifest(run)["training"]["reference_cache"]["entries"] > 0
