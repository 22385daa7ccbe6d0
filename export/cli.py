"""`lwdpo-edge export`: the command (registered in lwdpo_edge/cli.py as app.command("export")(export)).

Exit status: 0 exported (and verified); 1 the export failed - verification failed (the output is kept
as NAME.failed) or a converter crashed; 2 bad input (not a run folder, unsupported architecture,
unknown format / quant / precision). Heavy imports happen inside the function so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `lwdpo-edge train`.")],
    format: Annotated[str, typer.Option("--format", "-f", help="gguf (llama.cpp, Ollama, LM Studio), onnx (onnxruntime-genai) or hf (merged safetensors folder).")] = "gguf",
    quant: Annotated[Optional[str], typer.Option(help="GGUF weights: f16, q8_0 or q4_k_m (default q8_0).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="ONNX weights: fp32 or int4 (default int4).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="A .gguf file or an export folder to write (an earlier export there is replaced), or a folder to put NAME in (default RUN_DIR/export/).")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Load the export in its runtime and compare it with the trained model on probe prompts at two lambdas.")] = True,
    threads: Annotated[int, typer.Option(help="CPU threads for the verification runtime (1 is fastest on a busy machine).")] = 1,
):
    """Merge the adapter and export a run for llama.cpp / Ollama (GGUF), onnxruntime-genai (ONNX) or transformers (hf), with the lambda contract inside."""
    from rich.console import Console

    from lwdpo_edge.export.architectures import ExportInputError
    from lwdpo_edge.export.gguf import ConversionError
    from lwdpo_edge.export.pipeline import VerificationFailed, export_run

    err = Console(stderr=True)
    try:
        result = export_run(run_dir, format, quant, precision, output, verify, threads, console=err)
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
    print_summary(result, Console())


def print_summary(result, console) -> None:
    """Files with sizes, stage times and the verification line."""
    from rich.table import Table

    table = Table(title=f"lwdpo-edge export: {result.format} {result.variant}", show_header=True)
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
