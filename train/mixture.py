"""Mixture conditioning (`--conditioning mixture`): one adapter per objective, mixed by lambda, trained together.

    lwdpo-edge train --conditioning mixture --max-steps 180 --output runs/mixture

The model a user gets is the one the lambda-weighted loss trained. Every forward runs all K LoRA
adapters, mixed exactly as lwdpo_edge.soup mixes them at inference,

    W x + sum_k c_k(lambda) * s_k * B_k A_k x,     c(lambda) = soup_scales(lambda, strength) = 1/K + strength * (lambda - 1/K),

and each micro-batch draws ONE lambda from the run's scheduler (dirichlet with vertex draws, or the
performance scheduler), sets the mix to c(lambda), and takes the lambda-weighted listwise loss (plus
the SFT term and warm start, as for any run) of its lists under that mix, the reference being the base
with every adapter off. So interior points of the simplex are trained, not only the vertices, and the
gain lambda needs is learned by the adapters at strength 1 instead of set by hand afterwards (the
soup's 2.5). Against the soup, at the same budget: soup trains K runs of S steps, each at one
vertex; the mixture trains K x S steps, each at a drawn lambda.

The run folder is a soup run (lwdpo.json conditioning "soup", adapters/<objective>/, soup_strength = the trained strength,
training.mode "mixture"): eval, generate, export, the runtime, app and serve take it unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import torch
from transformers import set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from lwdpo_edge.contract import ADAPTERS_DIR, METRICS_FILE, write_run_manifest
from lwdpo_edge.models import load_policy, load_tokenizer, resolve_model
from lwdpo_edge.soup import lora_layers, soup_scales
from lwdpo_edge.train.callbacks import MetricsJsonlCallback, RichProgressCallback
from lwdpo_edge.train.config import LambdaDPOConfig
from lwdpo_edge.train.recipe import (SUMMARY_FIELDS, ListDataset, TrainSetupError, check_run_folder, checkpoint_args,
                                     lambda_sampling_setup, load_training_data, lora_settings, open_reference_cache,
                                     reference_cache_summary)
from lwdpo_edge.train.trainer import LambdaDPOTrainer


class TrainingMix:
    """Keeps every objective's adapter active and trainable, and sets their scales to c(lambda)."""

    def __init__(self, model, objectives, strength: float = 1.0):
        self.model, self.objectives, self.strength = model, list(objectives), strength
        model.base_model.set_adapter(self.objectives)  # all active; inference_mode False: all trainable
        self.layers = lora_layers(model)
        self.lam: dict[str, float] | None = None

    def set_lambda(self, lam: dict[str, float]) -> None:
        scales = soup_scales(lam, self.objectives, self.strength)
        for layer in self.layers:
            for name, scale in zip(self.objectives, scales):
                layer.set_scale(name, scale)  # scaling_k = c_k * alpha_k / r_k, read by the next forward
        self.lam = dict(lam)


class MixtureTrainer(LambdaDPOTrainer):
    """LambdaDPOTrainer whose lambda reaches the model as the adapter mix, one lambda per micro-batch."""

    def __init__(self, *args, mix: TrainingMix, **kwargs):
        super().__init__(*args, **kwargs)
        self.mix = mix

    def build_batch(self, records, packed: bool = True):
        (lam,) = self.lambda_sampler.draw(1, self._next_rng())  # one mix per forward: one lambda per micro-batch
        self.mix.set_lambda(lam)
        return self.encode(records, [lam] * len(records), packed)

    def anchor_losses(self) -> list[float]:
        """The performance scheduler's held-out losses, each anchor measured under its own mix."""
        losses = []
        for name, lam in self.lambda_sampler.anchors:
            self.mix.set_lambda(lam)
            losses.append(super().anchor_losses_at(name, lam))
        return losses

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # The HF Trainer reloads one adapter; a checkpoint holds one sub-folder per objective.
        model = self.accelerator.unwrap_model(model or self.model)
        for name in self.objectives:
            load_adapter_folder(model, name, Path(resume_from_checkpoint) / name)


def load_adapter_folder(model, name: str, folder: Path):
    """(saved tensors, peft's load result): `folder`'s adapter_model.safetensors into adapter `name`."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(Path(folder) / "adapter_model.safetensors")
    return state, set_peft_model_state_dict(model, state, adapter_name=name)


def mixture_policy(model_dir: Path, config: LambdaDPOConfig, objectives):
    """The base with one trainable LoRA adapter per objective (named after it), no 'default' adapter."""
    model = load_policy(model_dir, qlora=config.qlora, lora=lora_settings(config),
                        gradient_checkpointing=config.activation_checkpointing)
    lora_config = copy.deepcopy(model.peft_config["default"])
    for name in objectives:
        model.add_adapter(name, copy.deepcopy(lora_config))
    model.base_model.set_adapter(objectives[0])
    model.delete_adapter("default")
    return model


def load_initial_adapters(model, soup_run: Path, model_dir: Path, objectives) -> None:
    """Start each objective's adapter from `soup_run`'s (trained alone at its vertex) instead of fresh weights.

    Why: the soup's vertices steer while the jointly trained mixture learns mostly the length axis that
    helpfulness and conciseness share (docs/results.md, issue 13); starting from the soup, joint training
    only has to fit the interior of the simplex and the trained gain. Refuses a run of another base,
    objectives or LoRA shape, naming what differs."""
    from lwdpo_edge.contract import read_run_manifest, soup_adapter_dirs

    soup_run = Path(soup_run)
    manifest = read_run_manifest(soup_run)
    if manifest.get("conditioning") != "soup":
        raise TrainSetupError(f"--mixture-init {soup_run}: a soup run is needed, this one's conditioning is {manifest.get('conditioning')!r}")
    if list(manifest["objectives"]) != list(objectives):
        raise TrainSetupError(f"--mixture-init {soup_run}: its objectives {manifest['objectives']} differ from this run's {list(objectives)}")
    if Path(manifest["base_model"]["path"]).resolve() != Path(model_dir).resolve():
        raise TrainSetupError(f"--mixture-init {soup_run}: base model {manifest['base_model']['path']} is not this run's {model_dir}")
    lora_keys = [k for k in model.state_dict() if "lora_" in k]
    for name, folder in soup_adapter_dirs(soup_run, manifest).items():
        try:
            state, result = load_adapter_folder(model, name, folder)
        except RuntimeError as error:  # torch: size mismatch (another --lora-r)
            raise TrainSetupError(f"--mixture-init {soup_run}: adapter {name!r} does not fit this run's LoRA layers: "
                                  f"{str(error).splitlines()[-1].strip()}") from None
        missing = set(result.missing_keys)
        loaded = [k for k in lora_keys if f".{name}." in k and k not in missing]
        if result.unexpected_keys or len(loaded) != len(state):
            raise TrainSetupError(f"--mixture-init {soup_run}: adapter {name!r} does not fit this run's LoRA layers "
                                  f"({len(state)} tensors, {len(loaded)} matched; check --lora-r and --lora-target-modules)")


def run_mixture_training(config: LambdaDPOConfig) -> Path:
    """Setup, train, save (module docstring); returns the run folder."""
    if config.threads:
        torch.set_num_threads(config.threads)
    resume_from = check_run_folder(config)
    records, heldout, objectives = load_training_data(config)
    if len(objectives) < 2:
        raise TrainSetupError(f"--conditioning mixture needs at least 2 objectives, the data has {objectives}")
    records, measured_lists, sampler = lambda_sampling_setup(config, records, heldout, objectives, resume_from)
    model_dir = resolve_model(config.model)
    set_seed(config.seed)
    model = mixture_policy(model_dir, config, objectives)
    if config.mixture_init and resume_from is None:  # a resumed run reloads its own checkpoint instead
        load_initial_adapters(model, Path(config.mixture_init), model_dir, objectives)
    args = dataclasses.replace(checkpoint_args(config), condition_on_lambda=False)  # the mix, not a header
    trainer = MixtureTrainer(
        model=model, args=args, train_dataset=ListDataset(records), processing_class=load_tokenizer(model_dir),
        objectives=objectives, lambda_sampler=sampler, scheduler_lists=measured_lists, mix=TrainingMix(model, objectives, config.mixture_strength),
        reference_cache=open_reference_cache(config, model_dir, model),
        callbacks=[RichProgressCallback(objectives), MetricsJsonlCallback(Path(config.output_dir) / METRICS_FILE)],
    )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    started = time.time()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    save_mixture(trainer, config, objectives, model_dir, len(records), time.time() - started)
    trainer.accelerator.wait_for_everyone()
    return Path(config.output_dir)


def save_mixture(trainer, config: LambdaDPOConfig, objectives, model_dir: Path, n_records: int, seconds: float) -> None:
    """RUN/adapters/<objective>/ and a soup lwdpo.json (the trained strength, training.mode 'mixture')."""
    run_dir = Path(config.output_dir)
    trainer.save_reference_cache()
    if not trainer.is_world_process_zero():
        return
    trainer.model.save_pretrained(run_dir / ADAPTERS_DIR, selected_adapters=objectives)  # one sub-folder each
    last = next((row for row in reversed(trainer.state.log_history) if "loss" in row), {})
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k in SUMMARY_FIELDS}
    write_run_manifest(
        run_dir, objectives, base_model={"spec": config.model, "path": str(model_dir)}, conditioning="soup",
        adapters={name: f"{ADAPTERS_DIR}/{name}" for name in objectives}, soup_strength=config.mixture_strength,
        training={"mode": "mixture", "steps": trainer.state.global_step, "records": n_records,
                  "seconds": round(seconds, 1),
                  "final_metrics": {k: v for k, v in last.items() if k == "loss" or "/" in k},
                  "config": {**settings, "condition_on_lambda": False},
                  **reference_cache_summary(trainer.reference_cache)},
    )
