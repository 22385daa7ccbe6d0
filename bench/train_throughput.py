"""Seconds per prompt to learn from a list of N = 4 candidates: lambda-DPO vs TRL DPO on pairs.

    .venv/bin/python bench/train_throughput.py --prompts 8 --rounds 1

Same model (the default SmolLM2-135M, loaded by `lwdpo_edge.models.load_policy`), same prompts
from the shipped dataset, same LoRA, each measurement a fresh child process (its own peak RSS):

  lwdpo            one step per prompt: all 4 candidates in one forward pass (header + lambda)
  trl-all-pairs    the same prompts as all 6 pairs per list, 2 pairs (4 sequences) per step
  trl-best-vs-rest the same prompts as 3 pairs (best by mean z-score vs each other), 2 pairs per step

Both trainers process 4 sequences per optimizer step, so seconds per *prompt* is the fair unit.
Runs alternate per round so machine noise hits all alike; ratios are printed against lwdpo.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_dpo_config, peak_rss_mb, trl_rows

MODES = ("lwdpo", "trl-all-pairs", "trl-best-vs-rest")


def child(mode: str, prompts: int, qlora: bool, threads: int, out: Path) -> dict:
    """One measurement; returns train seconds, steps and this process's peak RSS."""
    import torch

    import lwdpo_edge  # noqa: F401
    from lwdpo_edge.data import load_records
    from lwdpo_edge.models import LoraSettings, load_policy, load_tokenizer, resolve_model

    torch.set_num_threads(threads)
    records = [r for r in load_records("default") if r.meta.get("split") != "heldout"][:prompts]
    if mode == "lwdpo":
        from lwdpo_edge.train.config import LambdaDPOConfig
        from lwdpo_edge.train.recipe import run_training

        config = LambdaDPOConfig(output_dir=str(out / "run"), max_steps=prompts, per_device_train_batch_size=1,
                                 qlora=qlora, save_steps=10_000, max_response_tokens=128, use_cpu=True, seed=0,
                                 conditioning="header", sft_warmup_steps=0, sft_weight=0.0,  # the listwise loss alone
                                 data=str(_records_file(records, out)))
        run = run_training(config)
        summary = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        seconds, steps = summary["train_runtime"], prompts
    else:
        from datasets import Dataset
        from trl import DPOTrainer

        model_dir = resolve_model("default")
        model = load_policy(model_dir, qlora=qlora, lora=LoraSettings())
        rows = trl_rows(records, "all-pairs" if mode == "trl-all-pairs" else "best-vs-rest")
        args = bench_dpo_config(out / "trl", max_length=256, per_step=2, steps=len(rows) // 2)
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=load_tokenizer(model_dir))
        seconds, steps = trainer.train().metrics["train_runtime"], len(rows) // 2
    peak = peak_rss_mb()
    return {"mode": mode, "qlora": qlora, "seconds": seconds, "steps": steps, "prompts": prompts, "peak_rss_mb": peak}


def _records_file(records, out: Path) -> Path:
    from lwdpo_edge.data.loaders import save_records

    return save_records(records, out / "lists.jsonl")


def measure(mode: str, prompts: int, qlora: bool, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--child", mode, "--prompts", str(prompts), "--threads", str(threads),
               "--out", tmp] + (["--qlora"] if qlora else [])
        result = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--qlora", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.prompts, args.qlora, args.threads, args.out)))
        return

    print(f"machine: {platform.machine()}, {__import__('os').cpu_count()} cores, {args.threads} torch threads; "
          f"default model, {args.prompts} prompts x 4 candidates, fp32 LoRA unless noted")
    plan = [(m, False) for m in MODES] + [("lwdpo", True)]
    results: dict[tuple[str, bool], list[dict]] = {key: [] for key in plan}
    started = time.time()
    for _ in range(args.rounds):
        for mode, qlora in plan:
            results[(mode, qlora)].append(measure(mode, args.prompts, qlora, args.threads))
    base = statistics.median(r["seconds"] / r["prompts"] for r in results[("lwdpo", False)])
    base_rss = statistics.median(r["peak_rss_mb"] for r in results[("lwdpo", False)])
    print(f"{'run':<26}{'steps':>6}{'s/prompt':>10}{'vs lwdpo':>10}{'peak RSS MB':>13}{'vs lwdpo':>10}")
    for (mode, qlora), runs in results.items():
        per_prompt = statistics.median(r["seconds"] / r["prompts"] for r in runs)
        rss = statistics.median(r["peak_rss_mb"] for r in runs)
        name = mode + (" (QLoRA)" if qlora else "")
        print(f"{name:<26}{runs[0]['steps']:>6}{per_prompt:>10.2f}{per_prompt / base:>10.2f}"
              f"{rss:>13.0f}{rss / base_rss:>10.2f}")
    print(f"total bench time {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
