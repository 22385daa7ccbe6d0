"""QLoRA bases loaded as 4-bit checkpoints: quantise once, in a child process, and cache the result.

Loading a fp32 folder with a bitsandbytes 4-bit config reads every fp32 weight (memory-mapped) and
quantises it: the training process then holds the fp32 file's pages *and* the 4-bit copy, so QLoRA
peaked above fp32 LoRA (925 vs 476 MB RSS after loading the default model). Instead, the first QLoRA
load of a folder quantises it in a child process and saves the 4-bit model (bitsandbytes
serialisation: packed NF4 weights + their quant state; norms and embeddings stay fp32); every QLoRA
load then reads that checkpoint directly (470 MB). The weights are the same bits as quantising in
process: NF4 quantisation is deterministic (tests/test_models.py checks the logits are equal).

Cache layout: ROOT/<folder name>-<key>/ (ROOT: models.cache_dir()/nf4), the key covering the source
folder's resolved path, its config.json and weight files (size + mtime) and NF4_FORMAT. Written to a hidden temp
folder and renamed into place, so an interrupted quantisation never leaves a half checkpoint.
CPU only: on CUDA bitsandbytes quantises each tensor on the GPU as it loads, with no fp32 model in
host memory, so GPU runs load the fp32 folder as before.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lwdpo_edge.publish import publish_once

if TYPE_CHECKING:
    import torch

# Bump when what is saved changes (quant type, double quantisation, compute dtype), so stale
# checkpoints are not reused.
NF4_FORMAT = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def checkpoint_key(model_dir: Path) -> str:
    """Path + config + weight files' size and mtime: a changed base quantises again (no content hash:
    hashing hundreds of MB on every load costs more than the load)."""
    resolved = Path(model_dir).resolve()
    parts = [str(resolved), f"nf4-format{NF4_FORMAT}", (resolved / "config.json").read_text(encoding="utf-8")]
    for path in sorted(resolved.iterdir()):
        if path.suffix in WEIGHT_SUFFIXES:
            stat = path.stat()
            parts.append(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def nf4_checkpoint(model_dir: Path, root: Path) -> Path:
    """The cached 4-bit checkpoint of `model_dir` under `root` (the cache's nf4/ folder), made in a child
    process and published atomically the first time."""
    final = root / f"{Path(model_dir).resolve().name}-{checkpoint_key(model_dir)}"
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        done = subprocess.run([sys.executable, "-m", "lwdpo_edge.nf4_cache", str(model_dir), str(tmp)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"4-bit quantisation of {model_dir} failed:\n{done.stderr[-2000:]}")
        tmp.chmod(0o755)
        publish_once(tmp, final, complete=lambda folder: (folder / "config.json").is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def nf4_config(device: torch.device):
    """The QLoRA 4-bit config: NF4 with double quantisation."""
    import torch  # torch: heavy, only when a model is touched
    from transformers import BitsAndBytesConfig  # transformers: heavy, only when a model is touched

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        # bf16 compute on GPU (the QLoRA recipe); fp32 on CPU, the precision the CPU pipeline uses
        bnb_4bit_compute_dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
        bnb_4bit_use_double_quant=True,
    )


def quantize_and_save(model_dir: Path, out_dir: Path) -> None:
    """Load `model_dir` 4-bit on the CPU and save it (this is the step that holds the fp32 pages)."""
    import torch  # torch: heavy, only in the child process
    from transformers import AutoModelForCausalLM  # transformers: heavy, only in the child process

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, device_map={"": "cpu"},
                                                 quantization_config=nf4_config(torch.device("cpu")))
    model.save_pretrained(out_dir)


if __name__ == "__main__":  # the child process of nf4_checkpoint
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # as models.quiet_transformers: no tqdm bars in the stderr it keeps
    quantize_and_save(Path(sys.argv[1]), Path(sys.argv[2]))
