"""`lwdpo-edge train` (the default, `--conditioning soup`): one LoRA adapter per objective, mixed at inference.

    lwdpo-edge train --conditioning soup --max-steps 60 --output runs/soup   # 60 steps per adapter

Adapter k is an ordinary lambda-DPO run with lambda fixed at objective k's vertex (the listwise
loss of objective k alone) and no header in the prompt: the adapter, not the prompt, is the
condition. Every adapter gets the same data, steps, seed and learning rate. At inference
lwdpo_edge.soup computes base + sum_k lambda_k * delta_k. `run` reads top to bottom: setup, train
each objective's adapter, save the manifest.

    RUN/adapters/<objective>/      the trained adapter of that objective
    RUN/checkpoints/<objective>/   its Trainer checkpoints
    RUN/metrics/<objective>.jsonl  its logged steps
    RUN/lwdpo.json                 conditioning "soup", adapters {objective: "adapters/<objective>"}

Objectives are trained in turn. A finished objective has its adapter folder; --resume skips those
and continues the interrupted one from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from transformers import set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from lwdpo_edge.contract import ADAPTERS_DIR, CHECKPOINTS_DIR, Conditioning, RunFolderError, write_run_manifest
from lwdpo_edge.data.usable import lists_for
from lwdpo_edge.models import load_policy, load_tokenizer, resolve_model
from lwdpo_edge.soup import DEFAULT_STRENGTH as SOUP_STRENGTH_DEFAULT
from lwdpo_edge.train.callbacks import MetricsJsonlCallback, RichProgressCallback
from lwdpo_edge.train.config import LambdaDPOConfig
from lwdpo_edge.train.lambda_sampling import FixedSampler
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
from lwdpo_edge.train.trainer import LambdaDPOTrainer

METRICS_DIR = "metrics"


def run(config: LambdaDPOConfig) -> Path:
    """Train every objective's adapter in turn, then write lwdpo.json; returns the run folder."""
    if config.threads:
        torch.set_num_threads(config.threads)
    records, _, objectives = load_training_data(config)
    if len(objectives) < 2:
        raise TrainSetupError(f"--conditioning soup needs at least 2 objectives, the data has {objectives}")
    check_soup_folder(config, objectives)
    model_dir = resolve_model(config.model)
    tokenizer = load_tokenizer(model_dir)
    run_dir, summaries = Path(config.output_dir), {}
    (run_dir / METRICS_DIR).mkdir(parents=True, exist_ok=True)
    for objective in objectives:
        if adapter_done(run_dir, objective):
            continue  # finished before an interruption; its summary is lost, its adapter is not
        summaries[objective] = train_one(config, objective, objectives, records, model_dir, tokenizer)
    write_soup_manifest(config, objectives, model_dir, len(records), summaries)
    return run_dir


def check_soup_folder(config: LambdaDPOConfig, objectives: list[str]) -> None:
    """Refuse to mix two runs in one folder (as header.check_run_folder does for header runs)."""
    run_dir = Path(config.output_dir)
    started = any(adapter_done(run_dir, name) or last_checkpoint(run_dir / CHECKPOINTS_DIR / name)
                  for name in objectives)
    if config.resume and not started:
        raise RunFolderError(f"{run_dir}: --resume given but there is no soup adapter or checkpoint to resume from")
    if not config.resume and (started or (run_dir / CHECKPOINTS_DIR).exists()):
        raise RunFolderError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --output")


def adapter_done(run_dir: Path, objective: str) -> bool:
    return (run_dir / ADAPTERS_DIR / objective / "adapter_config.json").is_file()


def train_one(config: LambdaDPOConfig, objective: str, objectives, records, model_dir: Path, tokenizer) -> dict:
    """Train (or resume) the adapter of one objective and save it; returns its training summary.

    Every objective's sub-run sees the same header-free sequences under the same base, so they
    share RUN/reference_logps.json: each one opens what the previous ones saved."""
    sub = vertex_config(config, objective)
    records = lists_for(records, objective, objectives)  # the vertex learns only from lists scored on it
    run_dir = Path(config.output_dir)
    resume_from = last_checkpoint(Path(sub.output_dir)) if config.resume else None
    set_seed(config.seed)  # every adapter starts from the same LoRA init
    model = load_policy(model_dir, qlora=config.qlora, lora=lora_settings(config),
                        gradient_checkpointing=config.activation_checkpointing)
    trainer = LambdaDPOTrainer(
        model=model, args=sub, train_dataset=ListDataset(records), processing_class=tokenizer,
        objectives=objectives, lambda_sampler=FixedSampler(objectives, {objective: 1.0}),
        reference_cache=open_reference_cache(config, model_dir, model),
        callbacks=[RichProgressCallback(objectives),
                   MetricsJsonlCallback(run_dir / METRICS_DIR / f"{objective}.jsonl")],
    )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    started = time.time()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    trainer.save_reference_cache()
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(run_dir / ADAPTERS_DIR / objective)
    trainer.accelerator.wait_for_everyone()
    last = next((row for row in reversed(trainer.state.log_history) if "loss" in row), {})
    return {"steps": trainer.state.global_step, "seconds": round(time.time() - started, 1), "lists": len(records),
            "final_metrics": {k: v for k, v in last.items() if k == "loss" or "/" in k},
            **reference_cache_summary(trainer.reference_cache)}


def vertex_config(config: LambdaDPOConfig, objective: str) -> LambdaDPOConfig:
    """The sub-run of one objective: lambda fixed at its vertex, no header, checkpoints in their own folder."""
    return dataclasses.replace(
        config, conditioning=Conditioning.HEADER, condition_on_lambda=False, lambda_scheduler="fixed",
        fixed_lambda=f"{objective}=1", lambdas_per_prompt=1,
        output_dir=str(Path(config.output_dir) / CHECKPOINTS_DIR / objective),
    )


def write_soup_manifest(config: LambdaDPOConfig, objectives, model_dir: Path, n_records: int, summaries: dict) -> None:
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k in SUMMARY_FIELDS | {"conditioning"}}
    write_run_manifest(
        Path(config.output_dir), objectives,
        base_model={"spec": config.model, "path": str(model_dir)},
        conditioning=Conditioning.SOUP,
        adapters={name: f"{ADAPTERS_DIR}/{name}" for name in objectives},
        soup_strength=SOUP_STRENGTH_DEFAULT if config.soup_strength is None else config.soup_strength,
        training={"steps": next((s["steps"] for s in summaries.values()), config.max_steps),  # per adapter
                  "records": n_records,
                  "per_objective": summaries,
                  **last_reference_cache(summaries),
                  "config": {**settings, "condition_on_lambda": False, "lambda_scheduler": "fixed"}},
    )


def last_reference_cache(summaries: dict) -> dict:
    """The reference cache record of the last sub-run (its file holds every objective's entries),
    taken out of the per-objective summaries."""
    records = [summary.pop("reference_cache") for summary in summaries.values() if "reference_cache" in summary]
    return {"reference_cache": records[-1]} if records else {}
