"""`make demo`'s training on the full-logits path and on the defaults, side by side in one run (same steps, data).

    .venv/bin/python bench/demo_train_time.py --threads 1                 # both arms at once, 1 thread each
    .venv/bin/python bench/demo_train_time.py --max-steps 4 --out runs/bench-demo-smoke   # a quick look

Arms (each a `lwdpo-edge train --config train/configs/demo.yaml` child process, as the demo runs it):
  new  the defaults: candidate log-probs through the LM head in chunks, the prompt once per list,
       reference log-probs cached;
  old  --no-chunked-logps --no-shared-prompt --no-cache-reference-logps: the full-logits path
       (no chunked LM head, no shared prompt, no reference cache).
By default the two run at the same time (--threads each), so the machine's noise falls on both alike;
--sequential runs them one after the other. Prints wall seconds, training seconds per adapter, the
ratio old / new, and the losses of both (the two paths are exact to ~1e-6 per step, so the curves
agree until rounding grows over the steps: compared as the mean listwise loss per adapter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "lwdpo_edge.cli"]
ARMS = {"new": [], "old": ["--no-chunked-logps", "--no-shared-prompt", "--no-cache-reference-logps"]}


def metrics_files(run: Path) -> dict[str, Path]:
    """Per-adapter metrics of a soup run (metrics/NAME.jsonl), or the single metrics.jsonl of other modes."""
    files = {p.stem: p for p in sorted((run / "metrics").glob("*.jsonl"))}
    return files or ({"all": run / "metrics.jsonl"} if (run / "metrics.jsonl").is_file() else {})


def summarise(run: Path) -> dict:
    """Training seconds and losses of each adapter of a finished run: seconds from lwdpo.json; from its
    metrics the mean loss over the listwise steps (those logging rewards; SFT warm-up steps do not)."""
    training = json.loads((run / "lwdpo.json").read_text())["training"]
    seconds = {name: part["seconds"] for name, part in training.get("per_objective", {}).items()}
    adapters = {}
    for name, path in metrics_files(run).items():
        steps = [row for row in map(json.loads, path.read_text().splitlines()) if "loss" in row and "step" in row]
        listwise = [row["loss"] for row in steps if "rewards/mean" in row]
        if not listwise:
            raise ValueError(f"{path}: no listwise step logged (rewards/mean); did the run finish its SFT warm-up?")
        adapters[name] = {"steps": len(steps), "listwise_steps": len(listwise), "seconds": seconds.get(name),
                          "mean_loss": sum(listwise) / len(listwise), "final_loss": listwise[-1]}
    return {"adapters": adapters, "train_seconds": sum(seconds.values()) or None}


def launch(arm: str, args, out: Path) -> tuple[subprocess.Popen, float]:
    command = CLI + ["train", "--config", str(args.config), "--output", str(out / arm), "--threads", str(args.threads),
                     *ARMS[arm]] + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    log = open(out / f"{arm}.log", "w")
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), time.time()


def run_arms(args) -> dict[str, float]:
    """Wall seconds of each arm; a failed arm stops the bench with its log's path."""
    args.out.mkdir(parents=True, exist_ok=True)
    order = [["new", "old"]] if not args.sequential else [["new"], ["old"]]
    walls = {}
    for group in order:
        running = {arm: launch(arm, args, args.out) for arm in group}
        for arm, (process, started) in running.items():
            if process.wait() != 0:
                raise SystemExit(f"arm {arm} failed: see {args.out / (arm + '.log')}")
            walls[arm] = time.time() - started
    return walls


def report(walls: dict[str, float], summaries: dict[str, dict]) -> str:
    new, old = summaries["new"], summaries["old"]
    rows = ["| adapter | new s | old s | old / new | new listwise loss (mean) | old | new final | old final |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, a in new["adapters"].items():
        b = old["adapters"][name]
        ratio = f"{b['seconds'] / a['seconds']:.2f}" if a["seconds"] and b["seconds"] else ""
        rows.append(f"| {name} | {a['seconds'] or ''} | {b['seconds'] or ''} | {ratio} | {a['mean_loss']:.4f} | "
                    f"{b['mean_loss']:.4f} | {a['final_loss']:.4f} | {b['final_loss']:.4f} |")
    rows.append(f"\nwall s, new {walls['new']:.0f} / old {walls['old']:.0f}: "
                f"old / new {walls['old'] / walls['new']:.2f}")
    if new["train_seconds"] and old["train_seconds"]:
        rows.append(f"training s (sum over adapters), old / new: {old['train_seconds'] / new['train_seconds']:.2f}")
    gaps = [abs(new["adapters"][n]["mean_loss"] - old["adapters"][n]["mean_loss"]) for n in new["adapters"]]
    rows.append(f"max |mean loss new - old| over adapters: {max(gaps):.2e}")
    return "\n".join(rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "train/configs/demo.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench-demo")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm (both arms run at once)")
    parser.add_argument("--max-steps", type=int, help="override the config's steps (per adapter for a soup)")
    parser.add_argument("--sequential", action="store_true", help="one arm after the other, each alone")
    args = parser.parse_args(argv)
    walls = run_arms(args)
    summaries = {arm: summarise(args.out / arm) for arm in ARMS}
    print(report(walls, summaries))
    result = {"walls": walls, "summaries": summaries, "settings": {k: str(v) for k, v in vars(args).items()}}
    (args.out / "demo_train_time.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
