"""The chat app's feedback counter: how many judgements the feedback file holds, and what to run with them.

The file's format, and reading and writing it, are lwdpo_edge/feedback_data.py (shared with the trainer).
"""

from __future__ import annotations

from pathlib import Path

from lwdpo_edge.feedback_data import MIN_JUDGEMENTS


def run_folder_of(model_path: str | Path | None) -> Path | None:
    """The run folder a model came from: the folder itself (a soup run loaded directly) or, for an
    export, RUN in RUN/export/NAME.gguf (or RUN/export/NAME.onnx-int4/); None when there is none."""
    if not model_path:
        return None
    path = Path(model_path)
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "lwdpo.json").is_file() and any((candidate / d).is_dir() for d in ("adapters", "adapter")):
            return candidate
    return None


def train_command(feedback_file: Path, model_path: str | Path | None) -> str:
    """The commands that turn the judgements into a `user` slider (shown under the counter)."""
    run = run_folder_of(model_path) or "RUN"
    return (f"lwdpo-edge train --output {run} --feedback {feedback_file}\n"
            f"lwdpo-edge export {run}   # or: lwdpo-edge chat {run}")


def counter_markdown(count: int, feedback_file: Path, model_path: str | Path | None) -> str:
    """How many judgements there are, and what to run with them."""
    need = f" ({MIN_JUDGEMENTS - count} more before training)" if count < MIN_JUDGEMENTS else ""
    return (f"**{count}** judgement{'s' if count != 1 else ''} in `{feedback_file}`{need}. "
            f"Train your `user` slider on them (offline, minutes):\n\n"
            f"```\n{train_command(feedback_file, model_path)}\n```")
