"""Write an evaluation as one folder, all or nothing:

    OUTPUT/ (default RUN_DIR/eval)
      report.json        every number (schema: see `build_report` in cli.py and summary_markdown)
      generations.jsonl  every answer with its prompt index, lambda point and scores (run and base)
      summary.md         the short human-readable version, with the steering verdict
      *.png              plots.py

Everything is written into a hidden sibling folder first and renamed into place at the end, so an
interrupted or failed evaluation never leaves a partial report under the final name (a previous
complete report stays until the new one is complete).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from lwdpo_edge.contract import atomic_write_text
from lwdpo_edge.evaluate.plots import write_plots
from lwdpo_edge.publish import publish

REPORT_FILE = "report.json"


def check_output_folder(output: Path) -> None:
    """Refuse to replace a folder that is not an earlier evaluation (it may hold someone's files)."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / REPORT_FILE).is_file())):
        raise FileExistsError(f"{output} exists and is not an lwdpo-edge eval folder; choose another --output")


def write_report(report: dict, generations: list[dict], output: Path) -> Path:
    """Write report.json, generations.jsonl, plots and summary.md; publish them as `output`."""
    output = Path(output)
    check_output_folder(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        report = {**report, "plots": write_plots(report, staging)}
        lines = "".join(json.dumps(g, ensure_ascii=False) + "\n" for g in generations)
        atomic_write_text(staging / "generations.jsonl", lines)
        atomic_write_text(staging / "summary.md", summary_markdown(report))
        atomic_write_text(staging / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it private; a report folder should read like any other
        publish(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename
    return output


# ----------------------------------------------------------------------------- summary.md


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mark(flag) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[flag]


def verdict_section(report: dict) -> list[str]:
    criteria = report.get("criteria")
    if not criteria:
        return []
    t = criteria["thresholds"]
    lines = [
        "## Does lambda steer? (steering verdict)", "",
        f"On the points {', '.join(t['points'])}; {criteria['n_prompts']} prompts (needs >= {t['min_prompts']}). "
        f"Spearman >= {t['min_spearman']}, base |Spearman| <= {t['max_base_spearman']}, monotone mean score rising by "
        f"> {t.get('rise_standard_errors', 0)} standard errors, top-1 at the objective's vertex above chance by "
        f"> {t.get('top1_z', 0)} binomial standard errors. **{'Passed' if criteria['passed'] else 'Not passed'}.**", "",
        "| objective | Spearman run | Spearman base | data ceiling | mean score low -> high | monotone | "
        "top-1 at vertex | chance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in criteria["objectives"].items():
        levels = " -> ".join(_num(x, 2) for x in v["levels"])
        lines.append(f"| {name} | {_num(v['spearman'], 2)} ({_mark(v['spearman_ok'])}) | {_num(v['base_spearman'], 2)} "
                     f"({_mark(v['base_near_zero'])}) | {_num(v.get('data_ceiling_spearman'), 2)} | {levels} | "
                     f"{_mark(v['monotone'])} | "
                     f"{_num(v['top1_at_vertex'], 2)} ({_mark(v['top1_ok'])}) | {_num(v['chance_top1'], 2)} |")
    lines += ["", "Data ceiling: the Spearman a model would reach by answering, at every point, with the held-out "
              "list's lambda-best candidate (what imitation of the data can steer at best; not checked)."]
    return lines + [""]


def ranking_section(report: dict) -> list[str]:
    ranking = report.get("ranking")
    if not ranking:
        return []
    lines = [
        f"## Ranking of {report['data']['n_lists']} held-out lists", "",
        "Implicit reward r = beta * (log pi - log pi_ref) of the run vs the base model's own log-prob and chance.", "",
        "| lambda | objective | top-1 run / base / chance | Kendall tau run / base | NDCG run / base / chance "
        "| lists |",
        "|---|---|---|---|---|---|",
    ]
    for point, per_objective in ranking["policy"].items():
        for name, m in per_objective.items():  # one row per (point, objective)
            base, chance = ranking["base_logprob"][point][name], ranking["chance"][point][name]
            lines.append(f"| {point} | {name} | "
                         f"{_num(m['top1'], 2)} / {_num(base['top1'], 2)} / {_num(chance['top1'], 2)} | "
                         f"{_num(m['kendall_tau'], 2)} / {_num(base['kendall_tau'], 2)} | "
                         f"{_num(m['ndcg'], 2)} / {_num(base['ndcg'], 2)} / {_num(chance['ndcg'], 2)} | "
                         f"{m['n_lists']} |")
    return lines + [""]


def controllability_section(report: dict) -> list[str]:
    control = report.get("controllability")
    if not control or not control.get("rated"):
        return []
    policy, base = control["policy"], control.get("base") or {"objectives": {}, "points": []}
    lines = [
        f"## Controllability: {control['n_prompts']} prompts x {len(control['grid'])} lambda points", "",
        "| objective | Spearman run / base | within-prompt run / base | mean score lambda_k=0 -> 1, run | base |",
        "|---|---|---|---|---|",
    ]
    for name in control["rated"]:
        p, b = policy["objectives"][name], base["objectives"].get(name, {})
        lines.append(f"| {name} | {_num(p['spearman'], 2)} / {_num(b.get('spearman'), 2)} | "
                     f"{_num(p['spearman_within_prompt'], 2)} / {_num(b.get('spearman_within_prompt'), 2)} | "
                     f"{' -> '.join(_num(x['mean'], 2) for x in p['levels'])} | "
                     f"{' -> '.join(_num(x['mean'], 2) for x in b.get('levels', []))} |")
    base_points = {p["name"]: p for p in base["points"]}
    lines += ["", "| lambda point | " + " | ".join(control["rated"]) + " | words run / base | repeating run / base |",
              "|---|" + "---|" * (len(control["rated"]) + 2)]
    for point in policy["points"]:
        other = base_points.get(point["name"], {"mean_scores": {}, "mean_words": None})
        cells = [f"{_num(point['mean_scores'].get(n), 2)} ({_num(other['mean_scores'].get(n), 2)})"
                 for n in control["rated"]]
        lines.append(f"| {point['name']} | " + " | ".join(cells)
                     + f" | {_num(point['mean_words'], 1)} / {_num(other['mean_words'], 1)} | "
                     f"{_num(point.get('repeating'), 2)} / {_num(other.get('repeating'), 2)} |")
    lines += pareto_lines(control.get("pareto"))
    if control.get("unrated"):
        lines += ["", f"No built-in rater, not measured on generations: {', '.join(control['unrated'])}."]
    return lines + ["", "Cells: trained run (base model). Repeating: share of answers that repeat a 4-word sequence "
                        "3+ times."]


def pareto_lines(pareto: dict | None) -> list[str]:
    if not pareto:
        return []
    reference = ", ".join(f"{name} {value:.3f}" for name, value in pareto["reference"].items())
    return ["", f"Pareto front of the run's grid means: {', '.join(pareto['front'])}. Hypervolume against the base "
            f"model's mean point ({reference}): **{pareto['hypervolume']:.4g}** "
            f"({pareto['points_above_reference']} of the points beat the base on every objective)."]


def weighted_ranking_section(report: dict) -> list[str]:
    weighted = (report.get("ranking") or {}).get("lambda_weighted")
    if not weighted:
        return []
    lines = ["### Against the lambda-weighted score (sum_k lambda_k z_k within each list)", "",
             "| lambda | top-1 run / base / chance | Kendall tau run / base | NDCG run / base / chance | lists |",
             "|---|---|---|---|---|"]
    for point, m in weighted["policy"].items():
        base, chance = weighted["base_logprob"][point], weighted["chance"][point]
        lines.append(f"| {point} | {_num(m['top1'], 2)} / {_num(base['top1'], 2)} / {_num(chance['top1'], 2)} | "
                     f"{_num(m['kendall_tau'], 2)} / {_num(base['kendall_tau'], 2)} | "
                     f"{_num(m['ndcg'], 2)} / {_num(base['ndcg'], 2)} / {_num(chance['ndcg'], 2)} | {m['n_lists']} |")
    return lines + [""]


def _timing_line(timing: dict) -> str:
    parts = [f"{timing['total_s']:.0f} s in all"]
    if "ranking_s" in timing:
        parts.append(f"ranking {timing['ranking_s']:.0f} s")
    for model in ("policy", "base"):
        if f"seconds_per_answer_{model}" in timing:
            parts.append(f"{model} {timing[f'seconds_per_answer_{model}']:.2f} s per generated answer, "
                         f"{timing[f'tokens_per_s_{model}']:.0f} tok/s")
    return "; ".join(parts)


def summary_markdown(report: dict) -> str:
    run = report["run"]
    head = [
        f"# lwdpo-edge eval: {run['dir']}", "",
        f"- objectives: {', '.join(report['objectives'])}; conditioning: {run['conditioning']}; "
        f"trained {run.get('steps', 'n/a')} steps",
        f"- held-out data: {report['data']['source']} ({report['data']['n_lists']} lists); "
        f"generation backend: {report['settings']['backend']}, max {report['settings']['max_new_tokens']} new tokens, "
        f"repetition penalty {report['settings'].get('repetition_penalty', 1.0):g}",
        f"- wall time: {_timing_line(report['timing'])}", "",
    ]
    plots = [f"![{name}]({name})" for name in report.get("plots", [])]
    body = (verdict_section(report) + ranking_section(report) + weighted_ranking_section(report)
            + controllability_section(report))
    return "\n".join(head + body + [""] + plots) + "\n"
