"""Which base models export: the architectures round-tripped through llama.cpp and onnxruntime-genai in tests.

Both converters know many more, but a format we have not verified end to end (Q/K permutation,
biases, q/k norms, tied heads, pre-tokenizer) is exactly where exports break silently, so anything
else is refused up front with the list of what works.
"""

from __future__ import annotations

import json
from pathlib import Path

# HF architecture class -> short name used in messages (and llama.cpp's general.architecture)
SUPPORTED = {
    "LlamaForCausalLM": "llama",  # SmolLM2, Llama 3.x
    "Qwen2ForCausalLM": "qwen2",  # Qwen2, Qwen2.5
    "Qwen3ForCausalLM": "qwen3",
}


class ExportInputError(ValueError):
    """Bad input to an export (exit status 2): the message names the thing and what is accepted."""


def check_architecture(model_dir: Path) -> str:
    """The short architecture name of the HF folder, or ExportInputError listing the supported ones."""
    config_path = Path(model_dir) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ExportInputError(f"base model {model_dir}: cannot read config.json ({err})") from err
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    name = architectures[0]
    if name not in SUPPORTED:
        supported = ", ".join(f"{short} ({cls})" for cls, short in SUPPORTED.items())
        raise ExportInputError(f"base model {model_dir}: unsupported architecture {name}; "
                               f"lwdpo-edge export supports {supported}")
    return SUPPORTED[name]
