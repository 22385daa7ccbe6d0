"""Real data: OpenAssistant ranked replies, listwise lambda-DPO vs pairwise DPO on a held-out split.

    .venv/bin/python bench/oasst.py --steps 170 --threads 2                      # the run
    .venv/bin/python bench/oasst.py --steps 2 --eval-lists 4 --threads 1         # smoke
    .venv/bin/python bench/oasst.py --budget-seconds 900 --threads 1             # equal wall-clock

Data: an OpenAssistant message-tree file (default /work/shared/data/oasst/en_100_tree.jsonl),
read with the project's OASST loader: every prompter turn with >= 2 ranked assistant replies is
one list, scored on one objective, human_preference = -rank. Whole trees are held out (a tree's
lists share conversation prefixes, so splitting lists would leak them): --heldout-trees of the
trees, chosen by --split-seed. Training lists whose prompt alone fills TRL's token cap are dropped
for both arms (TRL would drop them for the pairwise arm only). The split is written next to the run
folders, outside the repo (--work-dir); the source file is only read.

Arms, from bench/compare.py and the same --config recipe, same steps, seed, batch, token caps:
  pairwise  TRL DPOTrainer, one best-vs-worst pair per list (compare.py arm a)
  listwise  lambda-DPO on the whole ranked list (compare.py arm c; with one objective the lambda
            header is constant, so this measures listwise vs pairwise, not steering)
Scored by run_evaluation on the held-out lists: top-1, Kendall tau-b and NDCG of the implicit
reward against the human ranking, each with its standard error over the lists. There is no rater
for human_preference, so no generation.

Equal wall-clock (--budget-seconds S) instead of equal steps: each arm first trains
--calibration-steps steps (WORK_DIR/calibration-<k>steps/) to measure its own seconds per step,
then trains floor(S / that) steps from scratch (WORK_DIR/budget-<S>s/), so the learning-rate
schedule runs to its end in both arms. A deadline that stopped training mid-schedule would leave
the arms at different learning rates. The table gives each arm's steps and the training seconds
it really took, so the budget's hit is visible.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402
from _common import machine_line  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/oasst/en_100_tree.jsonl")
OBJECTIVE = "human_preference"
ARMS = {"pairwise": compare.ARMS["a"], "listwise": compare.ARMS["c"]}


def tree_of(record) -> int:
    """The tree a record comes from: its row (line) in the tree file ("FILE:LINE" source)."""
    return int(record.source.rsplit(":", 1)[1])


def split_by_tree(records, heldout_fraction: float, seed: int) -> list:
    """Records with meta split "train" / "heldout"; a tree's lists all land on the same side."""
    trees = sorted({tree_of(r) for r in records})
    n_heldout = max(1, round(heldout_fraction * len(trees)))
    if n_heldout >= len(trees):
        raise ValueError(f"--heldout-trees {heldout_fraction} leaves no tree to train on ({len(trees)} trees)")
    heldout = set(random.Random(seed).sample(trees, n_heldout))
    for record in records:
        record.meta = {**record.meta, "tree_row": tree_of(record),
                       "split": "heldout" if tree_of(record) in heldout else "train"}
    return records


def prompt_lengths(records, config) -> list[int]:
    """Tokens of each record's prompt as both trainers render it (chat template, no lambda header)."""
    from lwdpo_edge.conditioning import conditioned_messages, prompt_text
    from lwdpo_edge.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(config.model))
    texts = [prompt_text(tokenizer, conditioned_messages(r.prompt, None, [OBJECTIVE])) for r in records]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def drop_overlong_training_lists(records, config) -> tuple[list, int]:
    """Training lists whose prompt alone fills TRL's cap (max_length = prompt + response tokens) removed.

    TRL drops such pairs silently, while our trainer shortens the prompt in the middle; dropping them
    here, for both arms, gives both the same lists. Held-out lists stay (evaluation shortens prompts
    the same way for every arm). -> (kept records, number dropped)
    """
    cap = config.max_prompt_tokens + config.max_response_tokens
    lengths = prompt_lengths(records, config)
    kept = [r for r, n in zip(records, lengths) if r.meta["split"] == "heldout" or n < cap]
    return kept, len(records) - len(kept)


def write_split(args) -> tuple[Path, int]:
    """The split file (whole trees held out, over-long training prompts dropped) and how many were dropped."""
    from lwdpo_edge.data.loaders import load_records, save_records
    from lwdpo_edge.train.cli_args import parse_train_args

    config = parse_train_args(["--config", str(args.config)])
    records = split_by_tree(load_records(args.data, objectives=[OBJECTIVE]), args.heldout_trees, args.split_seed)
    records, dropped = drop_overlong_training_lists(records, config)
    cap = config.max_prompt_tokens + config.max_response_tokens
    # The split's settings are in the name, so arms trained on another split are never reused (--resume).
    name = f"split-{args.heldout_trees}-seed{args.split_seed}-under{cap}.jsonl"
    return save_records(records, Path(args.work_dir) / name), dropped


def compare_args(args, split: Path, *, steps: int | None, runs_dir: Path, eval_lists: int | None,
                 resume: bool) -> argparse.Namespace:
    """bench/compare.py's options for these two arms on the split file."""
    flags = [f"--data={split}", f"--objectives={OBJECTIVE}", *(args.train_flag or [])]
    return compare.build_parser().parse_args([
        "--config", str(args.config), "--runs-dir", str(runs_dir), "--out", str(args.out),
        "--eval-prompts", "1", *(["--steps", str(steps)] if steps is not None else []),
        *(["--seed", str(args.seed)] if args.seed is not None else []),
        *(["--threads", str(args.threads)] if args.threads is not None else []),
        *(["--eval-lists", str(eval_lists)] if eval_lists is not None else []),
        *(["--resume"] if resume else []), *[f"--train-flag={flag}" for flag in flags],
    ])


def steps_for_budget(budget_seconds: float, seconds_per_step: float) -> int:
    """Optimizer steps that fit the training budget at an arm's measured pace (at least one)."""
    if budget_seconds <= 0 or seconds_per_step <= 0:
        raise ValueError(f"budget {budget_seconds} s at {seconds_per_step} s/step: both must be > 0")
    return max(1, int(budget_seconds // seconds_per_step))


def calibrate(args, split: Path, names: list[str]) -> dict[str, float]:
    """Seconds per optimizer step of each arm, from a short run of its own (reused when unchanged:
    the run folders' settings are checked by compare.py, so a changed recipe retrains)."""
    inner = compare_args(args, split, steps=args.calibration_steps, eval_lists=1, resume=True,
                         runs_dir=Path(args.work_dir) / f"calibration-{args.calibration_steps}steps")
    arms = [ARMS[n] for n in names]
    compare.run_arms(inner, arms, skip_scheduler_lists=False)
    return {n: r["s_per_step"] for n, r in zip(names, compare.collect(inner, arms))}


def run_equal_steps(args, split: Path, names: list[str]) -> list[tuple[str, dict]]:
    inner = compare_args(args, split, steps=args.steps, runs_dir=Path(args.work_dir) / "runs",
                         eval_lists=args.eval_lists, resume=args.resume)
    arms = [ARMS[n] for n in names]
    compare.run_arms(inner, arms, skip_scheduler_lists=False)
    return list(zip(names, compare.collect(inner, arms)))


def run_equal_budget(args, split: Path, names: list[str]) -> list[tuple[str, dict]]:
    """Each arm trained for as many steps as fit --budget-seconds at its calibrated pace."""
    pace = calibrate(args, split, names)
    runs_dir = Path(args.work_dir) / f"budget-{args.budget_seconds:g}s"
    results = []
    for name in names:
        steps = steps_for_budget(args.budget_seconds, pace[name])
        inner = compare_args(args, split, steps=steps, runs_dir=runs_dir, eval_lists=args.eval_lists,
                             resume=args.resume)
        compare.run_arms(inner, [ARMS[name]], skip_scheduler_lists=False)
        [result] = compare.collect(inner, [ARMS[name]])
        results.append((name, {**result, "calibrated_s_per_step": pace[name]}))
    return results


def with_se(value, se) -> str:
    """"0.45 ± 0.08"; the bare value where no standard error could be measured (one list)."""
    fmt = compare._fmt
    return fmt(value) if se is None or value is None else f"{fmt(value)} ± {fmt(se)}"


def markdown_table(results: list[tuple[str, dict]]) -> str:
    fmt = compare._fmt
    lines = ["| arm | steps | train s | top-1 | Kendall τ | NDCG | s/step | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results:
        cells = [with_se(r[m][OBJECTIVE], (r.get(f"{m}_se") or {}).get(OBJECTIVE))
                 for m in ("top1", "kendall_tau", "ndcg")]
        lines.append(f"| {name} | {r['steps']} | {fmt(r['train_seconds'], 0)} | {' | '.join(cells)} | "
                     f"{fmt(r['s_per_step'], 1)} | {fmt(r['peak_rss_mb'], 0)} |")
    first = results[0][1]
    lines.append(f"| base model log-prob | | | {fmt(first['base_logprob_top1'][OBJECTIVE])} | | | | |")
    lines.append(f"| chance | | | {fmt(first['chance_top1'][OBJECTIVE])} | 0.00 | | | |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="OpenAssistant message-tree JSONL file (only read).")
    p.add_argument("--config", type=Path, default=compare.DEFAULT_CONFIG,
                   help="Training recipe YAML both arms start from.")
    p.add_argument("--arms", default="pairwise,listwise", help="Comma-separated arms: pairwise, listwise.")
    p.add_argument("--steps", type=int, help="Optimizer steps per arm (default: the config's max_steps).")
    p.add_argument("--budget-seconds", type=float,
                   help="Equal wall-clock instead of equal steps: each arm trains as many steps as fit this many "
                        "training seconds at its own calibrated pace (excludes loading and evaluation).")
    p.add_argument("--calibration-steps", type=int, default=4,
                   help="Steps of the short run that measures each arm's seconds per step (with --budget-seconds).")
    p.add_argument("--seed", type=int, help="Training seed for both arms (default: the config's).")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice).")
    p.add_argument("--train-flag", action="append", metavar="FLAG=VALUE",
                   help="Extra `lwdpo-edge train` flag for both arms, e.g. --train-flag=--max-response-tokens=256.")
    p.add_argument("--heldout-trees", type=float, default=0.2,
                   help="Fraction of message trees held out for evaluation.")
    p.add_argument("--split-seed", type=int, default=0, help="Seed of the held-out tree draw.")
    p.add_argument("--eval-lists", type=int, help="At most this many held-out lists ranked (default: all).")
    p.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "lwdpo-edge" / "bench" / "oasst",
                   help="The split file and the arms' run folders (outside the repo: they hold OASST text).")
    p.add_argument("--resume", action="store_true", help="Reuse arms already complete in --work-dir.")
    p.add_argument("--out", type=Path, default=compare.ROOT / "bench" / "out",
                   help="Folder for oasst-<timestamp>.json.")
    return p


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    import lwdpo_edge  # noqa: F401  (offline, no telemetry)

    console = Console()
    try:
        names = [n.strip() for n in args.arms.split(",") if n.strip()]
        if not names or any(n not in ARMS for n in names):
            raise compare.CompareError(f"--arms {args.arms!r}: choose from {','.join(ARMS)}")
        if args.budget_seconds is not None and args.steps is not None:
            raise compare.CompareError("--steps and --budget-seconds: choose one (equal steps or equal wall-clock)")
        split, dropped = write_split(args)
        console.print(f"{dropped} training lists dropped for both arms: their prompt alone fills TRL's token cap")
        results = (run_equal_budget if args.budget_seconds is not None else run_equal_steps)(args, split, names)
    except (compare.CompareError, ValueError) as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise SystemExit(2) from None
    command = shlex.join(["python", "bench/oasst.py", *(sys.argv[1:] if argv is None else argv)])
    table = markdown_table(results)
    print(table)
    print(f"held-out lists: {results[0][1]['n_lists']}; training lists dropped (prompt >= TRL cap): {dropped}; "
          f"machine: {machine_line(args.threads)}")
    out = Path(args.out) / f"oasst-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": command, "machine": machine_line(args.threads), "data": str(args.data),
                               "split": {"heldout_trees": args.heldout_trees, "seed": args.split_seed,
                                         "dropped_overlong_training_lists": dropped},
                               "budget_seconds": args.budget_seconds,
                               "calibration_steps": args.calibration_steps if args.budget_seconds is not None else None,
                               "arms": dict(results)}, indent=2) + "\n")
    console.print(f"written: {out}")


if __name__ == "__main__":
    main()
