"""`lwdpo-edge train --output RUN --feedback FILE`: add a `user` objective to an existing soup run.

    lwdpo-edge chat runs/demo/export/demo.q8_0.gguf     # Alternatives panel -> ~/.local/share/lwdpo-edge/feedback.jsonl
    lwdpo-edge train --output runs/demo --feedback ~/.local/share/lwdpo-edge/feedback.jsonl
    lwdpo-edge export runs/demo                         # the export (and the app, serve) now has a `user` slider

The chat app's judgements (lwdpo_edge/feedback_data.py: one list per judgement, score `user` = -rank) train
ONE more adapter, exactly as train/soup.py trains each objective's: lambda fixed at the `user` vertex,
no header, the same base, LoRA shape and recipe. The other adapters are not touched, so the cost is
one short adapter run over a few dozen lists, not a new soup. The run's lwdpo.json then lists `user`
among its objectives and adapters; every consumer (export, runtime, app, serve) reads objectives from
the contract, so each shows and mixes a `user` slider like the built-in ones. The default lambda
becomes uniform over all objectives (the centre mix, c_k = 1/K for every adapter).

Asked again with more judgements, the `user` adapter is trained again from the base on all of them.

Only soup runs can gain an objective this way: a header run is one adapter trained on every
objective's header at once, and adding one would mean training it again on all objectives.

`run` reads top to bottom: setup (the soup run, the judgements, the sub-run's settings), train the
`user` adapter (train/soup.py's `train_one`), save lwdpo.json.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch
from rich.console import Console
from rich.text import Text

from lwdpo_edge.contract import (
    ADAPTERS_DIR,
    CHECKPOINTS_DIR,
    Conditioning,
    RunFolderError,
    read_run_manifest,
    soup_adapter_dirs,
    write_run_manifest,
)
from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.data.schema import DataError, ListwiseRecord
from lwdpo_edge.feedback_data import USER_OBJECTIVE
from lwdpo_edge.models import load_tokenizer
from lwdpo_edge.train.config import LambdaDPOConfig
from lwdpo_edge.train.setup import TrainSetupError
from lwdpo_edge.train.soup import METRICS_DIR, train_one



def run(config: LambdaDPOConfig) -> Path:
    """Train the `user` adapter of the soup run in config.output_dir on config.feedback; update lwdpo.json."""
    run_dir = Path(config.output_dir)
    manifest = check_soup_run(run_dir)
    records = load_feedback(config.feedback, config.feedback_min)
    sub = feedback_config(config, run_dir, manifest)
    if sub.threads:
        torch.set_num_threads(sub.threads)
    shutil.rmtree(run_dir / CHECKPOINTS_DIR / USER_OBJECTIVE, ignore_errors=True)  # a retrain starts from the base
    (run_dir / METRICS_DIR / f"{USER_OBJECTIVE}.jsonl").unlink(missing_ok=True)
    (run_dir / METRICS_DIR).mkdir(parents=True, exist_ok=True)
    model_dir = Path(sub.model)
    summary = train_one(sub, USER_OBJECTIVE, [USER_OBJECTIVE], records, model_dir, load_tokenizer(model_dir))
    summary.update(feedback=str(Path(config.feedback).expanduser()), judgements=len(records))
    objectives = [name for name in manifest["objectives"] if name != USER_OBJECTIVE] + [USER_OBJECTIVE]
    training = dict(manifest.get("training") or {})
    training["per_objective"] = {**(training.get("per_objective") or {}), USER_OBJECTIVE: summary}
    write_soup_manifest_keeping(run_dir, manifest, objectives, training)
    return run_dir


def check_soup_run(run_dir: Path) -> dict:
    """The run's manifest, if it is a soup run with every adapter in place; a clear error otherwise."""
    manifest = read_run_manifest(run_dir)  # RunFolderError: not a run folder
    conditioning = manifest.get("conditioning", "header")
    if conditioning != Conditioning.SOUP:
        raise TrainSetupError(
            f"{run_dir}: --feedback adds a '{USER_OBJECTIVE}' adapter to an adapter-soup run; this run's conditioning "
            f"is {conditioning!r} (one adapter for every objective), which would have to be trained again on all "
            f"objectives. Train a soup run (the default: lwdpo-edge train --output NEW_RUN), then add --feedback to it")
    soup_adapter_dirs(run_dir, manifest)  # RunFolderError when an adapter folder is missing
    return manifest


def load_feedback(path: str, minimum: int, console: Console | None = None) -> list[ListwiseRecord]:
    """The judgements in `path` with their `user` scores only. A bad line is printed as FILE:LINE: field:
    problem and skipped (never trained on); fewer than `minimum` good ones is a TrainSetupError with the count."""
    console = console or Console(stderr=True)
    problems: list[DataError] = []
    try:
        records = load_records(path, skip_bad=True, on_skip=problems.append)
    except DataError as err:  # a missing file, or not one valid row (the bad ones are in problems already)
        if "no such file" in str(err):
            raise
        records = []
    good = []
    for record in records:
        scored = [r for r in record.responses if r.scores.get(USER_OBJECTIVE) is not None]
        if len(scored) < 2:
            problems.append(DataError(f"fewer than 2 responses with a '{USER_OBJECTIVE}' score: not a judgement",
                                      source=record.source, field="responses"))
            continue
        for response in record.responses:  # the user adapter learns from the user's ranking alone
            response.scores = {USER_OBJECTIVE: response.scores.get(USER_OBJECTIVE)}
        good.append(record)
    for problem in problems:
        console.print(Text(f"skipped {problem}", style="yellow"), soft_wrap=True)
    if len(good) < minimum:
        skipped = f" ({len(problems)} bad line(s) skipped, listed above)" if problems else ""
        raise TrainSetupError(f"{path}: {len(good)} judgement(s){skipped}; training a '{USER_OBJECTIVE}' slider needs "
                              f"at least {minimum} (--feedback-min): "
                              "rank more answers in the chat app's Alternatives panel")
    return good


def feedback_config(config: LambdaDPOConfig, run_dir: Path, manifest: dict) -> LambdaDPOConfig:
    """The sub-run's settings: the run's base model and LoRA shape; epochs over the judgements unless --max-steps."""
    base = Path(manifest["base_model"]["path"])
    if not (base / "config.json").is_file():
        raise RunFolderError(f"{run_dir}: its base model {base} is gone; it is needed to train a matching adapter")
    epochs = config.feedback_epochs if config.max_steps == -1 else config.num_train_epochs
    return dataclasses.replace(config, model=str(base), data=str(config.feedback), num_train_epochs=epochs,
                               **sibling_lora(run_dir, manifest))


def sibling_lora(run_dir: Path, manifest: dict) -> dict:
    """LoRA shape of the run's existing adapters (rank, alpha, targets): the new one matches them, so
    the mix, the rank-concatenated default-mix export and the GGUF adapters treat it like the others."""
    others = [name for name in manifest["objectives"] if name != USER_OBJECTIVE]
    config = json.loads((run_dir / manifest["adapters"][others[0]] / "adapter_config.json").read_text())
    targets = config["target_modules"]
    return {"lora_r": int(config["r"]), "lora_alpha": int(config["lora_alpha"]),
            "lora_dropout": float(config.get("lora_dropout") or 0.0),
            "lora_target_modules": targets if isinstance(targets, str) else ",".join(sorted(targets))}


def write_soup_manifest_keeping(run_dir: Path, manifest: dict, objectives: list[str], training: dict) -> None:
    """lwdpo.json with the new objective list, every adapter, the same base and strength; default lambda uniform."""
    summary = training["per_objective"][USER_OBJECTIVE]
    if "reference_cache" in summary:
        training["reference_cache"] = summary.pop("reference_cache")
    write_run_manifest(run_dir, objectives, base_model=manifest["base_model"], training=training,
                       conditioning=Conditioning.SOUP,
                       adapters={name: manifest["adapters"].get(name, f"{ADAPTERS_DIR}/{name}") for name in objectives},
                       soup_strength=manifest.get("soup_strength"))
