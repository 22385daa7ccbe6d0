"""GGUF metadata keys of the lambda contract, their writer and a reader symmetric to it.

    lwdpo.version            uint32         contract version (lwdpo_edge.contract.CONTRACT_VERSION)
    lwdpo.objectives         array[string]  objective names, in header order
    lwdpo.lambda_default     array[float32] default lambda, same order, hundredths summing to 1
    lwdpo.header_format      string         "[lambda] {name}={value:.2f} ..."
    lwdpo.template_variable  string         "lwdpo_lambda": the chat-template variable that sets lambda
    lwdpo.conditioning       string         "header", "soup", "merged" or "none" (absent in files older than soup:
                                            "header"); "none": a plain model, lwdpo.version is the only other key
    lwdpo.soup_adapters      array[string]  soup only: LoRA GGUF file names beside this file, objective order
    lwdpo.soup_strength      float32        soup only: default steering strength (absent: 1, the plain soup);
                                            merged: the strength the mix was merged at
    lwdpo.lambda_merged      array[float32] merged only: the lambda folded into the weights (fixed), objective order

`add_lwdpo_keys` writes them through gguf-py's GGUFWriter (the converter's own writer, see
export/convert.py). `read_lwdpo_metadata` reads them back with a small walker over the GGUF header using
only `struct`: gguf-py's GGUFReader parses every vocabulary entry (seconds for a 49k-150k vocab) and
an app or runtime that only wants the contract should not need gguf-py at all.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from lwdpo_edge.contract import Conditioning
from lwdpo_edge.export_contract import LAMBDA_TEMPLATE_VARIABLE
from lwdpo_edge.lambdas import quantize_lambda

VERSION = "lwdpo.version"
OBJECTIVES = "lwdpo.objectives"
LAMBDA_DEFAULT = "lwdpo.lambda_default"
HEADER_FORMAT = "lwdpo.header_format"
TEMPLATE_VARIABLE = "lwdpo.template_variable"  # names the chat-template variable (LAMBDA_TEMPLATE_VARIABLE)
CONDITIONING = "lwdpo.conditioning"
SOUP_ADAPTERS = "lwdpo.soup_adapters"
SOUP_STRENGTH = "lwdpo.soup_strength"
LAMBDA_MERGED = "lwdpo.lambda_merged"
LORA_BLOCKS = "lwdpo.lora_blocks"  # ONNX soup exports only (model.onnx metadata_props): onnx_adapter.py
CHAT_TEMPLATE = "tokenizer.chat_template"  # llama.cpp's key, read back for verification
ARCHITECTURE = "general.architecture"

PREFIX = "lwdpo."
GGUF_MAGIC = b"GGUF"


def add_lwdpo_keys(writer, contract) -> None:
    """Add the contract's keys to a gguf-py GGUFWriter (before its header is written)."""
    writer.add_uint32(VERSION, contract.version)
    if not contract.takes_lambda:  # a plain model: no key a runtime could build a header from
        writer.add_string(CONDITIONING, contract.conditioning)
        return
    writer.add_array(OBJECTIVES, list(contract.objectives))
    writer.add_array(LAMBDA_DEFAULT, [float(contract.lambda_default[name]) for name in contract.objectives])
    writer.add_string(HEADER_FORMAT, contract.header_format)
    writer.add_string(TEMPLATE_VARIABLE, LAMBDA_TEMPLATE_VARIABLE)
    writer.add_string(CONDITIONING, contract.conditioning)
    if contract.conditioning == Conditioning.SOUP:
        writer.add_array(SOUP_ADAPTERS, list(contract.soup_adapters))
        writer.add_float32(SOUP_STRENGTH, float(contract.soup_strength))
    if contract.conditioning == Conditioning.MERGED:
        writer.add_array(LAMBDA_MERGED, [float(contract.lambda_merged[name]) for name in contract.objectives])
        writer.add_float32(SOUP_STRENGTH, float(contract.soup_strength))


def read_lwdpo_metadata(gguf_path: Path) -> dict[str, Any]:
    """The contract stored in a GGUF, shaped like an exported folder's lwdpo.json sidecar.

    Raises ValueError when the file is not a GGUF or carries no lwdpo.* keys. A plain export
    (conditioning "none") gives only its version and conditioning.
    """
    values = read_gguf_keys(gguf_path, lambda key: key.startswith(PREFIX))
    if values.get(CONDITIONING) == Conditioning.NONE:
        return {"lwdpo_version": int(values[VERSION]), "conditioning": Conditioning.NONE.value}
    if OBJECTIVES not in values:
        raise ValueError(f"{gguf_path}: no {OBJECTIVES} key; not exported by lwdpo-edge")
    objectives = list(values[OBJECTIVES])
    conditioning = values.get(CONDITIONING, "header")
    # float32 in the file: 4 decimals restore what was written (strengths are set by hand, e.g. 2.5)
    strength = round(float(values.get(SOUP_STRENGTH, 1.0)), 4)
    soup = ({"soup_adapters": list(values.get(SOUP_ADAPTERS, [])), "soup_strength": strength}
            if conditioning == Conditioning.SOUP else {})
    if conditioning == Conditioning.MERGED:  # hundredths in float32: re-quantising restores them exactly, as below
        soup = {"lambda_merged": quantize_lambda(list(values[LAMBDA_MERGED]), objectives), "soup_strength": strength}
    return {
        "lwdpo_version": int(values[VERSION]),
        "objectives": objectives,
        # float32 in the file; the values are hundredths, so re-quantising restores them exactly
        "lambda_default": quantize_lambda(list(values[LAMBDA_DEFAULT]), objectives),
        "header_format": values[HEADER_FORMAT],
        "chat_template_variable": values.get(TEMPLATE_VARIABLE),
        "conditioning": conditioning,
        **soup,
    }


# ----------------------------------------------------------------------------------------------------
# A minimal GGUF header walker (GGUF v2/v3, little-endian): it decodes only the keys asked for.

# value type id -> struct format of one scalar (8 = string, 9 = array are handled separately)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_gguf_keys(gguf_path: Path, wanted) -> dict[str, Any]:
    """{key: value} for the metadata keys for which `wanted(key)` is true."""
    with open(gguf_path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ValueError(f"{gguf_path}: not a GGUF file (no GGUF magic bytes)")
        version, _n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        if version not in (2, 3):
            raise ValueError(f"{gguf_path}: GGUF version {version} (big-endian or unknown) is not supported")
        found = {}
        for _ in range(n_kv):
            key = _read_string(f)
            kind = _unpack(f, "<I")
            if wanted(key):
                found[key] = _read_value(f, kind)
            else:
                _skip_value(f, kind)
        return found


def _unpack(f: BinaryIO, fmt: str):
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def _read_string(f: BinaryIO) -> str:
    return f.read(_unpack(f, "<Q")).decode("utf-8")


def _read_value(f: BinaryIO, kind: int):
    if kind == _STRING:
        return _read_string(f)
    if kind == _ARRAY:
        item_kind, count = struct.unpack("<IQ", f.read(12))
        return [_read_value(f, item_kind) for _ in range(count)]
    return _unpack(f, "<" + _SCALARS[kind])


def _skip_value(f: BinaryIO, kind: int) -> None:
    # Skipping seeks over fixed-size data; only string arrays (the vocabulary) need a loop.
    if kind == _STRING:
        f.seek(_unpack(f, "<Q"), 1)
    elif kind == _ARRAY:
        item_kind, count = struct.unpack("<IQ", f.read(12))
        if item_kind in _SCALARS:
            f.seek(count * struct.calcsize(_SCALARS[item_kind]), 1)
        else:
            for _ in range(count):
                _skip_value(f, item_kind)
    else:
        f.seek(struct.calcsize(_SCALARS[kind]), 1)
