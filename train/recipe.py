"""The training recipe, top to bottom: setup, train, save, cleanup.

    lwdpo-edge train --qlora --model default --data default --max-steps 60 --output runs/demo

Reads like torchtune's recipes: one function per phase, the run folder contract
(`lwdpo_edge.contract`) is the only thing later stages see.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from lwdpo_edge.contract import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    METRICS_FILE,
    Conditioning,
    RunFolderError,
    write_run_manifest,
)
from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.data.schema import objectives_of
from lwdpo_edge.data.usable import lists_per_objective, require_usable_lists, usable_objectives_of
from lwdpo_edge.models import LoraSettings, load_policy, load_tokenizer, resolve_model
from lwdpo_edge.train.callbacks import MetricsJsonlCallback, RichProgressCallback
from lwdpo_edge.train.config import LambdaDPOConfig
from lwdpo_edge.train.lambda_sampling import build_sampler
from lwdpo_edge.train.reference_cache import REFERENCE_CACHE_FILE, ReferenceCache, base_model_identity
from lwdpo_edge.train.trainer import LambdaDPOTrainer, load_scheduler_state

HELDOUT_SPLIT = "heldout"


class TrainSetupError(ValueError):
    """Data or settings that cannot make a training run (reported as one line by the CLI)."""


class ListDataset(torch.utils.data.Dataset):
    """Records as a map-style dataset (the HF Trainer needs len() and indexing)."""

    def __init__(self, records):
        self.records = list(records)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]


def load_training_data(config: LambdaDPOConfig):
    """(training records, held-out records, objective order). Errors come before any model loads.

    Lists that can teach no objective (partial labels: fewer than two answers scored, or all tied) are
    left out, and an objective that no list can teach is refused (lwdpo_edge/data/usable.py)."""
    records = load_records(config.data, objectives=config.objective_list, skip_bad=config.skip_bad_rows)
    train = [r for r in records if r.meta.get("split") != HELDOUT_SPLIT]
    heldout = [r for r in records if r.meta.get("split") == HELDOUT_SPLIT]
    if not train:
        raise TrainSetupError(f"{config.data}: no training records (all {len(records)} are in the held-out split)")
    objectives = config.objective_list or objectives_of(train)
    counts = require_usable_lists(train, objectives, str(config.data))
    kept = [r for r in train if usable_objectives_of(r, objectives)]
    report_usable_lists(counts, len(train) - len(kept))
    return kept, heldout, objectives


def report_usable_lists(counts: dict[str, int], dropped: int) -> None:
    """One line: how many lists each objective trains on (a partly labelled data set trains each on fewer)."""
    from rich.console import Console

    per = ", ".join(f"{name} {n}" for name, n in counts.items())
    skipped = f"; {dropped} list(s) teach no objective and are left out" if dropped else ""
    Console(stderr=True).print(f"lists per objective: {per}{skipped}", highlight=False)


def split_scheduler_lists(config: LambdaDPOConfig, train: list, heldout: list) -> tuple[list, list]:
    """(training records, lists the performance scheduler measures).

    Held-out lists when the data has them; otherwise the last `scheduler_lists` training lists are
    set aside (and not trained on), so the scheduler never scores lists it fits.
    """
    if config.lambda_scheduler != "performance":
        return train, []
    if heldout:
        return train, heldout[: config.scheduler_lists]
    if len(train) <= config.scheduler_lists:
        raise TrainSetupError(f"{config.data}: too few lists ({len(train)}) to set {config.scheduler_lists} "
                              "aside for the scheduler")
    return train[: -config.scheduler_lists], train[-config.scheduler_lists:]


def fit_to_objectives(config: LambdaDPOConfig, objectives) -> LambdaDPOConfig:
    """With one objective every lambda is {name: 1}: `lambdas_per_prompt` copies of a list would be
    the same sequences with the same target (the same gradient at L times the cost), so one is used."""
    if len(objectives) > 1:
        return config
    if config.lambdas_per_prompt > 1:
        from rich.console import Console

        Console(stderr=True).print(f"[yellow]one objective ({objectives[0]}): every lambda is the same, so "
                                   f"--lambdas-per-prompt {config.lambdas_per_prompt} would repeat each list; "
                                   "using 1[/]")
        return dataclasses.replace(config, lambdas_per_prompt=1)
    return config


def checkpoint_args(config: LambdaDPOConfig) -> LambdaDPOConfig:
    """The Trainer writes checkpoints under RUN_DIR/checkpoints; RUN_DIR keeps the contract files."""
    return dataclasses.replace(config, output_dir=str(Path(config.output_dir) / CHECKPOINTS_DIR))


def check_run_folder(config: LambdaDPOConfig) -> Path | None:
    """Refuse to mix two runs in one folder; find the checkpoint to resume from."""
    checkpoints = sorted(Path(config.output_dir, CHECKPOINTS_DIR).glob("checkpoint-*"),
                         key=lambda p: int(p.name.split("-")[1]))
    if config.resume:
        if not checkpoints:
            raise RunFolderError(f"{config.output_dir}: --resume given but there is no checkpoint to resume from")
        return checkpoints[-1]
    if checkpoints or Path(config.output_dir, ADAPTER_DIR).exists():
        raise RunFolderError(f"{config.output_dir} already holds a run; "
                             "pass --resume to continue it or choose another --output")
    return None


def lora_settings(config: LambdaDPOConfig) -> LoraSettings:
    """The adapter this config asks for (also used by bench/compare.py's TRL arm)."""
    targets = config.lora_target_modules
    return LoraSettings(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                        target_modules=targets if targets == "all-linear" else targets.split(","))


def open_reference_cache(config: LambdaDPOConfig, model_dir: Path, model) -> ReferenceCache | None:
    """RUN_DIR/reference_logps.json for this base model (entries of another base are not used), or None."""
    if not config.cache_reference_logps:
        return None
    identity = base_model_identity(model_dir, qlora=config.qlora, device_type=model.device.type)
    return ReferenceCache.open(Path(config.output_dir) / REFERENCE_CACHE_FILE, identity)


def lambda_sampling_setup(config: LambdaDPOConfig, records, heldout, objectives, resume_from):
    """(training lists, lists the performance scheduler measures, the lambda sampler with its state restored)."""
    records, measured_lists = split_scheduler_lists(config, records, heldout)
    sampler = build_sampler(config.lambda_scheduler, objectives, config.lambda_alpha, config.lambda_vertex_prob,
                            config.fixed_lambda, every=config.scheduler_every)
    if resume_from is not None:
        load_scheduler_state(sampler, resume_from)
    return records, measured_lists, sampler


def setup(config: LambdaDPOConfig):
    """(trainer, config as trained, objectives, base model folder, checkpoint to resume or None, training lists)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    resume_from = check_run_folder(config)
    records, heldout, objectives = load_training_data(config)
    config = fit_to_objectives(config, objectives)
    records, measured_lists, sampler = lambda_sampling_setup(config, records, heldout, objectives, resume_from)
    model_dir = resolve_model(config.model)
    tokenizer = load_tokenizer(model_dir)
    set_seed(config.seed)  # LoRA's random init happens before the Trainer seeds anything
    model = load_policy(model_dir, qlora=config.qlora, lora=lora_settings(config),
                        gradient_checkpointing=config.activation_checkpointing)
    trainer = LambdaDPOTrainer(
        model=model, args=checkpoint_args(config), train_dataset=ListDataset(records), processing_class=tokenizer,
        objectives=objectives, lambda_sampler=sampler, scheduler_lists=measured_lists,
        reference_cache=open_reference_cache(config, model_dir, model),
        callbacks=[RichProgressCallback(objectives), MetricsJsonlCallback(Path(config.output_dir) / METRICS_FILE)],
    )
    for noisy in (PrinterCallback, ProgressCallback):  # the rich bar replaces them
        trainer.remove_callback(noisy)
    return trainer, config, objectives, model_dir, resume_from, len(records)


def save(trainer: LambdaDPOTrainer, config: LambdaDPOConfig, objectives, model_dir: Path, n_records: int,
         seconds: float):
    run_dir = Path(config.output_dir)
    trainer.save_reference_cache()
    if not trainer.is_world_process_zero():
        return
    trainer.model.save_pretrained(run_dir / ADAPTER_DIR)
    last = next((row for row in reversed(trainer.state.log_history) if "loss" in row), {})
    write_run_manifest(
        run_dir, objectives,
        base_model={"spec": config.model, "path": str(model_dir)},
        conditioning=Conditioning.HEADER if config.condition_on_lambda else "none",
        training={
            "steps": trainer.state.global_step,
            "records": n_records,
            "lists_per_objective": lists_per_objective(trainer.train_dataset.records, objectives),
            "seconds": round(seconds, 1),
            "final_metrics": {k: v for k, v in last.items() if k == "loss" or "/" in k},
            "config": {k: v for k, v in asdict(config).items() if k in SUMMARY_FIELDS},
            **reference_cache_summary(trainer.reference_cache),
        },
    )


def reference_cache_summary(cache: ReferenceCache | None) -> dict:
    """The manifest's record of the reference cache: its file and the base model it belongs to."""
    return {"reference_cache": cache.summary()} if cache is not None and cache.path is not None else {}


SUMMARY_FIELDS = {
    "model", "data", "objectives", "qlora", "lora_r", "lora_alpha", "beta", "tau", "score_normalization", "sft_weight",
    "sft_warmup_steps", "length_normalize", "chunked_logps", "shared_prompt", "cache_reference_logps",
    "condition_on_lambda", "lambda_scheduler", "scheduler_every", "lambda_alpha", "lambda_vertex_prob",
    "lambdas_per_prompt",
    "learning_rate", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
    "max_prompt_tokens", "max_response_tokens",
}


def run_training(config: LambdaDPOConfig) -> Path:
    """Train and write the run folder; returns it."""
    if config.feedback:  # one more adapter, `user`, for an existing soup run (train/user_objective.py)
        from lwdpo_edge.train.user_objective import add_user_objective

        return add_user_objective(config)
    if config.conditioning == Conditioning.SOUP:  # one adapter per objective: its own small loop
        from lwdpo_edge.train.soup import run_soup_training

        return run_soup_training(config)
    trainer, config, objectives, model_dir, resume_from, n_records = setup(config)
    started = time.time()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    save(trainer, config, objectives, model_dir, n_records, time.time() - started)
    trainer.accelerator.wait_for_everyone()
    return Path(config.output_dir)
