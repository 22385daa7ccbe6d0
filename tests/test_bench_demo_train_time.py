"""bench/demo_train_time.py reads a finished run's seconds and listwise losses and compares two arms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import demo_train_time  # noqa: E402


def fake_run(folder: Path, seconds: dict, losses: dict) -> Path:
    (folder / "metrics").mkdir(parents=True)
    per = {name: {"steps": 4, "seconds": s} for name, s in seconds.items()}
    (folder / "lwdpo.json").write_text(json.dumps({"training": {"per_objective": per}}))
    for name, (sft, listwise) in losses.items():
        rows = [{"step": i + 1, "loss": x, "sft_nll": x} for i, x in enumerate(sft)]
        rows += [{"step": len(sft) + i + 1, "loss": x, "sft_nll": 1.0, "rewards/mean": 0.1}
                 for i, x in enumerate(listwise)]
        rows.append({"step": len(rows), "train_runtime": 9.0, "train_loss": 1.0})  # the Trainer's closing row
        (folder / "metrics" / f"{name}.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    return folder


def test_summarise_takes_only_listwise_steps(tmp_path):
    run = fake_run(tmp_path / "new", {"a": 10.0, "b": 30.0}, {"a": ([5.0, 5.0], [2.0, 4.0]), "b": ([9.0], [1.0])})
    s = demo_train_time.summarise(run)
    assert s["train_seconds"] == 40.0
    assert s["adapters"]["a"] == {"steps": 4, "listwise_steps": 2, "seconds": 10.0, "mean_loss": 3.0, "final_loss": 4.0}
    assert s["adapters"]["b"]["mean_loss"] == 1.0


def test_report_prints_ratios_and_the_loss_gap(tmp_path):
    new = demo_train_time.summarise(fake_run(tmp_path / "new", {"a": 10.0}, {"a": ([5.0], [2.0, 4.0])}))
    old = demo_train_time.summarise(fake_run(tmp_path / "old", {"a": 25.0}, {"a": ([5.0], [2.0, 4.5])}))
    text = demo_train_time.report({"new": 20.0, "old": 50.0}, {"new": new, "old": old})
    assert "| a | 10.0 | 25.0 | 2.50 |" in text
    assert "old / new 2.50" in text and "(sum over adapters), old / new: 2.50" in text
    assert "max |mean loss new - old| over adapters: 2.50e-01" in text


def test_a_run_without_listwise_steps_is_named(tmp_path):
    run = fake_run(tmp_path / "r", {"a": 1.0}, {"a": ([5.0, 4.0], [])})
    with pytest.raises(ValueError, match="a.jsonl: no listwise step"):
        demo_train_time.summarise(run)
