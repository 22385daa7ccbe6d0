"""Do greedy answers loop at any lambda point through the exported GGUF? (bar: <= the base model's rate + 0.03)

    lwdpo-edge export RUN --format gguf --quant q8_0 --output runs/m13/export
    .venv/bin/python bench/gguf_loops.py runs/m13/export/NAME.q8_0.gguf [--prompts 30] [--grid dense] \
        [--eval runs/m13/mixture/eval-dense]

Greedy answers (96 tokens and the repetition penalty, as `lwdpo-edge eval`) of llama.cpp to the first N
held-out prompts of the default data at every point of the eval grid, through the runtime (`load_model`:
the soup's LoRA scales per request, as the app and server apply them). Prints per point the share of
answers that repeat a 4-word sequence 3+ times (`raters.repeats_itself`, the eval's count) and, given
--eval, the transformers numbers of that eval beside it (policy at the point, base model's worst point).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from lwdpo_edge import load_model
from lwdpo_edge.decoding import REPETITION_PENALTY
from lwdpo_edge.evaluate.grid import lambda_grid
from lwdpo_edge.evaluate.heldout import load_heldout_lists, prompts_from_lists
from lwdpo_edge.raters import repeats_itself


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--grid", default="dense")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repetition-penalty", type=float, default=REPETITION_PENALTY,
                        help="lwdpo_edge/decoding.py's rule (default: the runtime's); 1 = plain greedy")
    parser.add_argument("--eval", type=Path, help="an eval folder of the same run: its transformers rates beside")
    args = parser.parse_args()
    model = load_model(args.gguf, threads=args.threads)
    prompts = prompts_from_lists(load_heldout_lists("default", model.objectives))[: args.prompts]
    report = json.loads((args.eval / "report.json").read_text()) if args.eval else None
    hf = {p["name"]: p["repeating"] for p in report["controllability"]["policy"]["points"]} if report else {}
    started, rates = time.perf_counter(), {}
    print(f"{args.gguf.name}: {len(prompts)} prompts, greedy, 96 tokens, "
          f"repetition penalty {args.repetition_penalty:g}")
    print(f"{'point':28s} {'gguf':>6s} {'transformers':>12s}")
    for point in lambda_grid(model.objectives, args.grid):
        answers = [model.chat(messages, lam=point.lam, max_tokens=96, repetition_penalty=args.repetition_penalty)
                   for messages in prompts]
        rates[point.name] = float(np.mean([repeats_itself(a) for a in answers]))
        other = f"{hf[point.name]:.2f}" if point.name in hf else "n/a"
        print(f"{point.name:28s} {rates[point.name]:6.2f} {other:>12s}", flush=True)
    worst = max(rates, key=rates.get)
    print(f"worst point through the GGUF: {worst} {rates[worst]:.2f}")
    if report:
        base = max(p["repeating"] for p in report["controllability"]["base"]["points"])
        print(f"base model (transformers, worst point): {base:.2f}; bar: every point <= {base + 0.03:.2f}: "
              f"{'PASS' if rates[worst] <= base + 0.03 else 'FAIL'}")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
