"""Merged HF folder -> onnxruntime-genai model folder (fp32 / int4) carrying the lambda contract.

The model is built by onnxruntime-genai's model builder (optimum's exporter needs transformers <
4.58; torch.onnx.export would leave us writing the KV-cache plumbing genai expects). The contract
goes where each consumer can read it:

    lwdpo.json          the sidecar, same content as in the merged folder (plus the format)
    model.onnx          metadata_props lwdpo.* (JSON-encoded values): survives copying model.onnx alone
    chat_template.jinja the lambda template; onnxruntime-genai's Tokenizer.apply_chat_template uses it
    genai_config.json   unchanged: onnxruntime-genai rejects unknown keys ('Unknown value "lwdpo"'),
                        so the contract cannot live there
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from lwdpo_edge import gguf_keys as keys
from lwdpo_edge.contract import Conditioning
from lwdpo_edge.export.gguf import ConversionError, log_tail
from lwdpo_edge.export_contract import LAMBDA_TEMPLATE_VARIABLE, SIDECAR_FILE, ExportContract

PRECISIONS = ("fp32", "int4")
DEFAULT_PRECISION = "int4"
# int4 body with the output head and the most sensitive layers in int8 (the builder's analogue of
# llama.cpp's q4_k_m). On SmolLM2-135M against the fp32 run: top-1 agreement 80% vs 69% for the
# builder's plain RTN int4, 117 MB vs 90 MB, decode ~10% slower, build 37 s vs 12 s.
INT4_OPTIONS = ("algo_config=k_quant_mixed",)
MODEL_FILE = "model.onnx"
TEMPLATE_FILE = "chat_template.jinja"


def run_builder(merged_dir: Path, out_dir: Path, precision: str, cache_dir: Path,
                options: tuple[str, ...] = ()) -> Path:
    """onnxruntime-genai's builder in a child process (its --help crashes; the build itself works)."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(merged_dir), "-o", str(out_dir),
           "-p", precision, "-e", "cpu", "-c", str(cache_dir)]  # -c: it would create ./cache_dir otherwise
    options = (*options, *(INT4_OPTIONS if precision == "int4" else ()))
    if options:
        cmd += ["--extra_options", *options]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not (out_dir / MODEL_FILE).is_file():
        raise ConversionError(f"onnxruntime-genai model builder failed on {merged_dir}:\n{log_tail(done.stderr)}")
    return out_dir


def onnx_metadata(contract: ExportContract) -> dict[str, str]:
    """The lwdpo.* metadata_props of model.onnx: the GGUF keys, values JSON-encoded (props are strings)."""
    if not contract.takes_lambda:  # a plain model, as in lwdpo_edge/gguf_keys.py
        return {keys.VERSION: json.dumps(contract.version), keys.CONDITIONING: json.dumps(contract.conditioning)}
    return {
        keys.VERSION: json.dumps(contract.version),
        keys.OBJECTIVES: json.dumps(list(contract.objectives)),
        keys.LAMBDA_DEFAULT: json.dumps([contract.lambda_default[name] for name in contract.objectives]),
        keys.HEADER_FORMAT: json.dumps(contract.header_format),
        keys.TEMPLATE_VARIABLE: json.dumps(LAMBDA_TEMPLATE_VARIABLE),
        keys.CONDITIONING: json.dumps(contract.conditioning),
        **({keys.LAMBDA_MERGED: json.dumps([contract.lambda_merged[name] for name in contract.objectives]),
            keys.SOUP_STRENGTH: json.dumps(contract.soup_strength)}
           if contract.conditioning == Conditioning.MERGED else {}),
        **({keys.SOUP_STRENGTH: json.dumps(contract.soup_strength), keys.LORA_BLOCKS: json.dumps(contract.lora_blocks)}
           if contract.conditioning == Conditioning.SOUP else {}),
    }


def write_onnx_metadata(model_path: Path, contract: ExportContract) -> None:
    """Add the lwdpo.* props to model.onnx without touching its external weight file."""
    import onnx  # optional: onnx extra

    model = onnx.load(str(model_path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props if not p.key.startswith(keys.PREFIX)}
    onnx.helper.set_model_props(model, {**props, **onnx_metadata(contract)})
    onnx.save(model, str(model_path))


def read_onnx_metadata(model_path: Path) -> dict[str, Any]:
    """The lwdpo.* props of a model.onnx, decoded; shaped like `keys.read_lwdpo_metadata`."""
    import onnx  # optional: onnx extra

    model = onnx.load(str(model_path), load_external_data=False)
    values = {p.key: json.loads(p.value) for p in model.metadata_props if p.key.startswith(keys.PREFIX)}
    if values.get(keys.CONDITIONING) == Conditioning.NONE:
        return {"lwdpo_version": values[keys.VERSION], "conditioning": Conditioning.NONE.value}
    if keys.OBJECTIVES not in values:
        raise ValueError(f"{model_path}: no {keys.OBJECTIVES} metadata; not exported by lwdpo-edge")
    objectives = values[keys.OBJECTIVES]
    return {
        "lwdpo_version": values[keys.VERSION],
        "objectives": objectives,
        "lambda_default": dict(zip(objectives, values[keys.LAMBDA_DEFAULT])),
        "header_format": values[keys.HEADER_FORMAT],
        "chat_template_variable": values.get(keys.TEMPLATE_VARIABLE),
        "conditioning": values.get(keys.CONDITIONING, "header"),
        **({"lambda_merged": dict(zip(objectives, values[keys.LAMBDA_MERGED])),
            "soup_strength": values.get(keys.SOUP_STRENGTH, 1.0)} if keys.LAMBDA_MERGED in values else {}),
        **({"soup_strength": values.get(keys.SOUP_STRENGTH, 1.0), "lora_blocks": values[keys.LORA_BLOCKS]}
           if keys.LORA_BLOCKS in values else {}),
    }


def build_onnx(merged_dir: Path, out_dir: Path, precision: str, workdir: Path, stage,
               options: tuple[str, ...] = ()) -> Path:
    """Build the ONNX folder at `out_dir` (a temporary name; the caller publishes it)."""
    with stage(f"build ONNX {precision} (onnxruntime-genai)"):
        run_builder(merged_dir, out_dir, precision, workdir / "builder-cache", options)
    with stage("write the lambda contract"):
        write_onnx_contract(merged_dir, out_dir, precision)
    return out_dir


def write_onnx_contract(merged_dir: Path, out_dir: Path, precision: str) -> None:
    """Sidecar, chat template and model.onnx metadata of an ONNX folder, from the merged folder's sidecar."""
    sidecar = json.loads((merged_dir / SIDECAR_FILE).read_text(encoding="utf-8"))
    sidecar["format"] = f"onnx {precision}"
    (out_dir / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    # the builder copies the tokenizer files; make sure the lambda template is the one it copied
    (out_dir / TEMPLATE_FILE).write_text((merged_dir / TEMPLATE_FILE).read_text(encoding="utf-8"), encoding="utf-8")
    write_onnx_metadata(out_dir / MODEL_FILE, ExportContract.from_json(sidecar))
