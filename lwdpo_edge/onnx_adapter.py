"""The files that carry lambda into a soup ONNX export: the per-objective B blocks and `.onnx_adapter` mixes.

A soup exported to ONNX (export/soup_onnx.py, the graph edit in export/onnx_lora.py) has one LoRA
branch per adapted projection, whose B matrix is a graph input named INPUT_PREFIX + the HF module name,
(R, out) float32, R = sum_k r_k. For objective scales c = lwdpo_edge.soup.soup_scales(lambda, strength)

    B(lambda)^T = concat_k c_k * block_k          block_k = s_k B_k^T  (r_k, out), s_k its LoRA scale

The blocks lie beside model.onnx in BLOCKS_FILE (safetensors, "<module>/<objective>" -> (r_k, out);
the contract names the file in `lora_blocks`). `write_blocks` and `read_blocks` are its writer and
reader; `write_onnx_adapter` writes the mix at given scales as an onnxruntime `.onnx_adapter` file,
which onnxruntime-genai's Adapters API feeds to those inputs. The exporter writes and verifies with
these functions and lwdpo_edge/runtime/onnx.py reads with them, so both agree on the format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUT_PREFIX = "lwdpo.lora_B."
BLOCKS_FILE = "lwdpo_lora_blocks.safetensors"


def mixed_b(blocks: dict[int, np.ndarray], coefficients) -> np.ndarray:
    """B(lambda)^T = concat_k c_k * block_k, (R, out) float32 (module docstring)."""
    return np.ascontiguousarray(np.concatenate([c * blocks[k] for k, c in enumerate(coefficients)], axis=0),
                                dtype=np.float32)


def write_blocks(path: Path, blocks: dict, objectives) -> None:
    """Write {module: {objective index: block}} as BLOCKS_FILE ("<module>/<objective>" -> block)."""
    from safetensors.numpy import save_file  # optional dependency (the train extra)

    save_file({f"{module}/{objectives[k]}": block for module, per in blocks.items() for k, block in per.items()},
              str(path))


def read_blocks(path: Path, objectives) -> dict[str, dict[int, np.ndarray]]:
    """{input name: {objective index: block}}: the reader symmetric to write_blocks."""
    from safetensors.numpy import load_file  # optional dependency (the train extra)

    blocks: dict[str, dict[int, np.ndarray]] = {}
    for key, block in load_file(str(path)).items():
        module, objective = key.rsplit("/", 1)
        blocks.setdefault(INPUT_PREFIX + module, {})[list(objectives).index(objective)] = block
    return blocks


def write_onnx_adapter(path: Path, blocks: dict[str, dict[int, np.ndarray]], coefficients) -> Path:
    """An onnxruntime `.onnx_adapter` file feeding every B input the mix at `coefficients`."""
    import onnxruntime as ort  # optional dependency (the onnx extra)

    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    # OrtValue keeps a pointer to the array: keep them alive (and C-contiguous) until the file is written
    arrays = {name: mixed_b(per, coefficients) for name, per in blocks.items()}
    adapter.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in arrays.items()})
    adapter.export_adapter(str(path))
    return path
