"""How much room does the helpfulness rater leave within one prompt?

    .venv/bin/python bench/helpfulness_headroom.py --lists 60 --extra-plain 2 --threads 2 --aggregate answer

Two questions, on every (356 / --lists)-th list of the shipped data, side by side in one run:
  1. Is there an answer style the relevance rater prefers? Each probe instruction below is sampled
     once per list (llama.cpp, the default model, the data's sampling settings) and its mean
     helpfulness printed next to the shipped styles' means on the same prompts.
  2. Do more samples of one style raise the data ceiling? --extra-plain more "plain" candidates are
     added to each list, and the data ceiling (lwdpo_edge.evaluate.ceiling: the Spearman an
     imitation of each list's lambda-best candidate would reach) is printed with and without them.
--aggregate picks the helpfulness rater (lwdpo_edge.raters.HelpfulnessRater): "answer", the first
definition (one cosine of prompt and whole answer), is what this bench was written to question;
"content" is the default since it found no room under "answer". The sampled lists are rescored in
memory with the chosen rater. Nothing is written; the shipped data is only read.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import lwdpo_edge  # noqa: F401  (offline, no telemetry)
from lwdpo_edge import DEFAULT_OBJECTIVES
from lwdpo_edge.data.loaders import parse_row
from lwdpo_edge.evaluate.ceiling import data_ceiling
from lwdpo_edge.evaluate.grid import lambda_grid
from lwdpo_edge.raters import HelpfulnessRater, default_raters
from lwdpo_edge.synth import (
    DEFAULTS_DIR,
    STYLES,
    Style,
    SynthConfig,
    add_candidates,
    make_generator,
    read_records,
    score_new,
)

PROBES = (  # instructions aimed at relevance, appended to the user turn like the data's styles
    Style("focused", "Answer exactly what was asked, directly and specifically. Stay on this topic only.", 0.0),
    Style("thorough", "Give a complete, accurate and useful answer that fully addresses the question.", 0.0),
)


def mean(values) -> float:
    return sum(values) / len(values)


def best_helpfulness(records) -> float:
    """Mean over lists of the list's best helpfulness score."""
    return mean([max(r["scores"]["helpfulness"] for r in record["responses"]) for record in records])


def added_scores(record, style, salt, generator, raters, config) -> list[float]:
    """Helpfulness of one new `style` candidate for this list (seeded after its own candidates)."""
    grown = add_candidates(record, [style], [record], generator, raters, config, salt)
    return [c["scores"]["helpfulness"] for c in grown["responses"][len(record["responses"]):]]


def ceiling(records) -> dict[str, float]:
    objectives = list(DEFAULT_OBJECTIVES)
    lists = [x for i, row in enumerate(records) for x in parse_row(row, f"list {i}", objectives)]
    report = data_ceiling(lists, lambda_grid(objectives, "vertices"), objectives, objectives)
    return {name: round(v["spearman"], 2) for name, v in report["objectives"].items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lists", type=int, default=60, help="How many lists of the shipped data (evenly spaced).")
    p.add_argument("--extra-plain", type=int, default=2, help="Plain samples added to each list for question 2.")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads.")
    p.add_argument("--aggregate", choices=HelpfulnessRater.AGGREGATES, default="answer",
                   help="Helpfulness rater: one cosine of the whole answer (answer) or on-topic words (content).")
    args = p.parse_args()

    records = list(read_records(DEFAULTS_DIR / "default_data.jsonl").values())
    sample = records[:: max(1, len(records) // args.lists)][: args.lists]
    config = SynthConfig(threads=args.threads, backend="llama_cpp")
    generator, raters = make_generator(config), default_raters()
    raters["helpfulness"] = HelpfulnessRater(aggregate=args.aggregate)
    for record in sample:  # the stored scores are the default rater's: score them as this run's rater would
        score_new(record["prompt"], record["responses"], raters)

    start = time.perf_counter()
    by_style = defaultdict(list)
    for record in sample:
        for response in record["responses"]:
            by_style[response["meta"]["style"]].append(response["scores"]["helpfulness"])
        for probe in PROBES:
            by_style[f"probe: {probe.name}"] += added_scores(record, probe, probe.name, generator, raters, config)
    print(f"1. mean helpfulness per style on the same {len(sample)} prompts")
    for style, values in sorted(by_style.items(), key=lambda kv: -mean(kv[1])):
        print(f"   {style:18s} {mean(values):.3f}  (n={len(values)})")
    print(f"   best candidate of each shipped list: {best_helpfulness(sample):.3f}")

    plain = next(s for s in STYLES if s.name == "plain")
    grown = [add_candidates(rec, [plain] * args.extra_plain, [rec], generator, raters, config, "plain")
             for rec in sample]
    print(f"2. data ceiling (Spearman h / c / r) on these {len(sample)} lists")
    print(f"   shipped lists:              {ceiling(sample)}")
    print(f"   + {args.extra_plain} plain samples per list: {ceiling(grown)}")
    print(f"   best helpfulness per list: {best_helpfulness(grown):.3f}")
    print(f"({time.perf_counter() - start:.0f} s, {args.threads} llama.cpp threads)")


if __name__ == "__main__":
    main()
