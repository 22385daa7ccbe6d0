"""Mixture conditioning (`--conditioning mixture`): one adapter per objective, mixed by lambda, trained together.

    lwdpo-edge train --conditioning mixture --max-steps 180 --output runs/mixture

The model a user gets is the one the lambda-weighted loss trained. Every forward runs all K LoRA
adapters, mixed exactly as lwdpo_edge.soup mixes them at inference,

    W x + sum_k c_k(lambda) * s_k * B_k A_k x,
    c(lambda) = soup_scales(lambda, strength) = 1/K + strength * (lambda - 1/K),

and each micro-batch draws ONE lambda from the run's scheduler (dirichlet with vertex draws, or the
performance scheduler), sets the mix to c(lambda), and takes the lambda-weighted listwise loss (plus
the SFT term and warm start, as for any run) of its lists under that mix, the reference being the base
with every adapter off. So interior points of the simplex are trained, not only the vertices, and the
gain lambda needs is learned by the adapters at strength 1 instead of set by hand afterwards (the
soup's 2.5). Against the soup, at the same budget: soup trains K runs of S steps, each at one
vertex; the mixture trains K x S steps, each at a drawn lambda.

--mixture-learn-strength trains s too (s = exp(theta), one scalar beside the adapters, updated by the
listwise steps only), and the value reached is saved as the run's strength: then no gain is set by
hand, not even the starting 1 after training.

The run folder is a soup run (lwdpo.json conditioning "soup", adapters/<objective>/, soup_strength = the
trained strength, training.mode "mixture"): eval, generate, export, the runtime, app and serve take it unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from transformers import set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from lwdpo_edge.contract import ADAPTERS_DIR, METRICS_FILE, write_run_manifest
from lwdpo_edge.models import load_policy, load_tokenizer, resolve_model
from lwdpo_edge.soup import MAX_STRENGTH, lora_layers, soup_scales
from lwdpo_edge.train.callbacks import MetricsJsonlCallback, RichProgressCallback
from lwdpo_edge.train.config import LambdaDPOConfig
from lwdpo_edge.train.recipe import (SUMMARY_FIELDS, ListDataset, TrainSetupError, check_run_folder, checkpoint_args,
                                     lambda_sampling_setup, load_training_data, lora_settings, open_reference_cache,
                                     reference_cache_summary)
from lwdpo_edge.train.trainer import LambdaDPOTrainer

STRENGTH_FILE = "mixture_strength.json"  # in each checkpoint of a run that learns its strength


class TrainingMix:
    """Keeps every objective's adapter active and trainable, and sets their scales to c(lambda).

    learn_strength: the strength s is trained too, as s = exp(log_strength) (one scalar, kept outside the
    model: MixtureTrainer gives it its own optimizer group, lr --mixture-strength-lr). The scales are then
    0-dim tensors in the graph, so the loss reaches log_strength through every LoRA layer's scaling."""

    def __init__(self, model, objectives, strength: float = 1.0, learn_strength: bool = False):
        self.model, self.objectives = model, list(objectives)
        model.base_model.set_adapter(self.objectives)  # all active; inference_mode False: all trainable
        self.layers = lora_layers(model)
        self.lam: dict[str, float] | None = None
        self.fixed_strength = float(strength)
        self.log_strength = torch.nn.Parameter(torch.tensor(math.log(strength))) if learn_strength else None

    @property
    def strength(self) -> float:
        """The strength now: the fixed one, or the learned one as a float."""
        return self.fixed_strength if self.log_strength is None else float(self._learned_strength().detach())

    def _learned_strength(self) -> torch.Tensor:
        # Capped in log space at the strength the runtime accepts (soup.MAX_STRENGTH); exp keeps it > 0.
        return self.log_strength.clamp(max=math.log(MAX_STRENGTH)).exp()

    def set_lambda(self, lam: dict[str, float], train_strength: bool = True) -> None:
        """Scales c(lambda) for the next forward; train_strength=False: a learned s enters as a constant."""
        if self.log_strength is None:
            scales = soup_scales(lam, self.objectives, self.fixed_strength)
        else:  # soup_scales' rule, with s a tensor: c_k = 1/K + s * (lambda_k - 1/K)
            centre, strength = 1.0 / len(self.objectives), self._learned_strength()
            strength = strength if train_strength else strength.detach()
            scales = [centre + strength * (float(lam[name]) - centre) for name in self.objectives]
        for layer in self.layers:
            for name, scale in zip(self.objectives, scales):
                layer.set_scale(name, scale)  # scaling_k = c_k * alpha_k / r_k, read by the next forward
        self.lam = dict(lam)

    def load_strength(self, folder: Path) -> None:
        """A checkpoint's learned strength (written by `save_strength`), when this mix learns one."""
        if self.log_strength is not None:
            value = json.loads((Path(folder) / STRENGTH_FILE).read_text())["strength"]
            with torch.no_grad():
                self.log_strength.fill_(math.log(value))

    def save_strength(self, folder: Path) -> None:
        if self.log_strength is not None:
            (Path(folder) / STRENGTH_FILE).write_text(json.dumps({"strength": self.strength}))


class MixtureTrainer(LambdaDPOTrainer):
    """LambdaDPOTrainer whose lambda reaches the model as the adapter mix, one lambda per micro-batch."""

    def __init__(self, *args, mix: TrainingMix, mixture_strength_lr: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        self.mix, self.mixture_strength_lr = mix, mixture_strength_lr

    def build_batch(self, records, packed: bool = True):
        (lam,) = self.lambda_sampler.draw(1, self._next_rng())  # one mix per forward: one lambda per micro-batch
        # The SFT warm-up fits the data's style, not the preferences: measured, it pulled a learned s from
        # 1 to 0.69 before the first listwise step (docs/results.md). s learns from the listwise loss only.
        self.mix.set_lambda(lam, train_strength=self.state.global_step >= self.sft_warmup_end())
        return self.encode(records, [lam] * len(records), packed)

    def anchor_losses(self) -> list[float]:
        """The performance scheduler's held-out losses, each anchor measured under its own mix."""
        losses = []
        for name, lam in self.lambda_sampler.anchors:
            self.mix.set_lambda(lam)
            losses.append(super().anchor_losses_at(name, lam))
        return losses

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        strength = self.mix.log_strength
        if strength is not None and not any(strength is p for group in optimizer.param_groups for p in group["params"]):
            # Its own group: created before the LR scheduler, so it follows the same warm-up and decay.
            optimizer.add_param_group({"params": [strength], "lr": self.mixture_strength_lr, "weight_decay": 0.0})
        return optimizer

    def log(self, logs, *args, **kwargs):
        if "loss" in logs and self.mix.log_strength is not None:
            logs["mixture/strength"] = self.mix.strength
        super().log(logs, *args, **kwargs)

    def save_checkpoint_state(self, folder: str) -> None:
        super().save_checkpoint_state(folder)
        self.mix.save_strength(Path(folder))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # The HF Trainer reloads one adapter; a checkpoint holds one sub-folder per objective.
        model = self.accelerator.unwrap_model(model or self.model)
        for name in self.objectives:
            load_adapter_folder(model, name, Path(resume_from_checkpoint) / name)
        self.mix.load_strength(Path(resume_from_checkpoint))


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
        raise TrainSetupError(f"--mixture-init {soup_run}: a soup run is needed, "
                              f"this one's conditioning is {manifest.get('conditioning')!r}")
    if list(manifest["objectives"]) != list(objectives):
        raise TrainSetupError(f"--mixture-init {soup_run}: its objectives {manifest['objectives']} "
                              f"differ from this run's {list(objectives)}")
    if Path(manifest["base_model"]["path"]).resolve() != Path(model_dir).resolve():
        raise TrainSetupError(f"--mixture-init {soup_run}: base model {manifest['base_model']['path']} "
                              f"is not this run's {model_dir}")
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
                                  f"({len(state)} tensors, {len(loaded)} matched; "
                                  "check --lora-r and --lora-target-modules)")


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
        objectives=objectives, lambda_sampler=sampler, scheduler_lists=measured_lists,
        mix=TrainingMix(model, objectives, config.mixture_strength, config.mixture_learn_strength),
        mixture_strength_lr=config.mixture_strength_lr,
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
        adapters={name: f"{ADAPTERS_DIR}/{name}" for name in objectives}, soup_strength=trainer.mix.strength,
        training={"mode": "mixture", "steps": trainer.state.global_step, "records": n_records,
                  "seconds": round(seconds, 1),
                  "final_metrics": {k: v for k, v in last.items() if k == "loss" or "/" in k},
                  "config": {**settings, "condition_on_lambda": False},
                  **reference_cache_summary(trainer.reference_cache)},
    )
