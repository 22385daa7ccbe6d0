"""Merge a run's LoRA adapter into its base model and write a plain HF folder carrying the contract.

The base is reloaded in full precision (fp32) even when training used a 4-bit base (QLoRA): merging
into 4-bit weights would bake quantisation error into every exported format, and llama.cpp /
onnxruntime quantise better from full-precision weights themselves.

The merged folder is what the converters read and what `--format hf` ships:

    config.json, generation_config.json, model.safetensors   the merged model
    tokenizer.json, tokenizer_config.json                    the base tokenizer, unchanged
    chat_template.jinja                                      base template + lambda prelude
    lwdpo.json                                               the contract sidecar
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from lwdpo_edge.chat_template import lwdpo_chat_template
from lwdpo_edge.contract import ADAPTER_DIR, Conditioning, RunFolderError, read_run_manifest
from lwdpo_edge.export.architectures import ExportInputError, check_architecture
from lwdpo_edge.export_contract import SIDECAR_FILE, ExportContract
from lwdpo_edge.models import quiet_transformers


def read_run(run_dir: Path) -> tuple[dict[str, Any], Path, str]:
    """(manifest, base model folder, architecture) after checking everything a merge needs."""
    run_dir = Path(run_dir)
    try:
        manifest = read_run_manifest(run_dir)
    except RunFolderError as err:
        raise ExportInputError(str(err)) from err
    if not (run_dir / ADAPTER_DIR / "adapter_config.json").is_file():
        raise ExportInputError(f"{run_dir}: no trained adapter ({ADAPTER_DIR}/adapter_config.json missing)")
    base_dir = Path(manifest["base_model"].get("path", ""))
    if not (base_dir / "config.json").is_file():
        raise ExportInputError(f"{run_dir}: base model folder {base_dir} (lwdpo.json base_model.path) "
                               "has no config.json")
    return manifest, base_dir, check_architecture(base_dir)


def load_run_model(run_dir: Path, base_dir: Path):
    """(fp32 base with the run's adapter applied, not merged, in eval mode; base tokenizer)."""
    import torch  # torch: heavy, only when a run is merged
    from peft import PeftModel  # peft: heavy, only when a run is merged
    from transformers import AutoModelForCausalLM, AutoTokenizer  # transformers: heavy, only when a run is merged

    with quiet_transformers(), warnings.catch_warnings():
        # peft calls a transformers method deprecated in 5.x; not actionable for a user of export
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)  # never 4-bit, see above
        model = PeftModel.from_pretrained(base, Path(run_dir) / ADAPTER_DIR)
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
    return model.eval(), tokenizer


def merge_adapter(model):
    """Fold the LoRA weights into the fp32 base (in place) and return the plain transformers model."""
    return model.merge_and_unload().eval()


def save_merged(model, tokenizer, contract: ExportContract, out_dir: Path, **provenance: Any) -> Path:
    """Write the merged folder (see module docstring) and return it. A merged preset (conditioning "merged")
    keeps the base's own chat template: its lambda is in the weights, not in a header."""
    if not tokenizer.chat_template:
        raise ExportInputError(f"{tokenizer.name_or_path}: the base tokenizer has no chat template to carry "
                               "the lambda header")
    out_dir = Path(out_dir)
    if contract.conditioning == Conditioning.HEADER:
        tokenizer.chat_template = lwdpo_chat_template(tokenizer.chat_template, contract)
    with quiet_transformers():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    _drop_inline_template(out_dir / "tokenizer_config.json")
    sidecar = contract.to_json(**provenance)
    (out_dir / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _drop_inline_template(tokenizer_config: Path) -> None:
    # gguf-py prefers tokenizer_config.json's "chat_template" over chat_template.jinja; keep one
    # source of truth so every converter and loader sees the lambda template.
    config = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    if config.pop("chat_template", None) is not None:
        tokenizer_config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
