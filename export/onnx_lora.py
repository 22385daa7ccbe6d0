"""Lambda at run time in ONNX: a soup's adapters as one LoRA branch whose B matrices are graph inputs.

onnxruntime-genai applies one adapter at a time (`Generator.set_active_adapter`), at a fixed scale, so
K adapters cannot be mixed by K scales as llama.cpp does. One adapter can still hold any mix: stack the
K adapters along the rank (as export/soup_gguf.write_mix_lora_gguf does for Ollama),

    y = W x + B(lambda) (A x)      A = [A_1; ...; A_K]                          (R, in), R = sum r_k
                                   B(lambda) = [c_1 s_1 B_1, ..., c_K s_K B_K]  (out, R), c = soup_scales

A is fixed and lives in model.onnx; B(lambda) is what changes with lambda, so it becomes a graph input
(one per adapted projection, named INPUT_PREFIX + the HF module name, stored (R, out) as ONNX MatMul
expects), whose initializer of the same name is its default: the mix at the run's default lambda.
Any onnxruntime app that ignores the inputs gets the default mix; one that feeds them (directly, or
as an onnxruntime `.onnx_adapter` file through onnxruntime-genai's Adapters API, as
lwdpo_edge/runtime/onnx.py does) gets any lambda. The per-objective blocks s_k B_k^T are written
beside the model (BLOCKS_FILE, safetensors: "<module>/<objective>" -> (r_k, out)) so an app can
build B(lambda) = concat_k c_k * block_k without this package. Those files' format (the blocks file,
the input names, `.onnx_adapter` mixes) is lwdpo_edge/onnx_adapter.py, shared with the runtime.

Written by hand (an onnx graph edit): onnxruntime-genai's builder supports one PEFT adapter baked in
as constants, and not in int4 (its block quantiser rejects rank-r matrices). The edit is the same for
fp32 and int4 models: the branch runs in fp32 beside the (possibly 4-bit) base MatMul. The builder is
run with fuse_qkv=false so q, k and v are separate MatMuls, each with its own adapter.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lwdpo_edge.onnx_adapter import BLOCKS_FILE, INPUT_PREFIX, mixed_b, write_blocks

BUILDER_OPTIONS = ("fuse_qkv=false",)  # one MatMul per projection (q, k, v apart)
_MODULE = re.compile(r"^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)$")


def node_prefix(module: str) -> str:
    """The builder's node name prefix for an HF module:
    model.layers.3.self_attn.q_proj -> /model/layers.3/attn/q_proj/."""
    match = _MODULE.match(module)
    if not match:
        raise ValueError(f"{module}: not a decoder-layer projection the ONNX LoRA branch knows")
    layer, block, proj = match.groups()
    return f"/model/layers.{layer}/{'attn' if block == 'self_attn' else 'mlp'}/{proj}/"


def stacked_adapters(adapter_dirs, coefficients) -> tuple[dict, dict]:
    """({module: A (R, in)}, {module: {objective index: s_k B_k^T (r_k, out)}}) for adapters on the same modules."""
    from lwdpo_edge.export.soup_gguf import adapter_config, lora_pairs  # imports torch at its top

    stacked_a, blocks = {}, {}
    for k, adapter_dir in enumerate(adapter_dirs):
        config = adapter_config(adapter_dir)
        for weight, (A, B) in lora_pairs(adapter_dir).items():
            module = weight.removesuffix(".weight")
            scale = float(config["lora_alpha"]) / A.shape[0]
            stacked_a.setdefault(module, []).append(A.numpy())
            blocks.setdefault(module, {})[k] = (scale * B).T.contiguous().numpy()  # (r_k, out)
    if any(len(parts) != len(adapter_dirs) for parts in stacked_a.values()):
        raise ValueError("the soup's adapters adapt different weights; they cannot share one ONNX LoRA branch")
    return {m: np.concatenate(parts, axis=0) for m, parts in stacked_a.items()}, blocks


def add_lora_branches(model_path: Path, adapter_dirs, objectives, coefficients) -> list[str]:
    """Edit model.onnx in place (its external weight file untouched) and write BLOCKS_FILE beside it.
    -> the new input names, in graph order."""
    import onnx  # optional dependency (the onnx extra)
    from onnx import TensorProto, helper, numpy_helper  # optional: onnx extra

    model = onnx.load(str(model_path), load_external_data=False)
    stacked_a, blocks = stacked_adapters(adapter_dirs, coefficients)
    targets = {node_prefix(m): m for m in stacked_a}
    nodes, inputs = [], []
    for node in model.graph.node:
        nodes.append(node)
        prefix = node.name.rsplit("/", 1)[0] + "/"
        if node.op_type not in ("MatMul", "MatMulNBits") or prefix not in targets:
            continue
        module = targets.pop(prefix)
        name, out = INPUT_PREFIX + module, node.output[0]
        node.output[0] = out + "/lwdpo_base"
        a_name = f"lwdpo.lora_A.{module}"
        model.graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(stacked_a[module].T), a_name))  # (in, R)
        default = mixed_b(blocks[module], coefficients)  # (R, out)
        model.graph.initializer.append(numpy_helper.from_array(default, name))
        model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(default.shape)))
        nodes += [helper.make_node("MatMul", [node.input[0], a_name], [prefix + "lwdpo_lora_A"],
                                   name=prefix + "lwdpo_lora_A"),
                  helper.make_node("MatMul", [prefix + "lwdpo_lora_A", name], [prefix + "lwdpo_lora_B"],
                                   name=prefix + "lwdpo_lora_B"),
                  helper.make_node("Add", [node.output[0], prefix + "lwdpo_lora_B"], [out],
                                   name=prefix + "lwdpo_lora_Add")]
        inputs.append(name)
    if targets:
        raise ValueError(f"{model_path}: no MatMul for {sorted(targets.values())[:3]}... (builder node names changed?)")
    del model.graph.node[:]
    model.graph.node.extend(nodes)  # the branch right after its MatMul: still topologically sorted
    onnx.save(model, str(model_path))
    write_blocks(model_path.parent / BLOCKS_FILE, blocks, objectives)
    return inputs
