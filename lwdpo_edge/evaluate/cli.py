"""`lwdpo-edge eval RUN_DIR`: the typer command (registered in lwdpo_edge/cli.py as "eval").

Heavy imports (torch, transformers) happen inside the function so `lwdpo-edge --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from lwdpo_edge.contract import RunFolderError
from lwdpo_edge.data.schema import DataError
from lwdpo_edge.decoding import REPETITION_PENALTY
from lwdpo_edge.lambdas import LambdaError

RATER_HELP = ("OBJECTIVE=module.path:callable or OBJECTIVE=path/to/file.py:callable: score OBJECTIVE's answers with "
              "your own rater instead of the built-in one: a Rater object (lwdpo_edge/raters.py) or a function "
              "f(prompt, answer) -> float, higher is better. Repeatable, one per objective.")


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `lwdpo-edge train`.")],
    data: Annotated[str, typer.Option(help=(
        "Held-out ranked lists: 'default' (the shipped dataset's held-out split) or a data file; rows with a "
        "'split' contribute only split 'heldout'."))] = "default",
    prompts: Annotated[Optional[str], typer.Option(help=(
        "Prompts to generate for: a .jsonl file (rows with 'prompt', held-out split if rows carry one) or a text "
        "file with one prompt per line. Default: the prompts of the held-out lists."))] = None,
    n_prompts: Annotated[int, typer.Option(help=(
        "Generate for the first N prompts (the steering verdict needs >= 30)."))] = 30,
    max_new_tokens: Annotated[int, typer.Option(help="Longest greedy answer in tokens.")] = 96,
    output: Annotated[Optional[Path], typer.Option(help=(
        "Report folder (default RUN_DIR/eval); replaced atomically, an earlier report stays until the new one is "
        "complete."))] = None,
    baseline: Annotated[bool, typer.Option(help=(
        "Also generate with the adapter disabled (the untrained base under the same headers). --no-baseline halves "
        "the generation time."))] = True,
    grid: Annotated[str, typer.Option(help=(
        "Lambda points for generation and held-out ranking: 'full' (vertices, edge midpoints, centre), 'vertices' "
        "(vertices and centre) or 'dense' (full plus one interior point leaning to each objective, 0.6 / 0.2 / 0.2: "
        "10 points for 3 objectives)."))] = "full",
    batch_size: Annotated[int, typer.Option(help=(
        "(prompt, lambda) answers generated together in one left-padded batch (on a CPU each new token reads all "
        "the weights once per batch, so fewer, larger batches are faster)."))] = 32,
    max_lists: Annotated[Optional[int], typer.Option(help=(
        "Rank only the first N held-out lists (default: all)."))] = None,
    soup_strength: Annotated[Optional[float], typer.Option(help=(
        "Soup runs only: steering strength of the adapter mix (1 = the plain lambda-weighted soup). Default: the "
        "run's own (lwdpo.json soup_strength)."))] = None,
    repetition_penalty: Annotated[float, typer.Option(help=(
        "Penalty on tokens repeated within the last 64 generated ones (lwdpo_edge/decoding.py; the same default as "
        "the runtime, app and server). 1 = plain greedy."))] = REPETITION_PENALTY,
    threads: Annotated[Optional[int], typer.Option(help=(
        "torch CPU threads. Default: all of torch's threads when the cores are idle, 1 when other work keeps half of "
        "them busy (measured over 0.5 s; oversubscribed threads can run 10-50x slower). The choice is printed."
    ))] = None,
    rater: Annotated[Optional[list[str]], typer.Option("--rater", help=RATER_HELP)] = None,
):
    """Ranking accuracy on held-out lists, controllability under a lambda sweep, and the base-model baseline."""
    from lwdpo_edge.evaluate.rater_plugins import RaterError  # not loaded for --help
    from lwdpo_edge.evaluate.run import EvalConfig, EvalError, run_evaluation  # not loaded for --help
    from lwdpo_edge.models import ModelError  # not loaded for --help

    config = EvalConfig(run_dir=run_dir, data=data, prompts=prompts, n_prompts=n_prompts, max_new_tokens=max_new_tokens,
                        output=output, baseline=baseline, grid=grid, batch_size=batch_size, max_lists=max_lists,
                        soup_strength=soup_strength, repetition_penalty=repetition_penalty, threads=threads,
                        rater_specs=tuple(rater or ()))
    try:
        folder = run_evaluation(config)
    except (DataError, RunFolderError, LambdaError, ModelError, EvalError, RaterError) as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    console = Console()
    console.print(f"[green]done:[/] report.json, summary.md and plots in {folder}")
    typer.echo((folder / "summary.md").read_text(encoding="utf-8"))  # plain: rich would re-wrap the tables


def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="An adapter-soup run folder written by `lwdpo-edge train`.")],
    strengths: Annotated[str, typer.Option(help=(
        "Comma-separated steering strengths to try (1 = the plain lambda-weighted soup)."))] = "1,1.5,2,2.5,3",
    n_prompts: Annotated[int, typer.Option(help=(
        "Held-out prompts answered at each vertex and the centre, per strength."))] = 30,
    max_new_tokens: Annotated[int, typer.Option(help="Longest greedy answer in tokens.")] = 96,
    prompts: Annotated[Optional[str], typer.Option(help=(
        "Prompts to calibrate on (.jsonl with 'prompt' or one per line), never ones the run trained on. Default: "
        "the prompts of the lists marked \"split\": \"heldout\" in the run's data."))] = None,
    rater: Annotated[Optional[list[str]], typer.Option("--rater", help=RATER_HELP)] = None,
):
    """Choose a soup run's steering strength on held-out prompts and store it in lwdpo.json.

    For each strength the soup answers the prompts at each vertex and the centre; the chosen strength has the highest
    mean Spearman(lambda_k, score_k) among those where no point loops more than 3 points above the base model
    and no vertex drifts off topic (prompt-answer cosine 0.1 below the base model's). Export, chat and serve
    then use it; each still takes --soup-strength / a per-request strength."""
    from lwdpo_edge.evaluate.calibrate import CalibrationConfig, CalibrationError, run_calibration  # not for --help
    from lwdpo_edge.evaluate.rater_plugins import RaterError  # not loaded for --help

    console = Console(stderr=True)
    try:
        values = tuple(float(text) for text in strengths.split(",") if text.strip())
    except ValueError:
        console.print(f"[bold red]error:[/] --strengths: not a comma-separated list of numbers: {strengths!r}")
        raise typer.Exit(2) from None
    config = CalibrationConfig(run_dir=run_dir, strengths=values, n_prompts=n_prompts, max_new_tokens=max_new_tokens,
                               prompts=prompts, rater_specs=tuple(rater or ()))
    try:
        run_calibration(config, progress=lambda line: console.print(line, highlight=False, markup=False))
    except (DataError, RunFolderError, LambdaError, CalibrationError, RaterError) as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
