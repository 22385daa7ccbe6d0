"""What the training recipes share (train/soup.py, train/header.py, train/user_objective.py).

The training data and its checks, the LoRA shape a config asks for, the run's reference cache, the
settings a run manifest records, and checkpoint look-ups. Each recipe reads setup, train, save in its
own file; the steps they have in common live here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.data.schema import objectives_of
from lwdpo_edge.data.usable import require_usable_lists, usable_objectives_of
from lwdpo_edge.models import LoraSettings
from lwdpo_edge.train.config import LambdaDPOConfig
from lwdpo_edge.train.reference_cache import REFERENCE_CACHE_FILE, ReferenceCache, base_model_identity

HELDOUT_SPLIT = "heldout"

# The config keys a run manifest records under training.config.
SUMMARY_FIELDS = {
    "model", "data", "objectives", "qlora", "lora_r", "lora_alpha", "beta", "tau", "score_normalization", "sft_weight",
    "sft_warmup_steps", "length_normalize", "chunked_logps", "shared_prompt", "cache_reference_logps",
    "condition_on_lambda", "lambda_scheduler", "scheduler_every", "lambda_alpha", "lambda_vertex_prob",
    "lambdas_per_prompt",
    "learning_rate", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
    "max_prompt_tokens", "max_response_tokens",
}


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
    per = ", ".join(f"{name} {n}" for name, n in counts.items())
    skipped = f"; {dropped} list(s) teach no objective and are left out" if dropped else ""
    Console(stderr=True).print(f"lists per objective: {per}{skipped}", highlight=False)


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


def reference_cache_summary(cache: ReferenceCache | None) -> dict:
    """The manifest's record of the reference cache: its file and the base model it belongs to."""
    return {"reference_cache": cache.summary()} if cache is not None and cache.path is not None else {}


def last_checkpoint(folder: Path) -> Path | None:
    """The Trainer's latest checkpoint-N in `folder` (by step, not by name), or None."""
    checkpoints = sorted(Path(folder).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None
