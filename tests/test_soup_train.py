"""`--conditioning soup` training (train/soup.py), generate and eval on tiny random models."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lwdpo_edge.contract import RunFolderError, read_run_manifest
from lwdpo_edge.soup import DEFAULT_STRENGTH
from train_helpers import OBJECTIVES, tiny_config, write_dataset


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "lists.jsonl")


def adapter_weights(folder):
    return load_file(folder / "adapter_model.safetensors")


def soup_metrics(run, objective):
    rows = [json.loads(line) for line in (run / "metrics" / f"{objective}.jsonl").read_text().splitlines()]
    return [row for row in rows if "loss" in row]


def test_soup_trains_one_adapter_per_objective_like_a_fixed_vertex_run(tiny_llama_dir, dataset, tmp_path):
    from lwdpo_edge.train.recipe import run_training

    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "soup", max_steps=2, save_steps=100,
                                   conditioning="soup"))
    manifest = read_run_manifest(run)
    assert manifest["conditioning"] == "soup"
    assert manifest["adapters"] == {n: f"adapters/{n}" for n in OBJECTIVES}
    assert manifest["soup_strength"] == DEFAULT_STRENGTH  # the default steering strength travels with the run
    assert manifest["training"]["steps"] == 2
    assert [soup_metrics(run, n)[-1]["step"] for n in OBJECTIVES] == [2, 2]  # --max-steps is per adapter
    assert not (run / "adapter").exists()
    soup = {n: adapter_weights(run / "adapters" / n) for n in OBJECTIVES}
    assert any(not torch.equal(soup["helpfulness"][k], soup["conciseness"][k]) for k in soup["helpfulness"])
    # Adapter k is exactly a header-mode run at lambda = vertex k with the header switched off.
    plain = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "plain", max_steps=2, save_steps=100,
                                     lambda_scheduler="fixed", fixed_lambda="conciseness=1", condition_on_lambda=False))
    expected = adapter_weights(plain / "adapter")
    assert soup["conciseness"].keys() == expected.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(soup["conciseness"][key], tensor, rtol=1e-5, atol=1e-7)


def test_soup_resume_skips_finished_adapters_and_continues_the_interrupted_one(tiny_llama_dir, dataset, tmp_path,
                                                                               monkeypatch):
    from lwdpo_edge.train import recipe
    from lwdpo_edge.train.callbacks import RichProgressCallback

    straight = recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "straight", max_steps=4,
                                               conditioning="soup"))

    class Crash(Exception):
        pass

    calls = []

    def crash_in_second_adapter(self, args, state, control, **kwargs):
        calls.append(state.global_step)
        if len(calls) == 4 + 3:  # step 3 of the second objective
            raise Crash()

    config = tiny_config(tiny_llama_dir, dataset, tmp_path / "resumed", max_steps=4, conditioning="soup")
    with monkeypatch.context() as patch:
        patch.setattr(RichProgressCallback, "on_step_end", crash_in_second_adapter)
        with pytest.raises(Crash):
            recipe.run_training(config)
    first = tmp_path / "resumed" / "adapters" / OBJECTIVES[0] / "adapter_model.safetensors"
    assert first.is_file() and not (tmp_path / "resumed" / "adapters" / OBJECTIVES[1]).exists()
    with pytest.raises(RunFolderError, match="--resume"):
        recipe.run_training(config)
    first_mtime = first.stat().st_mtime_ns
    recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "resumed", max_steps=4, conditioning="soup",
                                    resume=True))
    assert first.stat().st_mtime_ns == first_mtime  # the finished adapter was not retrained
    for name in OBJECTIVES:
        assert [r["step"] for r in soup_metrics(tmp_path / "resumed", name)] == [1, 2, 3, 4]
        resumed, expected = (adapter_weights(run / "adapters" / name) for run in (tmp_path / "resumed", straight))
        for key, tensor in expected.items():
            torch.testing.assert_close(resumed[key], tensor, rtol=1e-4, atol=1e-6)
    assert read_run_manifest(tmp_path / "resumed")["conditioning"] == "soup"


def test_soup_config_rejects_what_does_not_apply(tiny_llama_dir, dataset, tmp_path):
    with pytest.raises(ValueError, match="--conditioning must be one of soup, header, got 'mix'"):
        tiny_config(tiny_llama_dir, dataset, tmp_path / "x", conditioning="mix")
    with pytest.raises(ValueError, match="lambdas-per-prompt"):
        tiny_config(tiny_llama_dir, dataset, tmp_path / "x", conditioning="soup", lambdas_per_prompt=2)


def test_train_help_describes_soup():
    from lwdpo_edge.train.cli_args import build_parser

    text = build_parser().format_help()
    assert "--conditioning" in text and "one adapter per objective" in text
    assert "per adapter" in text  # --max-steps
