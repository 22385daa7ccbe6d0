"""An Ollama Modelfile beside an exported GGUF.

Ollama renders prompts with Go templates, not the GGUF's Jinja template, so it cannot evaluate the lambda
prelude. For a header export the Modelfile instead puts the default header in SYSTEM; an app steers by sending
a system message that starts with its own header (`format_lambda_header`). A merged preset, a soup export or a
plain export (a run trained without lambda) has no header: SYSTEM is the base template's implicit system
message, if any, so Ollama's prompt equals the runtime's. A soup export's Modelfile applies its default mix as
one LoRA (export/soup_gguf.py write_mix_lora_gguf): Ollama takes one ADAPTER at a fixed scale. TEMPLATE is
written for the two chat formats the supported architectures use (ChatML: SmolLM2, Qwen; Llama 3); for
anything else Ollama's own template detection is left to work.
"""

from __future__ import annotations

import re
from pathlib import Path

from lwdpo_edge.chat_template import render_chat_template
from lwdpo_edge.contract import Conditioning, atomic_write_text
from lwdpo_edge.export_contract import ExportContract

# Go templates as in Ollama's library models (they render .System via the messages loop).
_CHATML = (
    '{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
    '{{- range .Messages }}{{ if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
    '{{ end }}{{ end }}'
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


def implicit_system(chat_template: str) -> str:
    """The system message the Jinja template writes when a conversation has none (SmolLM2's "You are a
    helpful AI assistant named SmolLM..."), '' when it writes none or the format is unknown. Ollama's
    Go template cannot hold that rule, so the Modelfile's SYSTEM carries it."""
    fmt = chat_format(chat_template)
    if fmt is None:
        return ""
    rendered = render_chat_template(chat_template, [{"role": "user", "content": "x"}])
    opening, closing = _SYSTEM_BLOCK[fmt]
    at = rendered.find(opening)
    user_at = rendered.find("x")
    if at < 0 or at > user_at:
        return ""
    body = rendered[at + len(opening):]
    return body[:body.find(closing)]


_SYSTEM_BLOCK = {"chatml": ("<|im_start|>system\n", "<|im_end|>"),
                 "llama3": ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>")}


def modelfile_text(gguf_name: str, contract: ExportContract, chat_template: str,
                   adapter_name: str | None = None) -> str:
    """The Modelfile for the GGUF file `gguf_name` (a name in the same folder; `adapter_name`: a LoRA
    GGUF applied on top, for a soup export's default mix)."""
    lines = ["# Ollama Modelfile written by lwdpo-edge export:  ollama create NAME -f THIS_FILE",
             *_lambda_comment(contract), f"FROM ./{gguf_name}"]
    if adapter_name:
        lines.append(f"ADAPTER ./{adapter_name}")
    fmt = chat_format(chat_template)
    if fmt is not None:
        _, template, stops = CHAT_FORMATS[fmt]
        lines.append(f'TEMPLATE """{template}"""')
        lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    header = contract.conditioning == Conditioning.HEADER
    system = contract.default_header() if header else implicit_system(chat_template)
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def _lambda_comment(contract: ExportContract) -> list[str]:
    """What lambda this Modelfile runs at, and how (or whether) a user can change it."""
    def words(lam):
        return ", ".join(f"{name}={lam[name]:.2f}" for name in contract.objectives)

    if contract.conditioning == Conditioning.HEADER:
        return [f"# lambda over {', '.join(contract.objectives)}: the system message must start with a header like the",
                "# SYSTEM line below; send your own system message starting with '[lambda] ...' to steer."]
    if not contract.takes_lambda:
        return ["# a plain model: trained without lambda conditioning (--no-condition-on-lambda), it takes no lambda."]
    if contract.conditioning == Conditioning.MERGED:
        return [f"# a merged preset: lambda is fixed at {words(contract.lambda_merged)} (lwdpo.lambda_merged);",
                "# export another preset for another lambda: lwdpo-edge export RUN --preset NAME / --lambda ..."]
    return [f"# an adapter-soup export at its default lambda {words(contract.lambda_default)}, strength "
            f"{contract.soup_strength:g}: Ollama",
            "# applies one ADAPTER at a fixed scale, so the mix is one LoRA file here and lambda cannot change per",
            "# request. To steer, use llama.cpp's per-request adapter scales (the files in lwdpo.soup_adapters),",
            "# or export one merged preset per lambda: lwdpo-edge export RUN --preset NAME / --lambda ..."]


def read_modelfile(path: Path) -> dict:
    """The instructions of a Modelfile as written above: {"FROM": str, "ADAPTER": [str], "TEMPLATE": str,
    "SYSTEM": str, "PARAMETER": [(name, value)]} (the reader symmetric to `modelfile_text`; ValueError on a
    line it does not know, naming the line)."""
    text = Path(path).read_text(encoding="utf-8")
    found: dict = {"ADAPTER": [], "PARAMETER": []}
    pattern = re.compile(r'^(FROM|ADAPTER|PARAMETER|TEMPLATE|SYSTEM) (?:"""(.*?)"""|([^\n]*))$', re.S | re.M)
    at = 0
    for match in [*pattern.finditer(text), None]:
        end = match.start() if match else len(text)
        for n, line in enumerate(text[at:end].split("\n")):
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"{path}:{text[:at].count(chr(10)) + n + 1}: not a Modelfile instruction: {line!r}")
        if match is None:
            break
        name, value = match.group(1), match.group(2) if match.group(2) is not None else match.group(3).strip()
        if name == "PARAMETER":
            key, _, rest = value.partition(" ")
            found[name].append((key, rest.strip().strip('"')))
        elif name == "ADAPTER":
            found[name].append(value)
        else:
            found[name] = value
        at = match.end()
    return found


def write_modelfile(gguf_path: Path, contract: ExportContract, chat_template: str,
                    adapter_name: str | None = None) -> Path:
    """NAME.Modelfile beside NAME.gguf (several quantisations can share a folder)."""
    path = gguf_path.with_suffix(".Modelfile")
    atomic_write_text(path, modelfile_text(gguf_path.name, contract, chat_template, adapter_name))
    path.chmod(0o644)  # atomic_write_text's temporary file is private; a Modelfile is meant to be shared
    return path
