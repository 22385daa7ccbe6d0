"""How far apart are two correct backends? The default model in fp32 torch vs llama.cpp, teacher-forced.

    .venv/bin/python bench/backend_agreement.py --prompts 20
    PYTHONPATH=.llama-avx2 .venv/bin/python bench/backend_agreement.py --prompts 20   # llama.cpp without AVX-512

For each prompt the fp32 transformers model (the default GGUF dequantised) answers greedily; both
backends then score prompt + that answer teacher-forced, and the bench prints, per llama.cpp file:
the margin shift (how far the candidate moves the reference's top-1 minus runner-up logit: a flip needs a
shift larger than the margin; median / max over prompts), how many answer positions are near ties
(reference top-2 margin < MIN_MARGIN), how many argmax flips fall on near ties and how many on
confident positions. The rule in lwdpo_edge/agreement.py is sound on a machine when the last column is 0
and the max shift is well below MIN_MARGIN. Files: the shipped Q4_1 GGUF (its weights are exactly the
fp32 model's, so the shift is arithmetic only: activations quantised to 8 bits in llama.cpp's dot
products) and an f16 GGUF converted from the fp32 folder (what `export --format gguf` writes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "lwdpo_edge" / "defaults" / "prompts.jsonl").read_text().splitlines()]
    return [r["prompt"] for r in rows if r["split"] == "heldout"][:n]


def reference_runs(model_dir: Path, questions: list[str], max_new: int, threads: int):
    """[(tokens, answer start, fp32 logits (T, V))] from the transformers model."""
    from transformers import AutoModelForCausalLM

    from lwdpo_edge.conditioning import prompt_text, stop_tokens
    from lwdpo_edge.export.runtimes import HFRuntime
    from lwdpo_edge.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    runtime = HFRuntime(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer, threads)
    stop = stop_tokens(runtime.model, tokenizer)
    runs = []
    for question in questions:
        tokens = runtime.tokenize(prompt_text(tokenizer, [{"role": "user", "content": question}]))
        answer = runtime.greedy(tokens, max_new, stop)
        runs.append((tokens + answer, len(tokens) - 1, runtime.logits(tokens + answer)))
    return runs, stop


def compare_file(gguf: Path, runs, threads: int) -> dict:
    from lwdpo_edge.agreement import MIN_MARGIN, compare_logits
    from lwdpo_edge.export.runtimes import LlamaCppRuntime

    runtime = LlamaCppRuntime(gguf, n_threads=threads, n_ctx=2048)
    shifts, near, near_flips, confident_flips, positions = [], 0, 0, 0, 0
    try:
        for tokens, start, reference in runs:
            agreement = compare_logits(reference[start:], runtime.logits(tokens)[start:])
            shifts.append(agreement.max_margin_shift)
            positions += agreement.positions
            near += int((~agreement.confident).sum())
            near_flips += int((~agreement.confident & ~agreement.agree).sum())
            confident_flips += len(agreement.confident_disagreements)
    finally:
        runtime.close()
    return {"file": gguf.name, "median_shift": float(np.median(shifts)), "max_shift": float(max(shifts)),
            "positions": positions, "near_ties": near, "near_tie_flips": near_flips,
            "confident_flips": confident_flips, "min_margin": MIN_MARGIN}


def with_sidecar(model_dir: Path, folder: Path) -> Path:
    """The fp32 folder's files linked beside a one-objective contract (the converter writes its keys;
    the bench passes tokens, so the chat template it adds is never used)."""
    from lwdpo_edge.export_contract import SIDECAR_FILE, ExportContract

    folder.mkdir()
    for path in model_dir.iterdir():
        if path.is_file():
            os.symlink(path.resolve(), folder / path.name)
    contract = ExportContract.from_manifest({"objectives": ["helpfulness"], "lambda_default": {"helpfulness": 1.0}})
    (folder / SIDECAR_FILE).write_text(json.dumps(contract.to_json()), encoding="utf-8")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=20, help="held-out prompts of the shipped set")
    parser.add_argument("--max-new", type=int, default=48, help="greedy answer tokens per prompt")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import llama_cpp

    from _common import cpu_flags
    from lwdpo_edge.export.gguf import convert_to_f16
    from lwdpo_edge.models import default_gguf, resolve_model

    flags = cpu_flags()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU avx512f: "
          f"{'avx512f' in flags}; llama_cpp from {Path(llama_cpp.__file__).parent}")
    print(f"llama.cpp system info: {llama_cpp.llama_print_system_info().decode().strip()}")
    model_dir = resolve_model("default")
    runs, _ = reference_runs(model_dir, prompts(args.prompts), args.max_new, args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        f16 = convert_to_f16(with_sidecar(model_dir, Path(tmp) / "hf"), Path(tmp) / "default.f16.gguf")
        print("| file | median max shift | max shift | answer positions | near ties (< MIN_MARGIN) "
              "| flips on near ties | flips on confident |")
        print("|---|---|---|---|---|---|---|")
        for gguf in (default_gguf(), f16):
            r = compare_file(gguf, runs, args.threads)
            print(f"| {r['file']} | {r['median_shift']:.4f} | {r['max_shift']:.4f} | {r['positions']} | "
                  f"{r['near_ties']} | {r['near_tie_flips']} | {r['confident_flips']} |", flush=True)


if __name__ == "__main__":
    main()
