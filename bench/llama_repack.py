"""Decode speed of llama.cpp with weight repacking off (what lwdpo-edge loads with) against its default.

    .venv/bin/python bench/llama_repack.py                              # the llama.cpp build in .venv
    PYTHONPATH=.llama-avx2 .venv/bin/python bench/llama_repack.py       # an AVX2-only build (make test-avx2)

lwdpo_edge.llama_load.load_llama opens every GGUF with use_extra_bufts = False: llama.cpp's repacked
buffers (AMX, CPU_REPACK) crash the first decode on AMX CPUs. This prints what that costs: for the
default model (Q4_1) and the same weights requantised to q8_0 and q4_0 (the type repacking helps most
on x86-64), greedy decode tokens/s with repacking off and on, side by side in one run, and their ratio.
Each measurement runs in its own process, so an arm that crashes (SIGSEGV / SIGILL on AMX CPUs) is
reported as such and the others still run. Best of --repeats (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = ("off", "default")  # use_extra_bufts False (lwdpo-edge) / llama.cpp's default (True)
PROMPT = "<|im_start|>user\nExplain how a refrigerator keeps food cold.<|im_end|>\n<|im_start|>assistant\n"


def decode_rate(path: str, arm: str, tokens: int, repeats: int, threads: int) -> float:
    """Best tokens/s over `repeats` greedy decodes of `tokens` tokens after PROMPT (argmax in Python)."""
    import numpy as np

    from lwdpo_edge.llama_load import load_llama

    kwargs = dict(n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    if arm == "off":
        llm = load_llama(path, **kwargs)
    else:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=path, **kwargs)  # the default, for comparison only
    prompt = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    best = 0.0
    for _ in range(repeats):
        llm.reset()
        llm.eval(prompt)
        start = time.perf_counter()
        for _ in range(tokens):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        best = max(best, tokens / (time.perf_counter() - start))
    return best


def requantise(source: Path, quant: str, folder: Path) -> Path:
    import llama_cpp

    out = folder / f"model.{quant}.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}[quant]
    params.allow_requantize = True
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0:
        raise SystemExit(f"llama.cpp could not quantise {source} to {quant}")
    return out


def measure(path: Path, arm: str, args) -> str:
    """tokens/s as text, or how the child process died."""
    child = [sys.executable, __file__, "--child", arm, str(path), "--tokens", str(args.tokens),
             "--repeats", str(args.repeats), "--threads", str(args.threads)]
    done = subprocess.run(child, capture_output=True, text=True)  # inherits PYTHONPATH: the same build
    if done.returncode < 0:
        return f"crashed ({signal.Signals(-done.returncode).name})"
    if done.returncode != 0:
        return f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return f"{json.loads(done.stdout.strip().splitlines()[-1])['tokens_per_s']:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="a GGUF file (default: the embedded SmolLM2-135M Q4_1)")
    parser.add_argument("--tokens", type=int, default=64, help="greedy tokens per decode")
    parser.add_argument("--repeats", type=int, default=3, help="decodes per measurement (best is kept)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    parser.add_argument("--child", nargs=2, metavar=("ARM", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        arm, path = args.child
        print(json.dumps({"tokens_per_s": decode_rate(path, arm, args.tokens, args.repeats, args.threads)}))
        return

    import llama_cpp

    from lwdpo_edge.models import default_gguf

    source = default_gguf() if args.model == "default" else Path(args.model)
    print(f"llama.cpp {llama_cpp.__version__} from {Path(llama_cpp.__file__).parent}")
    print(f"system info: {llama_cpp.llama_print_system_info().decode().strip()}")
    print(f"{args.tokens} greedy tokens, best of {args.repeats}, {args.threads} thread(s); load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print(f"{'weights':8s} {'repack off tok/s':>18s} {'default tok/s':>22s} {'off / default':>14s}")
    from lwdpo_edge.llama_load import quiet_llama_cpp

    with tempfile.TemporaryDirectory() as tmp:
        with quiet_llama_cpp():
            files = {"q4_1": source, **{q: requantise(source, q, Path(tmp)) for q in ("q8_0", "q4_0")}}
        for name, path in files.items():
            off, default = (measure(path, arm, args) for arm in ARMS)
            ratio = f"{float(off) / float(default):.2f}" if off[0].isdigit() and default[0].isdigit() else "-"
            print(f"{name:8s} {off:>18s} {default:>22s} {ratio:>14s}", flush=True)


if __name__ == "__main__":
    main()
