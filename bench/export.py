"""Export a run in every format, then decode the same prompt in each runtime.

    lwdpo-edge train --qlora --max-steps 2 --output /tmp/export-run --per-device-train-batch-size 1 --save-steps 100
    .venv/bin/python bench/export.py /tmp/export-run

Per format: export wall time (merge, conversion, verification: what `lwdpo-edge export` costs),
size on disk and the verification agreements. Then decode speed on one prompt (the first probe under
the default lambda header): NEW_TOKENS greedy tokens after the prompt, argmax in Python in every
runtime, best of REPEATS (the machine is shared: the best run is the least disturbed; a measurement
stops after MAX_SECONDS and keeps its rate), at 1 and 2 threads, as tokens/s and as a ratio to HF
fp32 at the same thread count. The load average is printed: other processes change the 2-thread
numbers most (docs/design.md, section 8).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import lwdpo_edge  # noqa: F401  (offline, no telemetry)
from lwdpo_edge.export.pipeline import export_run

EXPORTS = [("hf", None, None), ("gguf", "f16", None), ("gguf", "q8_0", None), ("gguf", "q4_k_m", None),
           ("onnx", None, "fp32"), ("onnx", None, "int4")]


def run_exports(run_dir: Path, out: Path) -> dict[str, object]:
    """Export once per format; {label: ExportResult}."""
    results = {}
    for fmt, quant, precision in EXPORTS:
        result = export_run(run_dir, fmt, quant, precision, output=out, show_progress=False)  # NAME inside out/
        label = f"{fmt} {result.variant}"
        results[label] = result
        r = result.report
        print(f"exported {label:12s} {result.seconds:6.1f} s  {result.size_bytes / 1e6:7.1f} MB  "
              f"greedy identical {r.greedy_match:4.0%} of probes ({r.greedy_tokens:4.0%} of tokens)  "
              f"top-1 {r.top1:6.1%}", flush=True)
    return results


MAX_SECONDS = 20.0  # per measurement: with other load, 2 threads can be 10x slower; stop, keep the rate


def hf_decoder(folder: Path, threads: int):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()

    def decode(tokens: list[int], n: int) -> float:
        with torch.no_grad():
            out = model(torch.tensor([tokens]), use_cache=True)
            start, done = time.perf_counter(), 0
            while done < n and time.perf_counter() - start < MAX_SECONDS:
                token = out.logits[0, -1].argmax().view(1, 1)
                out = model(token, past_key_values=out.past_key_values, use_cache=True)
                done += 1
            return done / (time.perf_counter() - start)

    return decode


def gguf_decoder(path: Path, threads: int):
    import llama_cpp

    from lwdpo_edge.llama_load import quiet_llama_cpp
    from lwdpo_edge.llama_load import load_llama

    with quiet_llama_cpp():
        llm = load_llama(path, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    n_vocab = llm.n_vocab()

    def decode(tokens: list[int], n: int) -> float:
        llm.reset()
        llm.eval(tokens)
        start, done = time.perf_counter(), 0
        while done < n and time.perf_counter() - start < MAX_SECONDS:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            llm.eval([int(logits.argmax())])
            done += 1
        return done / (time.perf_counter() - start)

    def close() -> None:
        with quiet_llama_cpp():  # llama.cpp logs when a context is freed
            llm.close()

    decode.close = close
    return decode


def onnx_decoder(folder: Path, threads: int):
    from lwdpo_edge.export.runtimes import OrtGenaiRuntime

    runtime = OrtGenaiRuntime(folder, n_threads=threads)

    def decode(tokens: list[int], n: int) -> float:
        generator = runtime.generator(len(tokens) + n + 1)
        generator.append_tokens(np.asarray(tokens, dtype=np.int32))
        start, done = time.perf_counter(), 0
        while done < n and time.perf_counter() - start < MAX_SECONDS:
            token = int(np.array(generator.get_output("logits"))[0, -1].argmax())
            generator.append_tokens(np.asarray([token], dtype=np.int32))
            done += 1
        return done / (time.perf_counter() - start)

    return decode


def decode_speeds(results, tokens: list[int], n: int, repeats: int) -> dict[tuple[str, int], float]:
    """{(label, threads): best tokens/s}."""
    makers = {"hf": hf_decoder, "gguf": gguf_decoder, "onnx": onnx_decoder}
    speeds = {}
    for threads in (1, 2):
        for label, result in results.items():
            decode = makers[result.format](result.output, threads)
            speeds[label, threads] = max(decode(tokens, n) for _ in range(repeats))
            getattr(decode, "close", lambda: None)()
            print(f"decode {label:12s} {threads} thread(s): {speeds[label, threads]:7.1f} tok/s", flush=True)
    return speeds


def probe_tokens(results) -> list[int]:
    first = next(iter(results.values()))
    return first.report.checks[0].expected.tokens


def print_tables(results, speeds) -> None:
    print("\n| format | export s | size MB | greedy identical (probes / tokens) | top-1 agreement |")
    print("|---|---:|---:|---:|---:|")
    for label, r in results.items():
        v = r.report
        print(f"| {label} | {r.seconds:.1f} | {r.size_bytes / 1e6:.1f} | "
              f"{v.greedy_match:.0%} / {v.greedy_tokens:.0%} | {v.top1:.1%} |")
    print("\n| runtime | 1 thread tok/s | vs HF fp32 | 2 threads tok/s | vs HF fp32 |")
    print("|---|---:|---:|---:|---:|")
    for label in results:
        row = [f"{speeds[label, t]:.1f} | {speeds[label, t] / speeds['hf fp32', t]:.2f}x" for t in (1, 2)]
        print(f"| {label} | {' | '.join(row)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="lwdpo-export-bench-") as tmp:
        results = run_exports(args.run_dir, Path(tmp))
        speeds = decode_speeds(results, probe_tokens(results), args.new_tokens, args.repeats)
        print_tables(results, speeds)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
