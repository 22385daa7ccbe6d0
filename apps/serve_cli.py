"""`lwdpo-edge serve MODEL`: the typer command (registered in lwdpo_edge/cli.py as "serve").

Exit status 2 with one line when the model cannot be loaded. FastAPI, uvicorn and the runtime are
imported inside the function so `lwdpo-edge --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from lwdpo_edge.apps.serve_schema import Limits

DEFAULTS = Limits()


def serve(
    model: Annotated[str, typer.Argument(help=(
        "A .gguf file, an ONNX export folder, a Hugging Face folder, or 'default' (SmolLM2-135M-Instruct)."))],
    host: Annotated[str, typer.Option(help=(
        "Address to bind. 127.0.0.1 keeps the server local; 0.0.0.0 exposes it to the network "
        "(set --api-key)."))] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    threads: Annotated[Optional[int], typer.Option(help=(
        "CPU threads for the model (default: the backend's choice; 1 is fastest on a busy 2-core machine)."))] = None,
    n_ctx: Annotated[int, typer.Option(help=(
        "Context window in tokens (prompt + answer); capped at the model's trained length."))] = 2048,
    model_id: Annotated[Optional[str], typer.Option(help=(
        "Model name clients use in 'model' and see in /v1/models (default: the file or folder name without "
        "suffix)."))] = None,
    api_key: Annotated[Optional[str], typer.Option(envvar="LWDPO_API_KEY", help=(
        "Require 'Authorization: Bearer KEY' on every request (env LWDPO_API_KEY)."))] = None,
    max_tokens: Annotated[int, typer.Option(help=(
        "Largest max_tokens a request may ask for; more gets a 400."))] = DEFAULTS.max_tokens,
    default_max_tokens: Annotated[int, typer.Option(help=(
        "max_tokens for requests that give none."))] = DEFAULTS.default_max_tokens,
    max_messages: Annotated[int, typer.Option(help=(
        "Most messages in one request; more gets a 400."))] = DEFAULTS.max_messages,
    max_body_bytes: Annotated[int, typer.Option(help=(
        "Largest request body in bytes; more gets a 413."))] = DEFAULTS.max_body_bytes,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
):
    """An OpenAI-compatible server: GET /v1/models, POST /v1/chat/completions (JSON or SSE), lambda per request."""
    from lwdpo_edge.runtime import ModelLoadError  # not loaded for --help

    err = Console(stderr=True)
    limits = Limits(max_body_bytes=max_body_bytes, max_messages=max_messages, max_tokens=max_tokens,
                    default_max_tokens=min(default_max_tokens, max_tokens))
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        err.print(f"[yellow]warning:[/] serving on {host} without --api-key: anyone who can reach this port can use it",
                  highlight=False, soft_wrap=True)
    try:
        from lwdpo_edge.apps.serve import run_server  # fastapi, uvicorn at its top: not needed for --help

        run_server(model, host, port, threads, n_ctx, limits, model_id, api_key, log_level)
    except ModelLoadError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
