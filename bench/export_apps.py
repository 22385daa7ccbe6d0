"""One soup run exported for every app: size on disk and export time per form, from one run.

    lwdpo-edge train --config train/configs/demo.yaml --max-steps 3 --sft-warmup-steps 2 --output /tmp/x16/run
    .venv/bin/python bench/export_apps.py /tmp/x16/run --out /tmp/x16/out

Forms: the steerable GGUF q8_0 (base + one LoRA per objective + the default-mix LoRA + Modelfile), the
steerable ONNX int4 (base + LoRA branch with B as inputs), and merged presets (GGUF q8_0, ONNX int4,
hf) at one vertex. Export times include verification, as `lwdpo-edge export` runs it. Then the cost of
a lambda change in each steerable runtime: the first request at a new lambda vs the same request again
(GGUF: new adapter scales, KV cache dropped; ONNX: a new .onnx_adapter written and loaded).
Training steps do not change any of this, so a 3-step run is enough.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lwdpo_edge  # noqa: F401  (offline, no telemetry)
from lwdpo_edge.contract import read_run_manifest
from lwdpo_edge.export.pipeline import export_run
from lwdpo_edge.export.preset import choose_presets, export_presets


def files_of(result) -> list[Path]:
    paths = [result.output, *result.extra_files]
    return [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]


def row(label: str, result) -> tuple[str, float, float, int]:
    size = sum(f.stat().st_size for f in files_of(result)) / 2**20
    return label, size, result.seconds, len(files_of(result))


def switch_cost(path: Path, objectives, threads: int) -> tuple[float, float]:
    """(s for a 1-token answer at a new lambda, s for the same request again), median over the vertices."""
    from lwdpo_edge import load_model

    messages = [{"role": "user", "content": "Name one planet."}]
    new, same = [], []
    with load_model(path, threads=threads) as model:
        model.chat(messages, max_tokens=1)  # warm up
        for name in objectives:
            start = time.perf_counter()
            model.chat(messages, {name: 1.0}, max_tokens=1)
            new.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.chat(messages, {name: 1.0}, max_tokens=1)
            same.append(time.perf_counter() - start)
    return sorted(new)[len(new) // 2], sorted(same)[len(same) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="a folder for the exports")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    objectives = read_run_manifest(args.run_dir)["objectives"]
    vertex = choose_presets(read_run_manifest(args.run_dir), [objectives[1]], [])
    kw = dict(output=args.out, threads=args.threads, show_progress=False)
    steer_gguf = export_run(args.run_dir, "gguf", quant="q8_0", **kw)
    steer_onnx = export_run(args.run_dir, "onnx", precision="int4", **kw)
    rows = [row("steerable GGUF q8_0 (base + LoRAs + mix + Modelfile)", steer_gguf),
            row("steerable ONNX int4 (LoRA branch, B as inputs)", steer_onnx)]
    for fmt, variant in (("gguf", "q8_0"), ("onnx", "int4"), ("hf", "fp32")):
        (result,) = export_presets(args.run_dir, fmt, variant, vertex, args.out, True, args.threads, None, False)
        rows.append(row(f"merged preset {objectives[1]}: {fmt} {variant}", result))
    print(f"{'form':58s} {'MB':>8s} {'export s':>9s} {'files':>6s}")
    for label, size, seconds, count in rows:
        print(f"{label:58s} {size:8.1f} {seconds:9.1f} {count:6d}")
    for label, result in (("GGUF q8_0", steer_gguf), ("ONNX int4", steer_onnx)):
        new, same = switch_cost(result.output, objectives, args.threads)
        print(f"lambda change, {label}: first request at a new lambda {new * 1000:.0f} ms, "
              f"same again {same * 1000:.0f} ms (ratio {new / same:.2f})")


if __name__ == "__main__":
    main()
