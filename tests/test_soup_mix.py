"""Adapter soup mixing (lwdpo_edge/soup.py) on a tiny random model: exact against hand-merged weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lwdpo_edge.contract import RunFolderError, write_run_manifest

OBJECTIVES = ["helpfulness", "conciseness"]


def random_adapter(base_dir: Path, out: Path, seed: int, r: int) -> Path:
    """A LoRA adapter with random non-zero A and B (a trained adapter's delta is not zero)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear",
                                            init_lora_weights=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def soup_run(tiny_llama_dir, tmp_path_factory) -> Path:
    """A soup run folder without training: two random adapters of different ranks."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("soup_run")
    for k, name in enumerate(OBJECTIVES):
        random_adapter(tiny_llama_dir, run / "adapters" / name, seed=k + 1, r=2 + 2 * k)
    write_run_manifest(run, OBJECTIVES, base_model={"spec": str(tiny_llama_dir), "path": str(tiny_llama_dir)},
                       training={}, conditioning="soup", adapters={n: f"adapters/{n}" for n in OBJECTIVES})
    return run


@pytest.fixture(scope="module")
def tokens(smollm2_tokenizer):
    return smollm2_tokenizer("Why is the sky blue? Because light scatters.", return_tensors="pt")["input_ids"]


@torch.no_grad()
def logits(model, ids):
    return model(input_ids=ids).logits


def hand_merged(base_dir: Path, run: Path, weights: dict[str, float]):
    """The base with W += w_k * (alpha_k / r_k) * B_k @ A_k added by hand from each adapter file."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    params = dict(model.named_parameters())
    for name, w in weights.items():
        config = json.loads((run / "adapters" / name / "adapter_config.json").read_text())
        scale = config["lora_alpha"] / config["r"]
        tensors = load_file(run / "adapters" / name / "adapter_model.safetensors")
        for key, A in tensors.items():
            if ".lora_A." not in key:
                continue
            B = tensors[key.replace(".lora_A.", ".lora_B.")]
            target = key.removeprefix("base_model.model.").split(".lora_A.")[0] + ".weight"
            with torch.no_grad():
                params[target] += w * scale * (B @ A)
    return model.eval()


def single_adapter(base_dir: Path, folder: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return PeftModel.from_pretrained(base, folder).eval()


def test_vertex_is_that_adapter_alone(soup_run, tiny_llama_dir, tokens):
    from lwdpo_edge.soup import load_soup

    model, _, _ = load_soup(soup_run)
    for name in OBJECTIVES:
        model.soup_mixer.set_lambda({name: 1.0})
        alone = single_adapter(tiny_llama_dir, soup_run / "adapters" / name)
        torch.testing.assert_close(logits(model, tokens), logits(alone, tokens), rtol=0, atol=1e-5)


def test_mix_is_base_plus_weighted_deltas(soup_run, tiny_llama_dir, tokens):
    from lwdpo_edge.soup import load_soup

    model, _, _ = load_soup(soup_run)
    for lam in ({"helpfulness": 0.5, "conciseness": 0.5}, {"helpfulness": 0.3, "conciseness": 0.7}):
        model.soup_mixer.set_lambda(lam)
        expected = logits(hand_merged(tiny_llama_dir, soup_run, lam), tokens)
        torch.testing.assert_close(logits(model, tokens), expected, rtol=0, atol=1e-4)
    # The two adapters really differ, so the mix is a real test: the vertices are far apart.
    ends = []
    for name in OBJECTIVES:
        model.soup_mixer.set_lambda({name: 1.0})
        ends.append(logits(model, tokens))
    assert (ends[0] - ends[1]).abs().max() > 1e-2


def test_base_is_the_adapter_disabled_and_mixes_do_not_drift(soup_run, tiny_llama_dir, tokens):
    from transformers import AutoModelForCausalLM

    from lwdpo_edge.soup import load_soup

    model, _, manifest = load_soup(soup_run)
    assert (model.soup_mixer.current == (manifest["lambda_default"], 1.0)
            and manifest["lambda_default"] == {"helpfulness": 0.5, "conciseness": 0.5})
    first = logits(model, tokens)
    with model.disable_adapter():
        base = logits(model, tokens)
    plain = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    torch.testing.assert_close(base, logits(plain, tokens), rtol=0, atol=0)
    for lam in ({"helpfulness": 1.0}, {"conciseness": 3.0, "helpfulness": 1.0}, {"helpfulness": 2, "conciseness": 2}):
        model.soup_mixer.set_lambda(lam)
    torch.testing.assert_close(logits(model, tokens), first, rtol=0, atol=0)  # back at 0.5/0.5: same numbers


def test_soup_scales_keep_the_centre_and_extrapolate_at_the_vertices():
    from lwdpo_edge.lambdas import LambdaError
    from lwdpo_edge.soup import soup_scales

    objectives = ["helpfulness", "conciseness", "readability"]
    vertex = {"helpfulness": 0.0, "conciseness": 1.0, "readability": 0.0}
    assert soup_scales(vertex, objectives, 1.0) == [0.0, 1.0, 0.0]  # strength 1: the plain soup
    assert soup_scales(vertex, objectives, 3.0) == pytest.approx([-2 / 3, 7 / 3, -2 / 3])
    assert soup_scales(vertex, objectives, 0.0) == pytest.approx([1 / 3] * 3)  # strength 0: always the centre
    centre = dict.fromkeys(objectives, 1 / 3)
    for strength in (0.5, 2.0, 4.0):
        assert soup_scales(centre, objectives, strength) == pytest.approx([1 / 3] * 3)
        assert sum(soup_scales({"helpfulness": 0.2, "conciseness": 0.5, "readability": 0.3}, objectives,
                               strength)) == pytest.approx(1.0)
    for bad in (-1, float("nan"), 100, "strong"):
        with pytest.raises(LambdaError, match="steering strength"):
            soup_scales(vertex, objectives, bad)


def test_strength_for_is_the_one_rule_for_soup_and_header_models():
    from lwdpo_edge.lambdas import LambdaError
    from lwdpo_edge.soup import strength_for

    assert strength_for("soup", None, 2.5) == 2.5  # the model's default
    assert strength_for("soup", 3, 2.5) == 3.0  # an override wins
    assert strength_for("soup", None) is None  # nothing asked, no default: leave it to the caller
    assert strength_for("header", None, 2.5) is None  # a header model has no strength
    with pytest.raises(LambdaError, match="adapter-soup runs only.*'header'"):
        strength_for("header", 2.0)
    with pytest.raises(LambdaError, match="steering strength must be in"):
        strength_for("soup", 9.0)


def test_strength_mix_is_the_affine_combination_of_deltas(soup_run, tiny_llama_dir, tokens):
    from lwdpo_edge.soup import load_soup

    model, _, _ = load_soup(soup_run)
    # strength 3 at the helpfulness vertex: c = 0.5 + 3 * (1 - 0.5) = 2 and 0.5 + 3 * (0 - 0.5) = -1
    model.soup_mixer.set_lambda({"helpfulness": 1.0}, strength=3.0)
    assert model.base_model.active_adapters == OBJECTIVES  # a negative coefficient is applied, not skipped
    expected = logits(hand_merged(tiny_llama_dir, soup_run, {"helpfulness": 2.0, "conciseness": -1.0}), tokens)
    torch.testing.assert_close(logits(model, tokens), expected, rtol=0, atol=1e-4)
    plain = logits(hand_merged(tiny_llama_dir, soup_run, {"helpfulness": 1.0}), tokens)
    assert (logits(model, tokens) - plain).abs().max() > 1e-2  # strength really changed the mix
    model.soup_mixer.set_lambda({"helpfulness": 0.5, "conciseness": 0.5}, strength=3.0)
    centre = logits(hand_merged(tiny_llama_dir, soup_run, {"helpfulness": 0.5, "conciseness": 0.5}), tokens)
    torch.testing.assert_close(logits(model, tokens), centre, rtol=0, atol=1e-4)  # the centre ignores strength


def test_run_default_strength_comes_from_the_manifest(soup_run, tmp_path):
    import shutil

    from lwdpo_edge.soup import load_soup

    run = tmp_path / "strong"
    shutil.copytree(soup_run, run)
    manifest = json.loads((run / "lwdpo.json").read_text())
    (run / "lwdpo.json").write_text(json.dumps({**manifest, "soup_strength": 2.5}))
    model, _, _ = load_soup(run)
    assert model.soup_mixer.default_strength == 2.5 and model.soup_mixer.current[1] == 2.5
    model.soup_mixer.set_lambda({"helpfulness": 1.0})
    assert model.soup_mixer.current == ({"helpfulness": 1.0, "conciseness": 0.0}, 2.5)


def test_set_lambda_normalises_and_quantises(soup_run):
    from lwdpo_edge.lambdas import LambdaError
    from lwdpo_edge.soup import load_soup

    model, _, _ = load_soup(soup_run)
    assert model.soup_mixer.set_lambda({"helpfulness": 2, "conciseness": 1}) == {"helpfulness": 0.67,
                                                                                 "conciseness": 0.33}
    assert model.base_model.active_adapters == OBJECTIVES
    assert model.soup_mixer.set_lambda({"conciseness": 1}) == {"helpfulness": 0.0, "conciseness": 1.0}
    assert model.base_model.active_adapters == ["conciseness"]  # a zero weight costs no compute
    with pytest.raises(LambdaError, match="unknown objective"):
        model.soup_mixer.set_lambda({"fluency": 1})


def test_manifest_of_a_soup_run_must_name_every_adapter(soup_run, tmp_path):
    from lwdpo_edge.contract import read_run_manifest, soup_adapter_dirs

    manifest = read_run_manifest(soup_run)
    assert manifest["conditioning"] == "soup"
    assert soup_adapter_dirs(soup_run, manifest) == {n: soup_run / "adapters" / n for n in OBJECTIVES}
    write_run_manifest(tmp_path, OBJECTIVES, base_model={"path": "x"}, training={}, conditioning="soup",
                       adapters={"helpfulness": "adapters/helpfulness"})
    with pytest.raises(RunFolderError, match="one folder per objective"):
        read_run_manifest(tmp_path)
    write_run_manifest(tmp_path, OBJECTIVES, base_model={"path": "x"}, training={}, conditioning="soup",
                       adapters={n: f"adapters/{n}" for n in OBJECTIVES})
    with pytest.raises(RunFolderError, match="soup adapter for 'helpfulness' missing"):
        soup_adapter_dirs(tmp_path, read_run_manifest(tmp_path))


@pytest.mark.parametrize("strength", [1.0, 2.5])
def test_folded_mix_is_the_unmerged_mix_and_gives_the_weights_back(soup_run, tokens, strength):
    """Inside `folded` the model (adapters off) computes the mix at the base model's cost: the same logits
    as the unmerged LoRA mix to float rounding, teacher-forced argmax agreeing by the margin rule; after
    the block the weights are the base's, bit for bit, and the unmerged mix works again."""
    from lwdpo_edge.agreement import compare_logits
    from lwdpo_edge.soup import load_soup

    model, _, _ = load_soup(soup_run)
    mixer = model.soup_mixer
    with model.disable_adapter():
        base = logits(model, tokens)
    for lam in ({"helpfulness": 1.0}, {"helpfulness": 0.3, "conciseness": 0.7}):
        mixer.set_lambda(lam, strength)
        unmerged = logits(model, tokens)
        with mixer.folded(lam, strength) as used:
            folded = logits(model, tokens)
        assert used == mixer.current[0]
        torch.testing.assert_close(folded, unmerged, rtol=0, atol=1e-5)
        assert compare_logits(unmerged[0].numpy(), folded[0].numpy()).ok
        assert (folded - base).abs().max() > 1e-2  # the fold really changed the model
        with model.disable_adapter():
            torch.testing.assert_close(logits(model, tokens), base, rtol=0, atol=0)
        torch.testing.assert_close(logits(model, tokens), unmerged, rtol=0, atol=0)


def test_folded_gives_the_weights_back_after_an_error(soup_run, tokens):
    from lwdpo_edge.soup import load_soup

    model, _, _ = load_soup(soup_run)
    with model.disable_adapter():
        base = logits(model, tokens)
    with pytest.raises(KeyboardInterrupt):
        with model.soup_mixer.folded({"helpfulness": 1.0}, 2.0):
            raise KeyboardInterrupt
    with model.disable_adapter():
        torch.testing.assert_close(logits(model, tokens), base, rtol=0, atol=0)
