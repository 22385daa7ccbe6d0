"""An Ollama Modelfile beside an exported GGUF.

Ollama renders prompts with Go templates, not the GGUF's Jinja template, so it cannot evaluate the
lambda prelude. The Modelfile instead puts the default header in SYSTEM; an app steers by sending a
system message that starts with its own header (`format_lambda_header`). TEMPLATE is written for the
two chat formats the supported architectures use (ChatML: SmolLM2, Qwen; Llama 3); for anything else
Ollama's own template detection is left to work.
"""

from __future__ import annotations

from pathlib import Path

from lwdpo_edge.contract import atomic_write_text
from lwdpo_edge.export.contract import ExportContract

# Go templates as in Ollama's library models (they render .System via the messages loop).
_CHATML = (
    '{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
    '{{- range .Messages }}{{ if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}{{ end }}'
    '<|im_start|>assistant\n'
)
_LLAMA3 = (
    '{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}'
    '{{- range .Messages }}{{ if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
    '{{ .Content }}<|eot_id|>{{ end }}{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n'
)
CHAT_FORMATS = {
    "chatml": ("<|im_start|>", _CHATML, ["<|im_end|>"]),
    "llama3": ("<|start_header_id|>", _LLAMA3, ["<|eot_id|>", "<|start_header_id|>"]),
}


def chat_format(chat_template: str) -> str | None:
    """'chatml', 'llama3' or None, recognised from the special tokens the Jinja template writes."""
    for name, (marker, _, _) in CHAT_FORMATS.items():
        if marker in chat_template:
            return name
    return None


def modelfile_text(gguf_name: str, contract: ExportContract, chat_template: str) -> str:
    """The Modelfile for the GGUF file `gguf_name` (a name in the same folder)."""
    lines = [
        "# Ollama Modelfile written by lwdpo-edge export:  ollama create NAME -f THIS_FILE",
        f"# lambda over {', '.join(contract.objectives)}: the system message must start with a header like the",
        "# SYSTEM line below; send your own system message starting with '[lambda] ...' to steer.",
        f"FROM ./{gguf_name}",
    ]
    fmt = chat_format(chat_template)
    if fmt is not None:
        _, template, stops = CHAT_FORMATS[fmt]
        lines.append(f'TEMPLATE """{template}"""')
        lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines.append(f'SYSTEM """{contract.default_header()}"""')
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: Path, contract: ExportContract, chat_template: str) -> Path:
    """NAME.Modelfile beside NAME.gguf (several quantisations can share a folder)."""
    path = gguf_path.with_suffix(".Modelfile")
    atomic_write_text(path, modelfile_text(gguf_path.name, contract, chat_template))
    path.chmod(0o644)  # atomic_write_text's temporary file is private; a Modelfile is meant to be shared
    return path
