"""Eval wall time of two versions of lwdpo-edge on one run folder, side by side, and do their reports agree?

    .venv/bin/python bench/eval_speed.py runs/demo --before 7140d0d --threads 2
    .venv/bin/python bench/eval_speed.py runs/demo --before 7140d0d --threads 2 --max-lists 16 --n-prompts 8  # quick

`--before REV` is installed from git into a temporary folder (no dependencies: it runs on this venv's
packages) and `lwdpo-edge eval` of each version runs in its own process, after then before (`--repeats N`:
N alternating rounds, the median counts), with the same options and the same --threads. On a shared
virtual machine the speed of the CPU can drift by more than the difference measured: run it idle, and
compare one phase in one process where a version difference is small. Printed: wall time of each
(process start to exit, model load included) and the ratio before / after; then whether the reports agree, by the rule

    Spearman per objective within 0.05, the same verdict per check, and loop rates within one answer per point.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEARMAN_TOLERANCE = 0.05
CHECKS = ("spearman_ok", "base_near_zero", "monotone", "top1_ok")


def install_revision(rev: str, into: Path) -> Path:
    """`rev` of this repository installed (package layout, no dependencies) into `into`/site."""
    source, site = into / "source", into / "site"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(source)], check=True)
    return site


def timed_eval(run: Path, output: Path, options: list[str], pythonpath: Path | None) -> float:
    """Seconds `lwdpo-edge eval RUN` takes in a fresh process (PYTHONPATH first: the installed revision)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = [sys.executable, "-c", "from lwdpo_edge.cli import app; app()", "eval", str(run), "--output",
               str(output), *options]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=REPO)
    return time.perf_counter() - started


def agreement(before: dict, after: dict) -> list[str]:
    """Where the two reports disagree beyond the rule in the module docstring; [] = they agree."""
    problems = []
    n_prompts = after["controllability"]["n_prompts"]
    for model in ("policy", "base"):
        old, new = before["controllability"].get(model), after["controllability"].get(model)
        if old is None or new is None:
            continue
        for name, control in new["objectives"].items():
            gap = abs(control["spearman"] - old["objectives"][name]["spearman"])
            if gap > SPEARMAN_TOLERANCE:
                problems.append(f"{model} Spearman {name}: {old['objectives'][name]['spearman']:.3f} -> "
                                f"{control['spearman']:.3f}")
        for old_point, new_point in zip(old["points"], new["points"]):
            loops = abs(old_point["repeating"] - new_point["repeating"]) * n_prompts
            if loops > 1 + 1e-9:
                problems.append(f"{model} loops at {new_point['name']}: {old_point['repeating']:.2f} -> "
                                f"{new_point['repeating']:.2f}")
    for name, verdict in (after.get("criteria") or {}).get("objectives", {}).items():
        old = before["criteria"]["objectives"][name]
        problems += [f"verdict {name}.{check}: {old[check]} -> {verdict[check]}" for check in CHECKS
                     if old[check] != verdict[check]]
    return problems


def ranking_gap(before: dict, after: dict) -> float:
    """Largest change of a mean ranking metric (top-1, Kendall tau, NDCG) at any point and objective."""
    gaps = [abs(value - before["ranking"]["policy"][point][name][metric])
            for point, per_objective in after["ranking"]["policy"].items()
            for name, metrics in per_objective.items()
            for metric, value in metrics.items() if metric in ("top1", "kendall_tau", "ndcg") and value is not None]
    return max(gaps, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--before", required=True, help="git revision to compare with (e.g. a commit before a change)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads, the same for both")
    parser.add_argument("--n-prompts", type=int, default=30)
    parser.add_argument("--max-lists", type=int, default=None, help="rank only the first N held-out lists")
    parser.add_argument("--grid", default="full")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each version; the median counts")
    args = parser.parse_args()
    options = ["--threads", str(args.threads), "--n-prompts", str(args.n_prompts), "--grid", args.grid]
    options += ["--max-lists", str(args.max_lists)] if args.max_lists else []
    with tempfile.TemporaryDirectory(prefix="eval-speed-") as tmp:
        tmp = Path(tmp)
        site = install_revision(args.before, tmp / "before")
        runs = {"after": [], "before": []}
        for repeat in range(args.repeats):  # alternating, so that a drift of the machine's speed hits both
            for name, path in (("after", None), ("before", site)):
                runs[name].append(timed_eval(args.run, tmp / f"{name}-eval-{repeat}", options, path))
        seconds = {name: statistics.median(times) for name, times in runs.items()}
        reports = {name: json.loads((tmp / f"{name}-eval-0" / "report.json").read_text()) for name in runs}
    print(f"\neval {args.run} ({' '.join(options)})")
    for name in ("before", "after"):
        timing = reports[name]["timing"]
        times = ", ".join(f"{t:.0f}" for t in runs[name])
        print(f"  {name:6s} {seconds[name]:7.1f} s wall (runs: {times})   ranking {timing['ranking_s']:7.1f} s"
              f"   generation policy {timing.get('generation_policy_s', 0):6.1f} s,"
              f" base {timing.get('generation_base_s', 0):6.1f} s"
              f"   policy {timing.get('tokens_per_s_policy', 0):.0f} tok/s")
    print(f"  before / after = {seconds['before'] / seconds['after']:.2f}x")
    problems = agreement(reports["before"], reports["after"])
    print(f"  largest change of a mean ranking metric: {ranking_gap(reports['before'], reports['after']):.2e}")
    print("  reports agree" if not problems else "  reports DISAGREE:\n    " + "\n    ".join(problems))


if __name__ == "__main__":
    main()
