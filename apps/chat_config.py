"""ChatConfig: every option of `lwdpo-edge chat`, with help text that doubles as `--help`.

    lwdpo-edge chat                          # the newest GGUF export of the demo run (runs/demo/export/)
    lwdpo-edge chat model.gguf --no-browser  # any .gguf, ONNX export folder or HF folder

Without a MODEL the app takes the newest `*.gguf` that `lwdpo-edge export runs/demo` wrote (export
pipeline default: RUN_DIR/export/NAME.QUANT.gguf).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from lwdpo_edge.feedback_data import DEFAULT_FEEDBACK_FILE

DEMO_RUN = Path("runs/demo")  # train/configs/demo.yaml's output_dir, relative to where you run it
EXPORT_DIR = "export"  # lwdpo_edge.export.pipeline.EXPORT_DIR (not imported: that pulls in the exporter)
DEFAULT_HISTORY_DIR = Path("~/.local/share/lwdpo-edge/chats")


class ChatSetupError(RuntimeError):
    """The app cannot start: no model, or a model that does not load."""


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class ChatConfig:
    model: Path | None = field(default=None, metadata=_help(
        "A .gguf file, an ONNX export folder or a HF folder. Default: the newest .gguf in runs/demo/export/."))
    host: str = field(default="127.0.0.1", metadata=_help(
        "Address to listen on. The default lets only your own computer reach the app; 0.0.0.0 exposes it to "
        "your network."))
    port: int | None = field(default=None, metadata=_help(
        "Port to listen on. Default: the first free port from 7860."))
    open_browser: bool = field(default=True, metadata=_help(
        "Open the app in the default browser once it is up (--no-browser: just print the address)."))
    threads: int | None = field(default=None, metadata=_help(
        "CPU threads for generation. Default: the runtime's choice (1 is fastest on a busy machine)."))
    n_ctx: int = field(default=2048, metadata=_help(
        "Context window in tokens: the whole conversation plus the answer must fit."))
    history_dir: Path = field(default=DEFAULT_HISTORY_DIR, metadata=_help(
        "Folder for saved conversations, one JSON file each (written atomically)."))
    feedback_file: Path = field(default=DEFAULT_FEEDBACK_FILE, metadata=_help(
        "JSONL file the Alternatives panel appends your judgements to (one record each, objective 'user'); "
        "`lwdpo-edge train --output RUN --feedback FILE` trains a 'user' slider on it."))
    temperature: float = field(default=0.7, metadata=_help(
        "Initial sampling temperature (0 = greedy); the app has a slider for it."))
    top_p: float = field(default=0.9, metadata=_help("Initial nucleus-sampling top-p; the app has a slider for it."))
    max_tokens: int = field(default=256, metadata=_help(
        "Initial answer length limit in tokens; the app has a slider for it."))

    @property
    def history_path(self) -> Path:
        return Path(self.history_dir).expanduser()

    @property
    def feedback_path(self) -> Path:
        return Path(self.feedback_file).expanduser()


HELP = {f.name: f.metadata["help"] for f in fields(ChatConfig)}


def default_model_path(run_dir: Path = DEMO_RUN) -> Path:
    """The newest GGUF export of the demo run; ChatSetupError with the command that makes one."""
    exports = sorted(Path(run_dir, EXPORT_DIR).glob("*.gguf"), key=lambda p: p.stat().st_mtime)
    if not exports:
        raise ChatSetupError(
            f"no MODEL given and no GGUF export in {Path(run_dir, EXPORT_DIR)}/: "
            f"make one with `make demo && lwdpo-edge export {run_dir}`, or pass a .gguf / ONNX / HF path")
    return exports[-1]
