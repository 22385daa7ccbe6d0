"""QLoRA vs fp32 LoRA on the default model: seconds per optimizer step and peak RSS, side by side.

    .venv/bin/python bench/train_memory.py --steps 6 --rounds 2

Each measurement is a fresh `lwdpo-edge train` process (so peak RSS is that run's alone), run in
alternating order (qlora, fp32, qlora, fp32, ...) so machine noise hits both alike; the ratio is
printed per round and as a median. Same data, batch, lambdas and seed for both.
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

ROOT = Path(__file__).resolve().parents[1]


def one_run(qlora: bool, steps: int, threads: int, batch: int, workdir: Path) -> dict:
    """Train `steps` optimizer steps in a child process; time per step excludes step 1 (warm-up)."""
    out = workdir / f"{'qlora' if qlora else 'fp32'}-{time.time_ns()}"
    cmd = [sys.executable, str(ROOT / "bench" / "peak_rss.py"), "lwdpo_edge.cli", "train",
           "--output", str(out), "--max-steps", str(steps),
           "--per-device-train-batch-size", str(batch), "--lambdas-per-prompt", "1", "--save-steps", "1000",
           "--threads", str(threads), "--seed", "0", "--max-response-tokens", "128", "--use-cpu"]
    if qlora:
        cmd.append("--qlora")
    started = time.time()
    child = subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.time() - started
    peak_mb = float(child.stderr.rsplit("PEAK_RSS_MB", 1)[1].split()[0])
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    step_seconds = (rows[-1]["time"] - rows[0]["time"]) / (len(rows) - 1)
    return {"step_s": step_seconds, "peak_rss_mb": peak_mb, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="prompts per step (each with all its candidates)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"default model, batch {args.batch} prompts x N candidates, {args.steps} steps, {args.threads} threads")
    results = {"qlora": [], "fp32": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for name in ("qlora", "fp32"):
                results[name].append(one_run(name == "qlora", args.steps, args.threads, args.batch, Path(tmp)))
            q, f = results["qlora"][-1], results["fp32"][-1]
            print(f"round {round_index + 1}: qlora {q['step_s']:.2f} s/step, {q['peak_rss_mb']:.0f} MB | "
                  f"fp32 LoRA {f['step_s']:.2f} s/step, {f['peak_rss_mb']:.0f} MB | "
                  f"qlora/fp32: time {q['step_s'] / f['step_s']:.2f}, "
                  f"peak RSS {q['peak_rss_mb'] / f['peak_rss_mb']:.2f}")
    q_step = statistics.median(r["step_s"] for r in results["qlora"])
    f_step = statistics.median(r["step_s"] for r in results["fp32"])
    q_rss = statistics.median(r["peak_rss_mb"] for r in results["qlora"])
    f_rss = statistics.median(r["peak_rss_mb"] for r in results["fp32"])
    print(f"median: qlora {q_step:.2f} s/step {q_rss:.0f} MB | fp32 LoRA {f_step:.2f} s/step {f_rss:.0f} MB | "
          f"ratios qlora/fp32: time {q_step / f_step:.2f}, peak RSS {q_rss / f_rss:.2f}")


if __name__ == "__main__":
    main()
