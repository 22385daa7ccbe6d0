"""The `lwdpo-edge` command line.

Heavy imports (torch, transformers) happen inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

import lwdpo_edge  # noqa: F401  (sets offline / no-telemetry environment first)
from lwdpo_edge.contract import Conditioning, RunFolderError
from lwdpo_edge.data.pointwise import convert_pointwise, pointwise_columns, skipped_lines, summary_line
from lwdpo_edge.data.schema import DataError
from lwdpo_edge.data.validate import render_report, validate_path
from lwdpo_edge.decoding import REPETITION_PENALTY, check_repetition_penalty
from lwdpo_edge.lambdas import LambdaError, format_lambda_header, parse_lambda_arg

app = typer.Typer(
    help="Train small LMs with multi-preference lambda-weighted listwise DPO and steer them with lambda.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Check and make datasets of ranked, multi-objective response lists.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """One clear line on stderr, exit status 2."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def train(ctx: typer.Context):
    """Train an adapter (QLoRA with --qlora). `lwdpo-edge train --help` lists every option."""
    from lwdpo_edge.train.cli_args import parse_train_args  # train stage: torch at its top, not for --help

    config = parse_train_args(ctx.args)
    from lwdpo_edge.models import ModelError  # not loaded for --help
    from lwdpo_edge.train.recipe import run_training  # train stage: torch at its top, not for --help
    from lwdpo_edge.train.setup import TrainSetupError  # train stage: torch at its top, not for --help

    try:
        run_dir = run_training(config)
    except (DataError, ModelError, LambdaError, RunFolderError, TrainSetupError) as err:
        fail(str(err))
    if config.conditioning == Conditioning.SOUP and config.calibrate and config.soup_strength is None:
        calibrate_after_training(run_dir)
    console.print(f"[green]done:[/] adapter and lwdpo.json in {run_dir}")


def calibrate_after_training(run_dir: Path) -> None:
    """The last step of training a soup: its steering strength from held-out prompts. A run that cannot be
    calibrated (no held-out split, no rater) keeps the default strength and says why; it is not an error."""
    from lwdpo_edge.evaluate.calibrate import CalibrationConfig, CalibrationError, run_calibration  # not for --help

    try:
        run_calibration(CalibrationConfig(run_dir=run_dir),
                        progress=lambda line: console.print(line, highlight=False, markup=False))
    except CalibrationError as err:
        err_console.print(f"[yellow]calibrate skipped:[/] {err}; the run keeps its default steering strength "
                          f"(`lwdpo-edge calibrate {run_dir} --prompts FILE` sets it later)", highlight=False)


@data_app.command("validate")
def data_validate(
    path: Annotated[str, typer.Argument(help="JSONL file, OpenAssistant tree file, HF datasets folder, or 'default'.")],
    objectives: Annotated[Optional[str], typer.Option(help=(
        "Comma-separated objective names the data must use."))] = None,
):
    """Check a dataset; print every bad row as FILE:LINE: field: problem. Exit 1 if any."""
    names = [n.strip() for n in objectives.split(",")] if objectives else None
    report = validate_path(path, names)
    render_report(report, console)
    raise typer.Exit(0 if report.ok else 1)


@data_app.command("pointwise")
def data_pointwise(
    inputs: Annotated[list[str], typer.Argument(metavar="INPUT", help=(
        "CSV/TSV, JSONL (or .json array) files or local HF datasets folders with one answer per row; "
        "answers to a prompt are grouped across all inputs (e.g. one file per model)."))],
    output: Annotated[Path, typer.Option(help="Where to write the ranked lists, as native JSONL.")],
    score: Annotated[list[str], typer.Option(metavar="OBJ=COL[:MAP]", help=(
        "An objective and the column it is read from. The optional MAP (label=number,...) turns labels into "
        "numbers, and a label it does not list is null; without one, cells must be numbers. Empty cells are "
        "null. Repeat for several objectives. Example: safe=label:yes=1,no=0"))],
    prompt_column: Annotated[str, typer.Option(help=(
        "The column holding the prompt (text, or chat messages in JSON rows); rows with the same prompt "
        "form one list."))] = "prompt",
    response_column: Annotated[str, typer.Option(help="The column holding the answer.")] = "response",
    keep_column: Annotated[Optional[list[str]], typer.Option(metavar="[KEY=]COLUMN", help=(
        "Copy a per-prompt column into its list, under KEY if given (e.g. 'type', or 'split', whose "
        "value 'heldout' keeps a list out of training); a prompt's rows must agree. Repeatable."))] = None,
    keep_answer_column: Annotated[Optional[list[str]], typer.Option(metavar="[KEY=]COLUMN", help=(
        "Copy a per-answer column (e.g. 'id', a model name) into each answer, under KEY if given. "
        "Repeatable."))] = None,
):
    """Group pointwise rows (one answer per row, label columns) by prompt into ranked lists."""
    try:
        columns = pointwise_columns(prompt_column, response_column, score, keep_column or [], keep_answer_column or [])
        result = convert_pointwise(inputs, columns, output)
    except DataError as err:
        fail(escape(str(err)))
    for line in skipped_lines(result):
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(summary_line(result, output), markup=False, highlight=False, soft_wrap=True)


@data_app.command(
    "synth",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def data_synth(ctx: typer.Context):
    """Sample N candidates per prompt from a model and score them with the built-in raters (--help for options)."""
    from lwdpo_edge.synth import main as synth_main  # not loaded for --help

    synth_main(ctx.args, prog="lwdpo-edge data synth")


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `lwdpo-edge train`.")],
    prompt: Annotated[str, typer.Option(help="The user message.")],
    lam: Annotated[list[str], typer.Option("--lambda", help=(
        "A lambda such as 'conciseness=1'; repeat to compare several."))] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 128,
    soup_strength: Annotated[Optional[float], typer.Option(help=(
        "Soup runs only: steering strength of the adapter mix (default: the run's own)."))] = None,
    repetition_penalty: Annotated[float, typer.Option(help=(
        "Penalty on tokens repeated within the last 64 generated ones (lwdpo_edge/decoding.py: the default of "
        "eval, the runtime, app and server); 1 = plain greedy."))] = REPETITION_PENALTY,
):
    """Greedy answers of a trained run to one prompt, once per --lambda (default: the run's default lambda)."""
    from lwdpo_edge.generate import generate_answer, load_run  # imports torch at its top, not needed for --help
    from lwdpo_edge.soup import strength_for  # not loaded for --help

    try:
        model, tokenizer, manifest = load_run(run_dir)
        objectives = manifest["objectives"]
        lambdas = [parse_lambda_arg(text) for text in lam] if lam else [manifest["lambda_default"]]
        headers = [format_lambda_header(x, objectives) for x in lambdas]  # validates before generating
        strength_for(manifest.get("conditioning", "header"), soup_strength)  # LambdaError for a header run
        check_repetition_penalty(repetition_penalty)
    except (LambdaError, RunFolderError, ValueError) as err:
        fail(str(err))
    for header, lam_value in zip(headers, lambdas):
        answer = generate_answer(model, tokenizer, [{"role": "user", "content": prompt}], lam_value, objectives,
                                 max_new_tokens, soup_strength, repetition_penalty)
        console.print(f"[bold cyan]{escape(header)}[/]", highlight=False)  # '[lambda]' is not rich markup
        console.print(escape(answer), highlight=False)
        console.print(f"[dim]({len(answer.split())} words)[/]\n")


# Stage commands live beside their stage; their modules import nothing heavy at load time.
from lwdpo_edge.evaluate.cli import calibrate, evaluate  # noqa: E402
from lwdpo_edge.export.cli import export  # noqa: E402
from lwdpo_edge.apps.chat_cli import chat  # noqa: E402
from lwdpo_edge.apps.serve_cli import serve  # noqa: E402

app.command("eval")(evaluate)
app.command("calibrate")(calibrate)
app.command("export")(export)
app.command("chat")(chat)
app.command("serve")(serve)


def main() -> None:  # python -m lwdpo_edge.cli
    app(prog_name="lwdpo-edge")


if __name__ == "__main__":
    sys.exit(main())
