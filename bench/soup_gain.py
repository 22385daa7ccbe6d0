"""Adapter soup with a gain: LoRA scales = gain * lambda instead of lambda (issue 6 exploration).

    .venv/bin/python bench/soup_gain.py RUN_DIR [--prompts 15] [--gains 1,2]

Greedy answers (96 tokens) to the first N held-out prompts of the default data at every vertex and
the centre, rated by the built-in raters; prints Spearman(lambda_k, score_k) and per-point means
for each gain, side by side in one run. Not a recipe yet: at gain 2 the centre (all three deltas
at 0.67) degenerates, so a gain needs a rule (e.g. only on the largest weight) before it ships.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from lwdpo_edge.evaluate.backends import TransformersBackend
from lwdpo_edge.raters import count_words, default_raters, score_answers
from lwdpo_edge.soup import load_soup

DATA = Path(__file__).resolve().parent.parent / "lwdpo_edge" / "defaults" / "default_data.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a soup run folder (lwdpo-edge train --conditioning soup)")
    parser.add_argument("--prompts", type=int, default=15, help="first N held-out prompts")
    parser.add_argument("--gains", default="1,2", help="comma-separated gains to compare")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer, manifest = load_soup(Path(args.run_dir))
    objectives = manifest["objectives"]
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    prompts = [r["prompt"] for r in rows if r.get("split") == "heldout"][: args.prompts]
    points = [{o: float(o == k) for o in objectives} for k in objectives] + [dict.fromkeys(objectives, 1.0)]
    backend = TransformersBackend(model, tokenizer)
    raters = {k: v for k, v in default_raters().items() if k in objectives}
    for gain in [float(g) for g in args.gains.split(",")]:
        results = []  # (lambda used, scores, words) per (point, prompt)
        for lam in points:
            used = model.soup_mixer.set_lambda(lam, gain=gain)
            answers = backend.generate_batch([[{"role": "user", "content": p}] for p in prompts], 96)
            results += [(used, s, count_words(a)) for s, a in zip(score_answers(prompts, answers, raters), answers)]
        print(f"gain {gain}")
        for k in objectives:
            rho = spearmanr([u[k] for u, _, _ in results], [s[k] for _, s, _ in results]).correlation
            print(f"  Spearman {k}: {rho:.2f}")
        for i in range(len(points)):
            chunk = results[i * len(prompts):(i + 1) * len(prompts)]
            means = {k: round(float(np.mean([s[k] for _, s, _ in chunk])), 2) for k in objectives}
            print(f"  {chunk[0][0]} words {np.mean([w for _, _, w in chunk]):.1f} {means}")


if __name__ == "__main__":
    main()
