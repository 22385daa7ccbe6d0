"""PNG figures of an evaluation report (matplotlib, headless Agg backend).

    controllability.png  mean score_k against lambda_k, trained run vs base: the monotonicity view
    tradeoff.png         per pair of objectives, mean scores at each grid point: the trade-off /
                         Pareto view (a run that steers spreads its points apart along the edge);
                         points on the K-dim Pareto front filled, the base model's mean point starred
    ranking.png          top-1 accuracy at each objective's vertex: run, base log-prob, chance

Each function reads only the report dict and returns the file it wrote (or None when there is
nothing to draw).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

MODELS = (("policy", "trained run", "tab:blue", "o"), ("base", "base model", "tab:gray", "s"))


def _pyplot():
    import matplotlib  # matplotlib: heavy, optional (train extra)

    matplotlib.use("Agg")  # no display on a server, never open a window
    import matplotlib.pyplot as plt  # matplotlib: heavy, optional (train extra)

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_controllability(report: dict, path: Path) -> Path | None:
    control = report.get("controllability") or {}
    rated = control.get("rated", [])
    if not rated:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(rated), figsize=(4 * len(rated), 3.4), squeeze=False)
    for ax, name in zip(axes[0], rated):
        for model, label, color, marker in MODELS:
            stats = (control.get(model) or {}).get("objectives", {}).get(name)
            if not stats:
                continue
            x = [level["lambda"] for level in stats["levels"]]
            y = [level["mean"] for level in stats["levels"]]
            rho = "n/a" if stats["spearman"] is None else f"{stats['spearman']:+.2f}"
            ax.plot(x, y, marker=marker, color=color, label=f"{label} (rho {rho})")
        ax.set_xlabel(f"lambda[{name}]")
        ax.set_ylabel(f"mean {name} score")
        ax.set_title(name)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_tradeoff(report: dict, path: Path) -> Path | None:
    """Per pair of objectives: the mean scores of every grid point. The run's points on its K-dim
    Pareto front are filled, dominated ones hollow; the star is the base model's mean point (the
    hypervolume's reference)."""
    control = report.get("controllability") or {}
    pairs = list(combinations(control.get("rated", []), 2))
    if not pairs:
        return None
    pareto = control.get("pareto") or {}
    front = set(pareto.get("front", []))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.4 * len(pairs), 4), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
        for model, label, color, marker in MODELS:
            points = [p for p in (control.get(model) or {}).get("points", []) if p["mean_scores"]]
            on = [model != "policy" or not front or p["name"] in front for p in points]
            ax.scatter([p["mean_scores"][a] for p in points], [p["mean_scores"][b] for p in points], marker=marker,
                       facecolors=[color if o else "none" for o in on], edgecolors=color, label=label, alpha=0.8)
            if model == "policy":
                for p in points:
                    ax.annotate(p["name"], (p["mean_scores"][a], p["mean_scores"][b]), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
        if pareto.get("reference"):
            ax.scatter([pareto["reference"][a]], [pareto["reference"][b]], marker="*", s=140, color="black",
                       label="base mean (reference)")
        ax.set_xlabel(f"mean {a}")
        ax.set_ylabel(f"mean {b}")
        ax.legend(fontsize=8)
    if pareto.get("hypervolume") is not None:
        fig.suptitle(f"filled: on the Pareto front; hypervolume vs base {pareto['hypervolume']:.4g}", fontsize=9)
    return _save(fig, path)


def plot_ranking(report: dict, path: Path) -> Path | None:
    ranking = report.get("ranking") or {}
    objectives = [n for n in report.get("objectives", [])
                  if ranking.get("chance", {}).get(n, {}).get(n, {}).get("top1") is not None]
    if not objectives:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(objectives), 3.4))
    bars = (("policy", "trained run", "tab:blue"), ("base_logprob", "base log-prob", "tab:gray"),
            ("chance", "chance", "white"))
    width = 0.8 / len(bars)
    for j, (ranker, label, color) in enumerate(bars):
        values = [ranking.get(ranker, {}).get(n, {}).get(n, {}).get("top1") or 0.0 for n in objectives]
        ax.bar([i + j * width for i in range(len(objectives))], values, width, label=label, color=color,
               edgecolor="black")
    ax.set_xticks([i + width for i in range(len(objectives))], objectives)
    ax.set_ylabel("top-1 accuracy at the objective's vertex")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(report: dict, folder: Path) -> list[str]:
    """Every figure that has data, written into `folder`; returns their file names."""
    folder = Path(folder)
    made = [plot(report, folder / name) for plot, name in (
        (plot_controllability, "controllability.png"), (plot_tradeoff, "tradeoff.png"), (plot_ranking, "ranking.png"))]
    return [p.name for p in made if p is not None]
