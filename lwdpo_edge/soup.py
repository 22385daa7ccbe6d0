"""Adapter soup at inference: the base plus every objective's LoRA delta, weighted by lambda.

    model, tokenizer, manifest = load_soup(run_dir)      # base + K adapters, one PeftModel
    model.soup_mixer.set_lambda({"helpfulness": 0.7, "conciseness": 0.3})
    model(...)   # W x + sum_k c_k * s_k * B_k A_k x   in every LoRA layer, c = soup_scales(lambda)

Steering strength. `soup_scales` maps lambda on the simplex to one coefficient per adapter,

    c_k = 1/K + strength * (lambda_k - 1/K)          sum_k c_k = 1 at every strength

strength 1 is the plain lambda-weighted soup (c = lambda). strength > 1 extrapolates: at a vertex
the objective's own delta is scaled up and the other deltas are *subtracted*, so what the
adapters share (every adapter learned "answer in this dataset's style") stays at the centre's
weight while what sets them apart is amplified, like classifier-free guidance. The centre
(uniform lambda) is the same mix at every strength. On the demo run Spearman(lambda_k, score_k)
rises with strength while answers drift off topic, and beyond ~3 the extreme vertices degenerate
(docs/experiments.md); `lwdpo-edge calibrate` (lwdpo_edge/evaluate/calibrate.py) picks a run's
strength on its held-out prompts.

How it mixes, and why this way. Each LoRA layer computes base(x) + sum over its *active*
adapters of scaling_k * B_k(A_k(x)). Activating all K adapters and setting scaling_k to
lambda_k * alpha_k / r_k (peft's `set_scale`) gives exactly base + sum_k lambda_k * delta_k with
no new weights: a lambda change costs one float per layer and adapter, so there is nothing worth
caching; `set_lambda` only skips the work when the quantised lambda has not changed.
peft's `add_weighted_adapter(combination_type="linear")` is not this (it averages A and B
separately: (sum w A)(sum w B) != sum w BA); "cat" is exact but builds a new rank-sum(r) adapter
per lambda. Adapters with lambda_k = 0 are deactivated, so a vertex costs one adapter, not K.

Folded. Unmerged, every forward pays for K LoRA branches (measured with 3 adapters on the default
135M model, 2 threads, in one process: scoring 16 held-out lists at 3 mixes took 118 s unmerged and
68 s folded). Work that holds one lambda for many forwards (evaluation, calibration) uses
`mixer.folded(lam)` instead: the mix is added into the base weights once, W' = W + sum_k c_k s_k B_k A_k,
and the model runs with its adapters disabled, at the base model's speed. The same float sums in
another order, so it agrees with the unmerged mix to float rounding; leaving the block restores the
exact original weights.

`model.disable_adapter()` still gives the base model (the DPO reference and the baseline).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from lwdpo_edge.contract import (
    Conditioning,
    check_strength,
    read_run_manifest,
    soup_adapter_dirs,
)
from lwdpo_edge.lambdas import LambdaError, normalize_lambda, quantize_lambda
from lwdpo_edge.models import load_tokenizer

DEFAULT_STRENGTH = 2.5  # what a soup run stores when its strength is not calibrated (train --no-calibrate)


def strength_for(conditioning: str, strength: float | None, default: float | None = None) -> float | None:
    """The steering strength a model with this conditioning runs at: `strength` (or `default` when
    None) checked, for a soup; None for a header or plain model, which has no strength to set
    (LambdaError if one was asked for). The runtime, `generate` and `eval` all ask this one rule."""
    if conditioning != Conditioning.SOUP:
        if strength is not None:
            fixed = " (a merged preset's strength was fixed at export)" if conditioning == Conditioning.MERGED else ""
            raise LambdaError(f"a steering strength applies to adapter-soup runs only; this one's conditioning is "
                              f"{conditioning!r}{fixed}")
        return None
    chosen = default if strength is None else strength
    return None if chosen is None else check_strength(chosen)


def soup_scales(lam: Mapping[str, float], objectives: Sequence[str], strength: float = 1.0) -> list[float]:
    """One coefficient per adapter, objective order: 1/K + strength * (lambda_k - 1/K) (see above).

    `lam` is used as given (callers pass the quantised lambda the header would show)."""
    strength = check_strength(strength)
    centre = 1.0 / len(objectives)
    return [centre + strength * (float(lam[name]) - centre) for name in objectives]


def load_soup(run_dir: Path):
    """(model, tokenizer, manifest): the fp32 base with every objective's adapter loaded (adapter
    name = objective), in eval mode, mixed at the run's default lambda; `model.soup_mixer` changes the mix."""
    import torch  # torch: heavy, only when a soup is loaded
    from peft import PeftModel  # peft: heavy, only when a soup is loaded
    from transformers import AutoModelForCausalLM  # transformers: heavy, only when a soup is loaded

    manifest = read_run_manifest(run_dir)
    dirs = soup_adapter_dirs(run_dir, manifest)
    base_dir = Path(manifest["base_model"]["path"])
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    names = list(dirs)
    model = PeftModel.from_pretrained(base, dirs[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(dirs[name], adapter_name=name)
    model.eval()
    model.soup_mixer = SoupMixer(model, manifest["objectives"], manifest.get("soup_strength", 1.0))
    model.soup_mixer.set_lambda(manifest["lambda_default"])
    return model, load_tokenizer(base_dir), manifest


def lora_layers(model) -> list:
    from peft.tuners.lora import LoraLayer  # peft: heavy, only when a soup is loaded

    return [module for module in model.modules() if isinstance(module, LoraLayer)]


class SoupMixer:
    """Sets a PeftModel holding one adapter per objective to base + sum_k c_k * delta_k, c = soup_scales."""

    def __init__(self, model, objectives: Sequence[str], strength: float = 1.0):
        self.model, self.objectives = model, list(objectives)
        self.default_strength = check_strength(strength)
        self.layers = lora_layers(model)
        self.current: tuple[dict[str, float], float] | None = None  # (lambda, strength) last applied
        self.base_weights: list | None = None  # the LoRA layers' original weights, once `folded` is used

    def set_lambda(self, lam: Mapping[str, float], strength: float | None = None) -> dict[str, float]:
        """Mix at `lam` (normalised and quantised as the header would be) and `strength` (None: the
        run's default); returns the lambda used."""
        lam = quantize_lambda(normalize_lambda(dict(lam), self.objectives), self.objectives)
        strength = self.default_strength if strength is None else check_strength(strength)
        if (lam, strength) == self.current:
            return lam
        scales = dict(zip(self.objectives, soup_scales(lam, self.objectives, strength)))
        active = [name for name in self.objectives if scales[name] != 0]
        # inference_mode=True: activating must not turn requires_grad back on
        self.model.base_model.set_adapter(active, inference_mode=True)
        for layer in self.layers:
            if any(layer.merged_adapters):
                raise RuntimeError("soup: adapters are merged into the weights; unmerge before changing lambda")
            for name in self.objectives:
                layer.set_scale(name, scales[name])  # scaling = c_k * alpha / r
        self.current = (lam, strength)
        return lam

    @contextmanager
    def folded(self, lam: Mapping[str, float], strength: float | None = None) -> Iterator[dict[str, float]]:
        """Inside the block the model, adapters disabled, is the soup at `lam`: the mix is added into
        the base weights once (see the module docstring). Yields the lambda used. Nothing else may
        change the mix or merge adapters inside the block."""
        import torch  # torch: heavy, only when a soup is loaded

        lam = self.set_lambda(lam, strength)
        if self.base_weights is None:  # the exact originals, kept once: restoring never accumulates rounding
            self.base_weights = [layer.get_base_layer().weight.detach().clone() for layer in self.layers]
        scales = dict(zip(self.objectives, soup_scales(lam, self.objectives, self.current[1])))
        try:
            with torch.no_grad():
                for layer, original in zip(self.layers, self.base_weights):
                    delta = sum(layer.get_delta_weight(name) for name in self.objectives if scales[name] != 0)
                    layer.get_base_layer().weight.copy_(original + delta)  # delta: (out, in), scaling included
            with self.model.disable_adapter():
                yield lam
        finally:
            with torch.no_grad():
                for layer, original in zip(self.layers, self.base_weights):
                    layer.get_base_layer().weight.copy_(original)
