"""Trainer callbacks: a rich progress bar with the metrics that matter, and metrics.jsonl."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback


class RichProgressCallback(TrainerCallback):
    """Step, loss, per-objective accuracy and ETA on one line (rank 0 only).

    Hand-written because HF's tqdm bar cannot show per-objective metrics.
    """

    def __init__(self, objectives: list[str]):
        self.objectives = objectives
        self.progress: Progress | None = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, stats="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs or "loss" not in logs:
            return
        accs = " ".join(f"{name[:5]}={logs[f'acc/{name}']:.2f}" for name in self.objectives if f"acc/{name}" in logs)
        self.progress.update(self.task, stats=f"loss={logs['loss']:.4f} acc[{accs}]")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class MetricsJsonlCallback(TrainerCallback):
    """Append every training log to RUN_DIR/metrics.jsonl (rank 0).

    On resume, lines past the checkpoint's step are dropped first, so the file reads like the log
    of one uninterrupted run.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.started = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= state.global_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time() - self.started, 3), **logs}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
