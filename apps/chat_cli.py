"""`lwdpo-edge chat [MODEL]`: the typer command (registered in lwdpo_edge/cli.py as "chat").

Exit status 2 with one line when there is no model to chat with. Gradio and the runtime are imported
inside the function so `lwdpo-edge --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from lwdpo_edge.apps.chat_config import HELP, ChatConfig, ChatSetupError


def chat(
    model: Annotated[Optional[Path], typer.Argument(help=HELP["model"])] = None,
    host: Annotated[str, typer.Option(help=HELP["host"])] = "127.0.0.1",
    port: Annotated[Optional[int], typer.Option(help=HELP["port"])] = None,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help=HELP["open_browser"])] = True,
    threads: Annotated[Optional[int], typer.Option(help=HELP["threads"])] = None,
    n_ctx: Annotated[int, typer.Option(help=HELP["n_ctx"])] = 2048,
    history_dir: Annotated[Path, typer.Option(help=HELP["history_dir"])] = ChatConfig.history_dir,
    feedback_file: Annotated[Path, typer.Option(help=HELP["feedback_file"])] = ChatConfig.feedback_file,
):
    """A local chat app (Gradio, offline) with one lambda slider per objective; conversations saved as JSON."""
    from lwdpo_edge.runtime import ModelLoadError  # not loaded for --help

    config = ChatConfig(model=model, host=host, port=port, open_browser=browser, threads=threads, n_ctx=n_ctx,
                        history_dir=history_dir, feedback_file=feedback_file)
    err = Console(stderr=True)
    try:
        from lwdpo_edge.apps.chat import main  # gradio at its top: not needed for --help

        main(config)
    except (ChatSetupError, ModelLoadError) as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
