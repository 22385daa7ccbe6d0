"""Conditioning modes side by side: soup vs jointly trained vs header runs, each judged by one `lwdpo-edge eval`.

    lwdpo-edge eval runs/m13/soup    --grid dense --n-prompts 30 --max-lists 30 --output runs/m13/soup/eval-dense
    lwdpo-edge eval runs/m13/mixture --grid dense --n-prompts 30 --max-lists 30 --output runs/m13/mixture/eval-dense
    ...
    .venv/bin/python bench/conditioning_modes.py soup=runs/m13/soup/eval-dense mixture=runs/m13/mixture/eval-dense \
        header=runs/m13/header/eval-dense [--markdown docs/fragment.md]

Reads only the eval folders (report.json) and the runs' lwdpo.json (training seconds). Prints per
mode: Spearman(lambda_k, score_k) per objective, the lambda-weighted held-out top-1 at every point
off the vertices (edge midpoints, centre, interior), the Pareto hypervolume against the base model's
mean point (0 when no point beats the base on every objective) and against one reference shared
by all modes (the componentwise worst mean of every mode's and the base's points, so the volumes
compare), the worst per-point loop rate against the base model's (under the eval's repetition penalty,
printed: compare modes judged with the same one), and the training cost. The joint-training
bars (docs/experiments.md) are checked for the mode named by --new against the one named by --old.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lwdpo_edge.evaluate.pareto import hypervolume

MIN_SPEARMAN = 0.7
LOOP_ALLOWANCE = 0.03  # repetition at every point <= the base model's rate + 3 points


def load(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    manifest = json.loads((Path(report["run"]["dir"]) / "lwdpo.json").read_text())
    report["training_seconds"] = training_seconds(manifest["training"])
    report["training_mode"] = manifest["training"].get("mode", manifest.get("conditioning"))
    report["run_strength"] = manifest.get("soup_strength")  # what the eval mixed at when it was not told
    return report


def training_seconds(training: dict) -> float | None:
    """A header / mixture run records its seconds; a soup run one entry per adapter."""
    if "seconds" in training:
        return training["seconds"]
    per = [s.get("seconds") for s in training.get("per_objective", {}).values()]
    return sum(per) if per and None not in per else None


def interior_points(report: dict) -> list[str]:
    kinds = {p["name"]: p["kind"] for p in report["controllability"]["grid"]}
    return [name for name in report["ranking"]["points"] if kinds.get(name) != "vertex"]


def mean_points(report: dict, model: str = "policy") -> np.ndarray:
    """(G, K) mean scores of every grid point, objectives in the report's rated order."""
    control = report["controllability"]
    return np.array([[p["mean_scores"][name] for name in control["rated"]] for p in control[model]["points"]])


def shared_reference(reports: list[dict]) -> np.ndarray:
    """(K,) the worst mean score of each objective over all modes' and base points."""
    return np.vstack([mean_points(r, m) for r in reports for m in ("policy", "base")]).min(axis=0)


def row(report: dict, reference: np.ndarray | None = None) -> dict:
    control, weighted = report["controllability"], report["ranking"]["lambda_weighted"]
    worst = max(control["policy"]["points"], key=lambda p: p["repeating"])
    return {
        "spearman": {name: control["policy"]["objectives"][name]["spearman"] for name in control["rated"]},
        "weighted_top1": {name: weighted["policy"][name]["top1"] for name in interior_points(report)},
        "hypervolume": (control.get("pareto") or {}).get("hypervolume"),
        "front": (control.get("pareto") or {}).get("front"),
        "hypervolume_shared": None if reference is None else hypervolume(mean_points(report), reference),
        "worst_loops": worst["repeating"],
        "worst_loop_point": worst["name"],
        "base_loops": max(p["repeating"] for p in control["base"]["points"]),
        "strength": report["settings"].get("soup_strength") or report.get("run_strength"),
        "repetition_penalty": report["settings"].get("repetition_penalty", 1.0),  # evals before it: plain greedy
        "training_seconds": report["training_seconds"],
    }


def fmt(value, digits=2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(rows: dict[str, dict]) -> list[str]:
    first = next(iter(rows.values()))
    objectives, points = list(first["spearman"]), list(first["weighted_top1"])
    lines = ["| criterion | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    lines.append("| strength (soup mixes) | " + " | ".join(fmt(r["strength"], 2) for r in rows.values()) + " |")
    lines.append("| repetition penalty (eval) | " + " | ".join(
        fmt(r["repetition_penalty"], 1) for r in rows.values()) + " |")
    for name in objectives:
        lines.append(f"| Spearman {name} | " + " | ".join(fmt(r["spearman"][name]) for r in rows.values()) + " |")
    for name in points:
        lines.append(f"| lambda-weighted top-1 at {name} | " + " | ".join(
            fmt(r["weighted_top1"].get(name)) for r in rows.values()) + " |")
    mean = {mode: sum(r["weighted_top1"].values()) / len(r["weighted_top1"]) for mode, r in rows.items()}
    lines.append("| mean of those | " + " | ".join(fmt(mean[m]) for m in rows) + " |")
    lines.append("| hypervolume vs base | " + " | ".join(fmt(r["hypervolume"], 5) for r in rows.values()) + " |")
    lines.append("| hypervolume vs shared worst point | " + " | ".join(
        fmt(r.get("hypervolume_shared"), 3) for r in rows.values()) + " |")
    lines.append("| worst loop rate (point) / base | " + " | ".join(
        f"{fmt(r['worst_loops'])} ({r['worst_loop_point']}) / {fmt(r['base_loops'])}" for r in rows.values()) + " |")
    lines.append("| training s | " + " | ".join(fmt(r["training_seconds"], 0) for r in rows.values()) + " |")
    return lines


def verdict(rows: dict[str, dict], new: str, old: str) -> list[str]:
    n, o = rows[new], rows[old]
    points = list(n["weighted_top1"])
    checks = {
        f"Spearman >= {MIN_SPEARMAN} on every objective ({new})": all(
            v is not None and v >= MIN_SPEARMAN for v in n["spearman"].values()),
        f"weighted top-1 {new} >= {old} at every point off the vertices": all(
            (n["weighted_top1"][p] or 0) >= (o["weighted_top1"][p] or 0) for p in points),
        "... and > on their mean": sum(n["weighted_top1"].values()) > sum(o["weighted_top1"].values()),
        f"hypervolume vs base {new} >= {old}": (n["hypervolume"] or 0) >= (o["hypervolume"] or 0),
        f"hypervolume vs the shared worst point {new} >= {old}":
            (n.get("hypervolume_shared") or 0) >= (o.get("hypervolume_shared") or 0),
        f"loops {new} <= base + {LOOP_ALLOWANCE:.2f} at every point":
            n["worst_loops"] <= n["base_loops"] + LOOP_ALLOWANCE,
    }
    return [f"- {'PASS' if ok else 'FAIL'}: {what}" for what, ok in checks.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evals", nargs="+", help="MODE=EVAL_FOLDER, in the table's column order")
    parser.add_argument("--new", default="mixture", help="the mode the bars are checked for")
    parser.add_argument("--old", default="soup", help="the mode it must match or beat")
    parser.add_argument("--markdown", type=Path, help="also write the table and verdict to this file")
    args = parser.parse_args()
    reports = {mode: load(Path(folder)) for mode, folder in (spec.split("=", 1) for spec in args.evals)}
    reference = shared_reference(list(reports.values()))
    rows = {mode: row(report, reference) for mode, report in reports.items()}
    lines = table(rows)
    if args.new in rows and args.old in rows:
        lines += [""] + verdict(rows, args.new, args.old)
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
