"""`lwdpo-edge export`: the command (registered in lwdpo_edge/cli.py as app.command("export")(export)).

Exit status: 0 exported (and verified); 1 the export failed - verification failed (the output is kept
as NAME.failed) or a converter crashed; 2 bad input (not a run folder, unsupported architecture,
unknown format / quant / precision). Heavy imports happen inside the function so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from lwdpo_edge.contract import is_soup_run


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `lwdpo-edge train`.")],
    format: Annotated[str, typer.Option("--format", "-f", help=(
        "gguf (llama.cpp, Ollama, LM Studio), onnx (onnxruntime-genai) or hf (merged safetensors "
        "folder)."))] = "gguf",
    quant: Annotated[Optional[str], typer.Option(help="GGUF weights: f16, q8_0 or q4_k_m (default q8_0).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="ONNX weights: fp32 or int4 (default int4).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=(
        "A .gguf file or an export folder to write (an earlier export there is replaced), or a folder to put NAME "
        "in (default RUN_DIR/export/)."))] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help=(
        "Load the export in its runtime and compare it with the trained model on probe prompts at two "
        "lambdas."))] = True,
    threads: Annotated[int, typer.Option(help=(
        "CPU threads for the verification runtime (1 is fastest on a busy machine)."))] = 1,
    preset: Annotated[Optional[list[str]], typer.Option("--preset", help=(
        "Also merge the run at a named lambda into one plain model (one file each; repeat, or 'all'): an "
        "objective's name (its vertex), 'balanced' or 'default'. For apps that load one file (LM Studio, GPT4All, "
        "Ollama); lambda is then fixed, and recorded in lwdpo.lambda_merged."))] = None,
    lam: Annotated[Optional[list[str]], typer.Option("--lambda", help=(
        "Like --preset, at any lambda: 'helpfulness=0.2,conciseness=0.8' (repeat for several)."))] = None,
):
    """Merge the adapter and export a run for llama.cpp / Ollama (GGUF), onnxruntime-genai (ONNX) or transformers (hf), with the lambda contract inside.

    Adapter-soup runs (the default of `lwdpo-edge train`) stay steerable: GGUF is the base + one LoRA GGUF per
    objective, scaled per request (plus an Ollama Modelfile with the default mix as one adapter: Ollama cannot change
    it per request); ONNX is the base with the adapters as one LoRA branch whose B matrices are model inputs, fed per
    lambda through onnxruntime-genai's adapter API. hf cannot take lambda at run time (load the run folder itself for
    that): it exports the merged preset at the run's default lambda unless --preset / --lambda say otherwise, and says
    so in its lwdpo.json (conditioning "merged", lambda_merged).

    A run trained with --no-condition-on-lambda exports as a plain model: its adapter merged, the base's own chat template, no lambda contract (conditioning "none"), no --preset / --lambda.
    """  # noqa: E501
    from lwdpo_edge.export.architectures import ExportInputError  # not loaded for --help
    from lwdpo_edge.export.gguf import ConversionError  # not loaded for --help
    from lwdpo_edge.export.result import VerificationFailed  # not loaded for --help

    err = Console(stderr=True)
    try:
        results = _run(run_dir, format, quant, precision, output, verify, threads, preset or [], lam or [], err)
    except ExportInputError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    except VerificationFailed as error:
        err.print(f"[bold red]verification failed:[/] {error.report.summary()}", highlight=False)
        for reason in error.report.failures():
            err.print(f"  - {reason}", highlight=False)
        err.print(f"the export was kept as {error.kept_at} for inspection", highlight=False)
        raise typer.Exit(1)
    except ConversionError as error:
        err.print(f"[bold red]export failed:[/] {error}", highlight=False)
        raise typer.Exit(1)
    for result in results:
        print_summary(result, Console())


def _run(run_dir, fmt, quant, precision, output, verify, threads, presets, lambdas, err) -> list:
    """The steerable export, or the merged presets asked for; soup runs in ONNX / hf fall back to the default preset."""
    from lwdpo_edge.export.pipeline import check_options, export_run  # not loaded for --help
    from lwdpo_edge.export.preset import choose_presets, export_presets  # not loaded for --help
    from lwdpo_edge.export.soup_export import read_soup_run  # not loaded for --help

    fmt, variant = check_options(fmt, quant, precision)
    if is_soup_run(run_dir) and fmt == "hf" and not (presets or lambdas):
        presets = ["default"]
        err.print("[yellow]note:[/] a soup run steers by per-request adapter scales, which a merged hf folder "
                  "cannot take: exporting the merged preset 'default' (lambda fixed; --preset / --lambda for others; "
                  "to steer in transformers, load the run folder itself)", highlight=False)
    if not (presets or lambdas):
        return [export_run(run_dir, fmt, quant, precision, output, verify, threads, console=err)]
    manifest = read_soup_run(run_dir, "gguf")[0] if is_soup_run(run_dir) else _header_manifest(run_dir)
    return export_presets(run_dir, fmt, variant, choose_presets(manifest, presets, lambdas), output, verify, threads,
                          err)


def _header_manifest(run_dir):
    from lwdpo_edge.export.merge import read_run  # not loaded for --help

    return read_run(run_dir)[0]


def print_summary(result, console) -> None:
    """Files with sizes, stage times and the verification line."""
    title = (f"lwdpo-edge export: {result.format} {result.variant}"
             + (f", preset {result.preset}" if result.preset else ""))
    table = Table(title=title, show_header=True)
    table.add_column("output")
    table.add_column("size", justify="right")
    table.add_row(str(result.output), _human(result.size_bytes))
    for path in result.extra_files:
        table.add_row(str(path), _human(path.stat().st_size))
    console.print(table)
    stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.stage_seconds.items())
    console.print(f"[dim]{stages}; total {result.seconds:.1f}s[/]", highlight=False)
    if result.report is not None:
        console.print(f"[green]{result.report.summary()}[/]", highlight=False)
    else:
        console.print("[yellow]not verified (--no-verify)[/]")


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"
