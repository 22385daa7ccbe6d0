"""Steering strength of an adapter soup, side by side: how far do the vertices move, and
when do answers break?

    .venv/bin/python bench/soup_strength.py RUN_DIR [--prompts 15] [--strengths 1,2,3] [--repetition-penalties 1,1.1]

Greedy answers (96 tokens) to the first N held-out prompts of the default data at every vertex and
the centre, for each strength in one process (same model, same prompts), rated by the built-in
raters. Prints per strength: Spearman(lambda_k, score_k) over (prompt, point) pairs, the mean
score and words per point, and two signs of broken answers: the share under 5 words and the share
that repeat a 4-word sequence 3+ times; for each repetition penalty too (lwdpo_edge/decoding.py's rule,
default 1 = plain greedy). A quick look, not the judged eval (that is
`lwdpo-edge eval RUN --soup-strength S`).
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from lwdpo_edge.evaluate.backends import TransformersBackend
from lwdpo_edge.raters import count_words, default_raters, repeats_itself, score_answers
from lwdpo_edge.soup import load_soup

DATA = Path(__file__).resolve().parent.parent / "lwdpo_edge" / "defaults" / "default_data.jsonl"


def answers_at(model, backend, prompts, points, strength):
    """[(lambda used, answer)] point-major."""
    out = []
    for lam in points:
        with model.soup_mixer.folded(lam, strength) as used:  # eval's path: the mix in the weights
            answers = backend.generate_batch([[{"role": "user", "content": p}] for p in prompts], 96)
        out += [(used, a) for a in answers]
    return out


def report(strength, penalty, prompts, points, results, raters, objectives) -> None:
    answers = [a for _, a in results]
    scores = score_answers(prompts * len(points), answers, raters)
    print(f"strength {strength:g}, repetition penalty {penalty:g}: "
          f"short (<5 words) {np.mean([count_words(a) < 5 for a in answers]):.2f}, "
          f"repeating {np.mean([repeats_itself(a) for a in answers]):.2f}")
    for k in objectives:
        rho = spearmanr([u[k] for u, _ in results], [s[k] for s in scores]).correlation
        print(f"  Spearman {k}: {rho:.2f}")
    n = len(prompts)
    for i, lam in enumerate(points):
        chunk = range(i * n, (i + 1) * n)
        means = {k: round(float(np.mean([scores[j][k] for j in chunk])), 2) for k in objectives}
        print(f"  {results[i * n][0]} words {np.mean([count_words(answers[j]) for j in chunk]):.1f} {means}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a soup run folder (lwdpo-edge train --conditioning soup)")
    parser.add_argument("--prompts", type=int, default=15, help="first N held-out prompts")
    parser.add_argument("--strengths", default="1,2,3", help="comma-separated steering strengths to compare")
    parser.add_argument("--repetition-penalties", default="1",
                        help="comma-separated repetition penalties to compare (1 = off)")
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
    for penalty in [float(p) for p in args.repetition_penalties.split(",")]:
        backend.repetition_penalty = penalty
        for strength in [float(s) for s in args.strengths.split(",")]:
            results = answers_at(model, backend, prompts, points, strength)
            report(strength, penalty, prompts, points, results, raters, objectives)


if __name__ == "__main__":
    main()
