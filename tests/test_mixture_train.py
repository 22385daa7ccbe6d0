"""`--conditioning mixture` (train/mixture.py): the soup's adapters trained together under a drawn mix."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from lwdpo_edge.contract import read_run_manifest
from train_helpers import OBJECTIVES, read_metrics, tiny_config, write_dataset


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "lists.jsonl")


def weights(run, name):
    return load_file(run / "adapters" / name / "adapter_model.safetensors")


def changed(before, after) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_a_mixture_run_trains_every_adapter_and_is_a_soup_run_at_strength_1(tiny_llama_dir, dataset, tmp_path):
    from lwdpo_edge.soup import load_soup
    from lwdpo_edge.train.recipe import run_training

    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "mix", max_steps=6, save_steps=100,
                                   conditioning="mixture", lambda_vertex_prob=0.5))
    manifest = read_run_manifest(run)
    assert manifest["conditioning"] == "soup" and manifest["soup_strength"] == 1.0
    assert manifest["training"]["mode"] == "mixture" and manifest["training"]["steps"] == 6
    assert manifest["adapters"] == {n: f"adapters/{n}" for n in OBJECTIVES}
    trained = {n: weights(run, n) for n in OBJECTIVES}
    lora_b = [k for k in trained[OBJECTIVES[0]] if "lora_B" in k]
    assert all(trained[n][k].abs().sum() > 0 for n in OBJECTIVES for k in lora_b)  # B starts at 0: both trained
    assert changed(trained[OBJECTIVES[0]], trained[OBJECTIVES[1]])
    assert [row["step"] for row in read_metrics(run)] == [1, 2, 3, 4, 5, 6]  # one run, not one per adapter
    model, _, _ = load_soup(run)  # the inference side reads it as it reads a soup
    assert model.soup_mixer.default_strength == 1.0


def test_at_a_vertex_only_that_objectives_adapter_learns(tiny_llama_dir, dataset, tmp_path):
    """c(lambda) = lambda: at lambda = e_1 the other adapter's scale is 0, so its gradient is 0 (no weight decay)."""
    from lwdpo_edge.train.mixture import mixture_policy
    from lwdpo_edge.train.recipe import run_training

    config = tiny_config(tiny_llama_dir, dataset, tmp_path / "vertex", max_steps=3, save_steps=100,
                         conditioning="mixture", lambda_scheduler="fixed", fixed_lambda=f"{OBJECTIVES[0]}=1")
    torch.manual_seed(0)
    from transformers import set_seed

    set_seed(config.seed)
    initial = mixture_policy(tiny_llama_dir, config, OBJECTIVES)
    start = {n: {k: v.detach().clone() for k, v in initial.state_dict().items() if f".{n}." in k} for n in OBJECTIVES}
    run = run_training(config)
    after = {n: weights(run, n) for n in OBJECTIVES}
    untouched = {k.replace(f".{OBJECTIVES[1]}.", "."): v for k, v in start[OBJECTIVES[1]].items()}
    assert not changed({k: untouched[k] for k in after[OBJECTIVES[1]]}, after[OBJECTIVES[1]])
    learned = {k.replace(f".{OBJECTIVES[0]}.", "."): v for k, v in start[OBJECTIVES[0]].items()}
    assert changed({k: learned[k] for k in after[OBJECTIVES[0]]}, after[OBJECTIVES[0]])


def test_the_training_mix_is_the_inference_mix(tiny_llama_dir, dataset, tmp_path):
    """Logits under TrainingMix at lambda == lwdpo_edge.soup's mix of the saved run at lambda (fp32, 1e-5)."""
    from lwdpo_edge.soup import load_soup
    from lwdpo_edge.train.mixture import TrainingMix
    from lwdpo_edge.train.recipe import run_training

    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "mix", max_steps=4, save_steps=100,
                                   conditioning="mixture"))
    soup, _, _ = load_soup(run)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    names = list(OBJECTIVES)
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                                        run / "adapters" / names[0], adapter_name=names[0], is_trainable=True)
    trained.load_adapter(run / "adapters" / names[1], adapter_name=names[1], is_trainable=True)
    mix = TrainingMix(trained, names)
    ids = torch.tensor([[1, 5, 9, 200, 31, 7, 64]])
    for lam in ({names[0]: 1.0, names[1]: 0.0}, {names[0]: 0.3, names[1]: 0.7}):
        mix.set_lambda(lam)
        soup.soup_mixer.set_lambda(lam)
        with torch.no_grad():
            torch.testing.assert_close(trained(ids).logits, soup(ids).logits, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert (trained(ids).logits - soup(ids).logits).abs().max() < 1e-5
        soup.soup_mixer.set_lambda({names[0]: 1.0})
        assert (trained(ids).logits - soup(ids).logits).abs().max() > 1e-3  # another lambda is another model


def test_a_mixture_trained_with_contrast_is_saved_at_that_strength(tiny_llama_dir, dataset, tmp_path, monkeypatch):
    """--mixture-strength 2: every training forward mixes 1/K + 2 (lambda - 1/K), negative at a vertex's
    other adapter, and the run is saved at strength 2, so inference applies the rule it was trained under."""
    from lwdpo_edge.soup import load_soup, soup_scales
    from lwdpo_edge.train.mixture import TrainingMix
    from lwdpo_edge.train.recipe import run_training

    seen = []
    original = TrainingMix.set_lambda

    def record(self, lam, train_strength=True):
        original(self, lam, train_strength)
        seen.append([self.layers[0].scaling[n] / (self.layers[0].lora_alpha[n] / self.layers[0].r[n])
                     for n in OBJECTIVES])

    monkeypatch.setattr(TrainingMix, "set_lambda", record)
    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "contrast", max_steps=3, save_steps=100,
                                   conditioning="mixture", mixture_strength=2.0, lambda_scheduler="fixed",
                                   fixed_lambda=f"{OBJECTIVES[0]}=1"))
    assert seen and all(scales == pytest.approx([1.5, -0.5]) for scales in seen)  # K = 2: 1/2 + 2 * (1 - 1/2), 1/2 - 1
    manifest = read_run_manifest(run)
    assert manifest["soup_strength"] == 2.0 == manifest["training"]["config"]["mixture_strength"]
    model, _, _ = load_soup(run)
    assert model.soup_mixer.default_strength == 2.0
    assert soup_scales({OBJECTIVES[0]: 1.0, OBJECTIVES[1]: 0.0}, OBJECTIVES,
                       model.soup_mixer.default_strength) == seen[0]


def test_the_learned_strengths_gradient_is_the_losss_slope_in_log_strength(tiny_llama_dir, dataset, tmp_path):
    """--mixture-learn-strength: autograd's d loss / d log(s) through every LoRA layer's scaling equals the
    central difference of the loss in log(s) (fp32), at a vertex where s sets the contrast."""
    import math

    from lwdpo_edge.train.mixture import TrainingMix, mixture_policy

    config = tiny_config(tiny_llama_dir, dataset, tmp_path / "grad", conditioning="mixture")
    model = mixture_policy(tiny_llama_dir, config, OBJECTIVES)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at 0, where s has no effect: give every adapter a delta
            torch.nn.init.normal_(param, std=0.05)
    mix = TrainingMix(model, OBJECTIVES, strength=1.5, learn_strength=True)
    ids = torch.tensor([[1, 5, 9, 200, 31, 7, 64]])
    vertex = {OBJECTIVES[0]: 1.0, OBJECTIVES[1]: 0.0}

    def loss_at(log_strength: float) -> torch.Tensor:
        with torch.no_grad():
            mix.log_strength.fill_(log_strength)
        mix.set_lambda(vertex)
        return model(ids, labels=ids).loss

    loss_at(math.log(1.5)).backward()
    eps = 1e-3
    with torch.no_grad():
        slope = (loss_at(math.log(1.5) + eps) - loss_at(math.log(1.5) - eps)) / (2 * eps)
    assert abs(slope.item()) > 1e-4  # the strength matters here, so the check below can fail
    assert mix.log_strength.grad.item() == pytest.approx(slope.item(), rel=2e-2)


def test_a_learned_strength_is_trained_logged_and_saved_as_the_runs_strength(tiny_llama_dir, dataset, tmp_path):
    from lwdpo_edge.soup import load_soup
    from lwdpo_edge.train.recipe import run_training

    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "learned", max_steps=4, save_steps=100,
                                   conditioning="mixture", mixture_learn_strength=True, mixture_strength_lr=0.1,
                                   lambda_vertex_prob=0.5))
    strengths = [row["mixture/strength"] for row in read_metrics(run)]
    # B starts at 0, so step 1 has no delta for s to scale (s stays 1); then s moves every step.
    assert len(strengths) == 4 and strengths[0] == 1.0 and len(set(strengths[1:])) == 3 and strengths[-1] != 1.0
    manifest = read_run_manifest(run)
    assert manifest["soup_strength"] == pytest.approx(strengths[-1])  # the value reached, not the start
    assert manifest["training"]["config"]["mixture_learn_strength"] is True
    model, _, _ = load_soup(run)
    assert model.soup_mixer.default_strength == pytest.approx(strengths[-1])


def test_a_learned_strength_is_left_alone_by_the_sft_warm_up(tiny_llama_dir, dataset, tmp_path):
    from lwdpo_edge.train.recipe import run_training

    run = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "warm", max_steps=4, save_steps=100,
                                   conditioning="mixture", mixture_learn_strength=True, sft_warmup_steps=2,
                                   lambda_vertex_prob=0.5))
    strengths = [row["mixture/strength"] for row in read_metrics(run)]
    assert strengths[:2] == [1.0, 1.0]  # the warm-up trained B (so s has a delta to scale) but not s
    assert strengths[2] != 1.0 and strengths[3] != strengths[2]  # the listwise steps train it


def test_a_learned_strength_resumes_to_the_same_value(tiny_llama_dir, dataset, tmp_path, monkeypatch):
    from lwdpo_edge.train import recipe
    from lwdpo_edge.train.callbacks import RichProgressCallback

    settings = dict(max_steps=4, save_steps=2, conditioning="mixture", mixture_learn_strength=True,
                    mixture_strength_lr=0.1)
    straight = recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "straight", **settings))

    class Crash(Exception):
        pass

    def crash_at_step_3(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise Crash()

    with monkeypatch.context() as patch:
        patch.setattr(RichProgressCallback, "on_step_end", crash_at_step_3)
        with pytest.raises(Crash):
            recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "resumed", **settings))
    resumed = recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "resumed", resume=True, **settings))
    expected = read_run_manifest(straight)["soup_strength"]
    assert expected != 1.0
    assert read_run_manifest(resumed)["soup_strength"] == pytest.approx(expected, rel=1e-4)


def test_a_learned_strength_needs_the_mixture():
    from lwdpo_edge.train.config import LambdaDPOConfig

    with pytest.raises(ValueError, match="--mixture-learn-strength"):
        LambdaDPOConfig(output_dir="/tmp/never", conditioning="soup", mixture_learn_strength=True)


def test_mixture_strength_must_be_positive():
    from lwdpo_edge.train.config import LambdaDPOConfig

    with pytest.raises(ValueError, match="--mixture-strength"):
        LambdaDPOConfig(output_dir="/tmp/never", conditioning="mixture", mixture_strength=0.0)


def test_mixture_resumes_to_the_same_adapters(tiny_llama_dir, dataset, tmp_path, monkeypatch):
    from lwdpo_edge.train import recipe
    from lwdpo_edge.train.callbacks import RichProgressCallback

    straight = recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "straight", max_steps=4,
                                               save_steps=2, conditioning="mixture"))

    class Crash(Exception):
        pass

    def crash_at_step_3(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise Crash()

    config = tiny_config(tiny_llama_dir, dataset, tmp_path / "resumed", max_steps=4, save_steps=2,
                         conditioning="mixture")
    with monkeypatch.context() as patch:
        patch.setattr(RichProgressCallback, "on_step_end", crash_at_step_3)
        with pytest.raises(Crash):
            recipe.run_training(config)
    recipe.run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "resumed", max_steps=4, save_steps=2,
                                    conditioning="mixture", resume=True))
    for name in OBJECTIVES:
        resumed, expected = weights(tmp_path / "resumed", name), weights(straight, name)
        for key, tensor in expected.items():
            torch.testing.assert_close(resumed[key], tensor, rtol=1e-4, atol=1e-6)


def test_the_performance_scheduler_drives_a_mixture_run(tiny_llama_dir, tmp_path, monkeypatch):
    from lwdpo_edge.train.lambda_sampling import simplex_anchors
    from lwdpo_edge.train.mixture import TrainingMix
    from lwdpo_edge.train.recipe import run_training

    mixes = []
    original = TrainingMix.set_lambda
    monkeypatch.setattr(TrainingMix, "set_lambda",
                        lambda self, lam, **kw: (mixes.append(dict(lam)), original(self, lam, **kw))[1])
    data = write_dataset(tmp_path / "lists.jsonl", n_prompts=10)
    run = run_training(tiny_config(tiny_llama_dir, data, tmp_path / "perf", max_steps=4, save_steps=100,
                                   conditioning="mixture", lambda_scheduler="performance", scheduler_every=2,
                                   scheduler_lists=2))
    rows = read_metrics(run)
    assert len([k for k in rows[1] if k.startswith("scheduler/loss/")]) == 3  # two vertices and their midpoint
    anchors = [lam for _, lam in simplex_anchors(OBJECTIVES)]
    # steps 1-2 draw, then every anchor is measured under its own mix, then steps 3-4 draw, then again
    assert mixes[2:5] == anchors and mixes[7:10] == anchors and len(mixes) == 10


def lora_distance(run, reference_run) -> float:
    """Sum over objectives and tensors of |run - reference| (the adapters' L1 distance)."""
    total = 0.0
    for name in OBJECTIVES:
        mine, reference = weights(run, name), weights(reference_run, name)  # each file read once
        total += sum((mine[k] - reference[k]).abs().sum().item() for k in reference)
    return total


def test_mixture_init_starts_every_adapter_from_the_soups(tiny_llama_dir, dataset, tmp_path):
    from lwdpo_edge.models import resolve_model
    from lwdpo_edge.train.mixture import load_initial_adapters, mixture_policy
    from lwdpo_edge.train.recipe import run_training

    soup = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "soup", max_steps=2, save_steps=100,
                                    conditioning="soup"))
    config = tiny_config(tiny_llama_dir, dataset, tmp_path / "mix", max_steps=2, save_steps=100,
                         conditioning="mixture", mixture_init=str(soup))
    model = mixture_policy(resolve_model(config.model), config, OBJECTIVES)
    load_initial_adapters(model, soup, resolve_model(config.model), OBJECTIVES)
    state = model.state_dict()
    for name in OBJECTIVES:
        for key, tensor in weights(soup, name).items():  # saved keys drop the adapter name
            mine = key.replace(".weight", f".{name}.weight")
            assert torch.equal(state[mine], tensor), mine

    from_soup = run_training(config)
    fresh = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "fresh", max_steps=2, save_steps=100,
                                     conditioning="mixture"))
    # Two steps move the soup's adapters a little; a fresh mixture starts at B = 0, far from them.
    assert 0 < lora_distance(from_soup, soup) < 0.5 * lora_distance(fresh, soup)
    assert read_run_manifest(from_soup)["training"]["config"]["mixture_init"] == str(soup)


def test_mixture_init_refuses_a_run_that_does_not_fit(tiny_llama_dir, dataset, tmp_path):
    from lwdpo_edge.train.recipe import TrainSetupError, run_training

    header = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "header", max_steps=1, save_steps=100))
    with pytest.raises(TrainSetupError, match="a soup run is needed"):
        run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "a", max_steps=1, conditioning="mixture",
                                 mixture_init=str(header)))
    rank_8 = run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "r8", max_steps=1, save_steps=100,
                                      conditioning="soup", lora_r=8))
    with pytest.raises(TrainSetupError, match="does not fit this run's LoRA layers"):
        run_training(tiny_config(tiny_llama_dir, dataset, tmp_path / "b", max_steps=1, conditioning="mixture",
                                 mixture_init=str(rank_8)))
    with pytest.raises(ValueError, match="--mixture-init .* needs --conditioning mixture"):
        tiny_config(tiny_llama_dir, dataset, tmp_path / "c", mixture_init=str(rank_8))
