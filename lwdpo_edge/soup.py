"""Adapter soup at inference: the base plus every objective's LoRA delta, weighted by lambda.

    model, tokenizer, manifest = load_soup(run_dir)      # base + K adapters, one PeftModel
    model.soup_mixer.set_lambda({"helpfulness": 0.7, "conciseness": 0.3})
    model(...)   # W x + sum_k lambda_k * s_k * B_k A_k x   in every LoRA layer

How it mixes, and why this way. Each LoRA layer computes base(x) + sum over its *active*
adapters of scaling_k * B_k(A_k(x)). Activating all K adapters and setting scaling_k to
lambda_k * alpha_k / r_k (peft's `set_scale`) gives exactly base + sum_k lambda_k * delta_k with
no new weights: a lambda change costs one float per layer and adapter, so there is nothing worth
caching; `set_lambda` only skips the work when the quantised lambda has not changed.
peft's `add_weighted_adapter(combination_type="linear")` is not this (it averages A and B
separately: (sum w A)(sum w B) != sum w BA); "cat" is exact but builds a new rank-sum(r) adapter
per lambda. Adapters with lambda_k = 0 are deactivated, so a vertex costs one adapter, not K.

`model.disable_adapter()` still gives the base model (the DPO reference and the baseline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from lwdpo_edge.contract import read_run_manifest, soup_adapter_dirs
from lwdpo_edge.lambdas import normalize_lambda, quantize_lambda


def load_soup(run_dir: Path):
    """(model, tokenizer, manifest): the fp32 base with every objective's adapter loaded (adapter
    name = objective), in eval mode, mixed at the run's default lambda; `model.soup_mixer` changes the mix."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lwdpo_edge.models import load_tokenizer

    manifest = read_run_manifest(run_dir)
    dirs = soup_adapter_dirs(run_dir, manifest)
    base_dir = Path(manifest["base_model"]["path"])
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    names = list(dirs)
    model = PeftModel.from_pretrained(base, dirs[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(dirs[name], adapter_name=name)
    model.eval()
    model.soup_mixer = SoupMixer(model, manifest["objectives"])
    model.soup_mixer.set_lambda(manifest["lambda_default"])
    return model, load_tokenizer(base_dir), manifest


def lora_layers(model) -> list:
    from peft.tuners.lora import LoraLayer

    return [module for module in model.modules() if isinstance(module, LoraLayer)]


class SoupMixer:
    """Sets a PeftModel holding one adapter per objective to base + sum_k lambda_k * delta_k."""

    def __init__(self, model, objectives: Sequence[str]):
        self.model, self.objectives = model, list(objectives)
        self.layers = lora_layers(model)
        self.current: dict[str, float] | None = None
        self.gain = 1.0

    def set_lambda(self, lam: Mapping[str, float], gain: float = 1.0) -> dict[str, float]:
        """Mix at `lam` (normalised and quantised as the header would be); returns the lambda used.

        gain multiplies every adapter's scale (base + gain * sum_k lambda_k * delta_k); 1 is the
        soup itself, other values are for exploration (bench/soup_gain.py)."""
        lam = quantize_lambda(normalize_lambda(dict(lam), self.objectives), self.objectives)
        if (lam, gain) == (self.current, self.gain):
            return lam
        active = [name for name in self.objectives if lam[name] > 0]
        # inference_mode=True: activating must not turn requires_grad back on
        self.model.base_model.set_adapter(active, inference_mode=True)
        for layer in self.layers:
            if any(layer.merged_adapters):
                raise RuntimeError("soup: adapters are merged into the weights; unmerge before changing lambda")
            for name in self.objectives:
                layer.set_scale(name, gain * lam[name])  # scaling = gain * lam * alpha / r
        self.current, self.gain = lam, gain
        return lam
