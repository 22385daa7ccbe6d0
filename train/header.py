"""`lwdpo-edge train --conditioning header`: the paper's recipe, one adapter for every lambda.

    lwdpo-edge train --conditioning header --qlora --max-steps 60 --output runs/header

One LoRA adapter learns every objective at once: each list is scored under a lambda drawn per step
(train/lambda_sampling.py: Dirichlet, uniform, fixed, or the performance scheduler, which scores
lists kept out of training), and the lambda is written as a header at the start of the prompt
(--no-condition-on-lambda leaves it out, as the paper's public code does). `run` reads top to bottom:
setup, train, save; the run folder contract (`lwdpo_edge.contract`) is the only thing later stages see.

    RUN/adapter/          the trained adapter
    RUN/checkpoints/      the Trainer's checkpoints (--resume continues from the last)
    RUN/metrics.jsonl     the logged steps
    RUN/lwdpo.json        conditioning "header" (or "none"), objectives, the settings trained with
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console
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
from lwdpo_edge.data.usable import lists_per_objective
from lwdpo_edge.models import load_policy, load_tokenizer, resolve_model
from lwdpo_edge.train.callbacks import MetricsJsonlCallback, RichProgressCallback
from lwdpo_edge.train.config import LambdaDPOConfig
from lwdpo_edge.train.lambda_sampling import build_sampler
from lwdpo_edge.train.setup import (
    SUMMARY_FIELDS,
    ListDataset,
    TrainSetupError,
    last_checkpoint,
    load_training_data,
    lora_settings,
    open_reference_cache,
    reference_cache_summary,
)
from lwdpo_edge.train.trainer import LambdaDPOTrainer, load_scheduler_state


def run(config: LambdaDPOConfig) -> Path:
    """Train and write the run folder; returns it."""
    trainer, config, objectives, model_dir, resume_from, n_records = setup(config)
    started = time.time()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    save(trainer, config, objectives, model_dir, n_records, time.time() - started)
    trainer.accelerator.wait_for_everyone()
    return Path(config.output_dir)


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


def check_run_folder(config: LambdaDPOConfig) -> Path | None:
    """Refuse to mix two runs in one folder; find the checkpoint to resume from."""
    checkpoint = last_checkpoint(Path(config.output_dir, CHECKPOINTS_DIR))
    if config.resume:
        if checkpoint is None:
            raise RunFolderError(f"{config.output_dir}: --resume given but there is no checkpoint to resume from")
        return checkpoint
    if checkpoint is not None or Path(config.output_dir, ADAPTER_DIR).exists():
        raise RunFolderError(f"{config.output_dir} already holds a run; "
                             "pass --resume to continue it or choose another --output")
    return None


def fit_to_objectives(config: LambdaDPOConfig, objectives) -> LambdaDPOConfig:
    """With one objective every lambda is {name: 1}: `lambdas_per_prompt` copies of a list would be
    the same sequences with the same target (the same gradient at L times the cost), so one is used."""
    if len(objectives) > 1:
        return config
    if config.lambdas_per_prompt > 1:
        Console(stderr=True).print(f"[yellow]one objective ({objectives[0]}): every lambda is the same, so "
                                   f"--lambdas-per-prompt {config.lambdas_per_prompt} would repeat each list; "
                                   "using 1[/]")
        return dataclasses.replace(config, lambdas_per_prompt=1)
    return config


def lambda_sampling_setup(config: LambdaDPOConfig, records, heldout, objectives, resume_from):
    """(training lists, lists the performance scheduler measures, the lambda sampler with its state restored)."""
    records, measured_lists = split_scheduler_lists(config, records, heldout)
    sampler = build_sampler(config.lambda_scheduler, objectives, config.lambda_alpha, config.lambda_vertex_prob,
                            config.fixed_lambda, every=config.scheduler_every)
    if resume_from is not None:
        load_scheduler_state(sampler, resume_from)
    return records, measured_lists, sampler


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


def checkpoint_args(config: LambdaDPOConfig) -> LambdaDPOConfig:
    """The Trainer writes checkpoints under RUN_DIR/checkpoints; RUN_DIR keeps the contract files."""
    return dataclasses.replace(config, output_dir=str(Path(config.output_dir) / CHECKPOINTS_DIR))


def save(trainer: LambdaDPOTrainer, config: LambdaDPOConfig, objectives, model_dir: Path, n_records: int,
         seconds: float):
    """The adapter and lwdpo.json (on the main process), and the reference cache."""
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
