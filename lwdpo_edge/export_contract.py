"""The lambda contract an exported model carries (docs/design.md, section 7), independent of the file format.

A run's lwdpo.json says which objectives the model was trained on and which lambda to use when the
app says nothing. An exported file must say the same so that any app can drive lambda without this
package. `ExportContract` is those facts; lwdpo_edge/gguf_keys.py writes them into GGUF metadata,
export/onnx.py into a `lwdpo.json` sidecar and the ONNX model's metadata_props, lwdpo_edge/chat_template.py
into the chat template. The exporter writes the contract and the runtimes read it, so it lives in the core.

The default lambda is stored quantised (hundredths summing to 1): exactly the header the model sees
when no lambda is given, so every format agrees on it to the last digit.

`conditioning` says how lambda reaches the model: "header" (the lambda header in the system message,
one merged model) or "soup" (no header; the plain base plus one LoRA adapter per objective applied
at scales lwdpo_edge.soup.soup_scales(lambda, strength); `soup_adapters` names the adapter files, in
objective order (GGUF; an ONNX soup has `lora_blocks` instead: lwdpo_edge/onnx_adapter.py), and
`soup_strength` is the default steering strength, 1 when absent) or "merged"
(a soup's mix at one lambda folded into plain weights by `export --preset/--lambda`: no header, no
adapters, lambda fixed at `lambda_merged`, which is also the default; export/preset.py) or "none"
(a run trained with --no-condition-on-lambda: lambda never reached it, so its export is a plain model
that records only the contract version and "none": no objectives, no default lambda, no header format).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lwdpo_edge.contract import CONTRACT_VERSION, EXPORTED_CONDITIONINGS, Conditioning, check_strength
from lwdpo_edge.lambdas import HEADER_FORMAT, format_lambda_header, quantize_lambda

SIDECAR_FILE = "lwdpo.json"  # next to model.onnx / model.safetensors in an exported folder
LAMBDA_TEMPLATE_VARIABLE = "lwdpo_lambda"  # the chat-template variable apps set: {"helpfulness": 0.5, ...}


@dataclass(frozen=True)
class ExportContract:
    objectives: tuple[str, ...]
    lambda_default: dict[str, float]  # quantised, in objective order
    version: int = CONTRACT_VERSION
    header_format: str = HEADER_FORMAT
    conditioning: str = "header"  # "soup": no header; lambda scales one LoRA adapter per objective
    soup_adapters: tuple[str, ...] = ()  # soup exports: LoRA GGUF file names beside the base, objective order
    # soup: default steering strength (lwdpo_edge/soup.py); merged: the strength it was merged at
    soup_strength: float = 1.0
    lambda_merged: dict[str, float] | None = None  # merged: the lambda folded into the weights (quantised)
    lora_blocks: str = ""  # soup ONNX: the per-objective B blocks file beside model.onnx (onnx_adapter.py)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> ExportContract:
        """The contract of a run, from its lwdpo.json (as read by `read_run_manifest`)."""
        conditioning = manifest.get("conditioning") or "header"  # absent in exports older than soup
        if conditioning not in EXPORTED_CONDITIONINGS:
            raise ValueError(f"conditioning {conditioning!r}; expected one of {', '.join(EXPORTED_CONDITIONINGS)}")
        if conditioning == Conditioning.NONE:
            # the run's objectives and default lambda never reached the model: nothing of them is exported
            return cls((), {}, int(manifest.get("lwdpo_version", CONTRACT_VERSION)), conditioning=conditioning)
        objectives = tuple(manifest["objectives"])
        adapters = tuple(manifest.get("soup_adapters") or ())
        if adapters and len(adapters) != len(objectives):
            raise ValueError(f"soup_adapters lists {len(adapters)} files for {len(objectives)} objectives")
        mixes = conditioning in (Conditioning.SOUP, Conditioning.MERGED)
        strength = check_strength(manifest.get("soup_strength", 1.0)) if mixes else 1.0
        merged = manifest.get("lambda_merged")
        if (conditioning == Conditioning.MERGED) != (merged is not None):
            raise ValueError("lambda_merged is required for, and only for, conditioning 'merged'")
        merged = quantize_lambda(merged, objectives) if merged is not None else None
        default = merged or quantize_lambda(manifest["lambda_default"], objectives)  # a merged file's only lambda
        return cls(objectives, default, int(manifest.get("lwdpo_version", CONTRACT_VERSION)),
                   manifest.get("header_format", HEADER_FORMAT), conditioning, adapters, strength, merged,
                   manifest.get("lora_blocks") or "")

    @property
    def takes_lambda(self) -> bool:
        """False for the export of a run trained without lambda ("none"): a plain model."""
        return self.conditioning != Conditioning.NONE

    def default_header(self) -> str:
        """The header line the model reads when no lambda is given."""
        return format_lambda_header(self.lambda_default, self.objectives)

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """The sidecar lwdpo.json of an exported folder (`extra`: provenance such as the format)."""
        if not self.takes_lambda:  # a plain model: nothing an app could build a header or sliders from
            return {"lwdpo_version": self.version, "conditioning": self.conditioning, **extra}
        return {
            "lwdpo_version": self.version,
            "objectives": list(self.objectives),
            "lambda_default": dict(self.lambda_default),
            "header_format": self.header_format,
            "default_header": self.default_header(),
            "conditioning": self.conditioning,
            "chat_template_variable": LAMBDA_TEMPLATE_VARIABLE,
            **({"soup_adapters": list(self.soup_adapters), "soup_strength": self.soup_strength}
               if self.conditioning == Conditioning.SOUP else {}),
            **({"lora_blocks": self.lora_blocks} if self.lora_blocks else {}),
            **({"lambda_merged": dict(self.lambda_merged), "soup_strength": self.soup_strength}
               if self.conditioning == Conditioning.MERGED else {}),
            **extra,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportContract:
        """Inverse of `to_json` (extra fields are ignored)."""
        return cls.from_manifest(data)
