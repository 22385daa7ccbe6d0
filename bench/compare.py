"""Head to head: pairwise DPO vs three lambda-DPO variants, same data, model, seed and step budget.

    .venv/bin/python bench/compare.py --steps 60 --eval-prompts 30                  # the comparison
    .venv/bin/python bench/compare.py --steps 2 --eval-prompts 2 --eval-lists 2 --threads 1   # smoke

Arms. Everything comes from --config (the training recipe); an arm overrides only what defines it:
  a  pairwise DPO: TRL's DPOTrainer on one best-vs-worst pair per list, ranked by the mean of the
     per-objective z-scores within the list (the paper's baseline)
  b  lambda-DPO without the lambda header (--condition-on-lambda false: what the paper's public
     code effectively trains; lambda still weights the target, but the model never sees it)
  c  lambda-DPO with the header, Dirichlet lambdas
  d  c plus the performance scheduler (--lambda-scheduler performance)

Every arm trains in its own child process (so peak RSS is that arm's) and writes a normal run
folder RUNS_DIR/<arm>/ (adapter/ + lwdpo.json; arm a's manifest says conditioning "none"), which
`run_evaluation` then scores the same way for all: held-out ranking top-1 per objective at that
objective's vertex, and controllability Spearman(lambda_k, score_k) over vertices + centre.
The held-out lists the performance scheduler measures are left out of every arm's evaluation.

Timing is the trainer's own train_runtime (model loading and evaluation excluded); peak RSS is
the training child's peak, read before its evaluation starts. An interrupted comparison continues
with --resume: arms whose training and evaluation are complete are reused, the others redone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common` next to this file, however it is run

from _common import machine_line, peak_rss_mb, trl_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "train" / "configs" / "compare.yaml"
BENCH_FILE = "bench.json"  # in each arm's run folder: what it was trained with and what it cost
EVAL_LISTS = "eval_lists.jsonl"


@dataclass(frozen=True)
class Arm:
    key: str
    name: str
    trainer: str  # "trl" or "lwdpo"
    overrides: tuple[str, ...] = ()  # train flags that define the arm, on top of --config


ARMS = {
    "a": Arm("a", "pairwise DPO (TRL, best-vs-worst)", "trl"),
    "b": Arm("b", "lambda-DPO, no header", "lwdpo",
             ("--conditioning", "header", "--condition-on-lambda", "false", "--lambda-scheduler", "dirichlet")),
    "c": Arm("c", "lambda-DPO + header, Dirichlet", "lwdpo",
             ("--conditioning", "header", "--condition-on-lambda", "true", "--lambda-scheduler", "dirichlet")),
    "d": Arm("d", "c + performance scheduler", "lwdpo",
             ("--conditioning", "header", "--condition-on-lambda", "true", "--lambda-scheduler", "performance")),
}


class CompareError(ValueError):
    """A setting or an earlier run folder this comparison cannot use (one line, no traceback)."""


# ----------------------------------------------------------------------------- configs


def budget_flags(args) -> list[str]:
    """Train flags every arm shares: the budget, the seed, the threads; no checkpoints inside the timing."""
    flags = ["--config", str(args.config), "--save-strategy", "no"]
    if args.steps is not None:
        flags += ["--max-steps", str(args.steps)]
    if args.seed is not None:
        flags += ["--seed", str(args.seed)]
    if args.threads is not None:
        flags += ["--threads", str(args.threads)]
    return flags + list(args.train_flag or [])


def arm_config(args, arm: Arm, run_dir: Path):
    """The arm's LambdaDPOConfig: --config, then the shared budget, then the arm's own overrides."""
    from lwdpo_edge.train.cli_args import parse_train_args

    return parse_train_args([*budget_flags(args), "--output-dir", str(run_dir), *arm.overrides])


def training_settings(args, arm: Arm) -> dict:
    """What an arm's training depends on; a reused run folder must have been trained with exactly this."""
    return {"arm": arm.key, "trainer": arm.trainer, "flags": [*budget_flags(args), *arm.overrides],
            "config_sha256": hashlib.sha256(Path(args.config).read_bytes()).hexdigest()}


def eval_settings(args) -> dict:
    return {"grid": "vertices", "n_prompts": args.eval_prompts, "max_lists": args.eval_lists,
            "max_new_tokens": args.eval_new_tokens}


# ----------------------------------------------------------------------------- arm a: TRL


SHARED_TRAINING_ARGS = (
    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type",
    "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim",
    "max_steps", "num_train_epochs", "seed", "data_seed", "logging_steps", "use_cpu", "bf16", "fp16",
)


def dpo_config(config, run_dir: Path):
    """TRL's DPOConfig with the recipe's optimiser, schedule, budget, beta and token caps."""
    from trl import DPOConfig

    from lwdpo_edge.contract import CHECKPOINTS_DIR

    return DPOConfig(
        output_dir=str(Path(run_dir) / CHECKPOINTS_DIR), beta=config.beta,
        max_length=config.max_prompt_tokens + config.max_response_tokens,  # TRL 1.x caps prompt + answer together
        gradient_checkpointing=config.activation_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        report_to="none", save_strategy="no", disable_tqdm=True,
        **{name: getattr(config, name) for name in SHARED_TRAINING_ARGS},
    )


def trl_manifest_training(config, steps: int, n_rows: int, seconds: float, last_log: dict) -> dict:
    """The lwdpo.json "training" block of arm a: eval reads beta and the token caps from it."""
    from lwdpo_edge.train.setup import SUMMARY_FIELDS

    listwise_only = ("lambda", "scheduler", "tau", "score_normalization", "sft")  # knobs TRL never reads
    summary = {k: v for k, v in asdict(config).items()
               if k in SUMMARY_FIELDS and not any(w in k for w in listwise_only)}
    summary.update(condition_on_lambda=False, length_normalize=False)
    return {"trainer": "trl.DPOTrainer", "pairs": "best-vs-worst by mean z-score", "steps": steps,
            "records": n_rows, "seconds": round(seconds, 1),
            "final_metrics": {k: v for k, v in last_log.items() if k == "loss" or "/" in k}, "config": summary}


def train_trl(config, run_dir: Path) -> tuple[float, int]:
    """Arm a; writes the run folder and returns (train seconds, optimizer steps)."""
    import torch
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOTrainer

    from lwdpo_edge.conditioning import conditioned_messages
    from lwdpo_edge.contract import ADAPTER_DIR, write_run_manifest
    from lwdpo_edge.models import load_policy, load_tokenizer, resolve_model
    from lwdpo_edge.train.setup import load_training_data, lora_settings as recipe_lora_settings

    if config.threads:
        torch.set_num_threads(config.threads)
    records, _, objectives = load_training_data(config)
    # The prompt exactly as lambda-DPO sees it without a header (same neutralisation), so eval matches.
    rows = trl_rows(records, "best-vs-worst", objectives, lambda r: conditioned_messages(r.prompt, None, objectives))
    model_dir = resolve_model(config.model)
    tokenizer = load_tokenizer(model_dir)
    set_seed(config.seed)  # the same LoRA init as the recipe's
    model = load_policy(model_dir, qlora=config.qlora, lora=recipe_lora_settings(config),
                        gradient_checkpointing=config.activation_checkpointing)
    trainer = DPOTrainer(model=model, args=dpo_config(config, run_dir), train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer)
    seconds = trainer.train().metrics["train_runtime"]
    # TRL adds a frozen "ref" adapter next to "default"; only the trained one belongs in the run folder.
    trainer.model.save_pretrained(Path(run_dir) / ADAPTER_DIR, selected_adapters=["default"])
    last = next((row for row in reversed(trainer.state.log_history) if "loss" in row), {})
    write_run_manifest(run_dir, objectives, base_model={"spec": config.model, "path": str(model_dir)},
                       conditioning="none",
                       training=trl_manifest_training(config, trainer.state.global_step, len(rows), seconds, last))
    return seconds, trainer.state.global_step


# ----------------------------------------------------------------------------- arms b, c, d


def train_lwdpo(config) -> tuple[float, int]:
    from lwdpo_edge.contract import METRICS_FILE
    from lwdpo_edge.train.recipe import run_training

    run_dir = run_training(config)
    rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines() if line.strip()]
    summary = next(row for row in reversed(rows) if "train_runtime" in row)
    return summary["train_runtime"], summary["step"]


# ----------------------------------------------------------------------------- one arm (child process)


def read_bench(run_dir: Path) -> dict | None:
    path = Path(run_dir) / BENCH_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_bench(run_dir: Path, bench: dict) -> None:
    from lwdpo_edge.contract import atomic_write_text

    atomic_write_text(Path(run_dir) / BENCH_FILE, json.dumps(bench, indent=2) + "\n")


def prompts_per_step(config) -> int:
    return config.per_device_train_batch_size * config.gradient_accumulation_steps * max(config.world_size, 1)


def train_arm(args, arm: Arm, run_dir: Path) -> dict:
    """Train from scratch (an incomplete folder is cleared first); bench.json records the cost."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = arm_config(args, arm, run_dir)
    seconds, steps = train_trl(config, run_dir) if arm.trainer == "trl" else train_lwdpo(config)
    bench = {"settings": training_settings(args, arm), "seconds": seconds, "steps": steps,
             "prompts_per_step": prompts_per_step(config), "peak_rss_mb": round(peak_rss_mb(), 1),
             "sft_weight": config.sft_weight, "lambdas_per_prompt": config.lambdas_per_prompt, "qlora": config.qlora}
    write_bench(run_dir, bench)
    return bench


def eval_arm(args, run_dir: Path, bench: dict) -> None:
    from lwdpo_edge.evaluate.run import EvalConfig, run_evaluation

    run_evaluation(EvalConfig(run_dir=run_dir, data=str(Path(args.runs_dir) / EVAL_LISTS), grid="vertices",
                              n_prompts=args.eval_prompts, max_lists=args.eval_lists,
                              max_new_tokens=args.eval_new_tokens, baseline=False, threads=args.threads))
    write_bench(run_dir, {**bench, "eval": eval_settings(args)})


def child(args) -> None:
    arm = ARMS[args.child]
    run_dir = Path(args.runs_dir) / arm.key
    bench = read_bench(run_dir)
    if bench is None or bench["settings"] != training_settings(args, arm):
        bench = train_arm(args, arm, run_dir)
    eval_arm(args, run_dir, bench)


# ----------------------------------------------------------------------------- the parent


def arm_state(args, arm: Arm) -> str:
    """"done" (trained and evaluated with these settings), "eval" (trained), "train" (nothing usable)."""
    from lwdpo_edge.evaluate.report import REPORT_FILE

    run_dir = Path(args.runs_dir) / arm.key
    if not run_dir.exists():
        return "train"
    if not args.resume:
        raise CompareError(f"{run_dir} already exists; pass --resume to reuse finished arms, "
                           "or choose another --runs-dir")
    bench = read_bench(run_dir)
    if bench is None:
        return "train"  # interrupted during training: redone from scratch
    if bench["settings"] != training_settings(args, arm):
        raise CompareError(f"{run_dir} was trained with other settings ({BENCH_FILE}); "
                           "use another --runs-dir or delete it")
    done = bench.get("eval") == eval_settings(args) and (run_dir / "eval" / REPORT_FILE).is_file()
    return "done" if done else "eval"


def write_eval_lists(args, skip_scheduler_lists: bool = True) -> Path:
    """The held-out lists of the recipe's data, minus those the performance scheduler measures
    (skip_scheduler_lists=False when no arm uses that scheduler, e.g. bench/oasst.py)."""
    from lwdpo_edge.data.loaders import save_records
    from lwdpo_edge.train.setup import load_training_data

    config = arm_config(args, ARMS["d"], Path(args.runs_dir) / "d")
    _, heldout, _ = load_training_data(config)
    skip = config.scheduler_lists if skip_scheduler_lists else 0
    kept = heldout[skip:]
    if not kept:
        raise CompareError(f"{config.data}: needs held-out lists (split 'heldout') beyond the "
                           f"{skip} the performance scheduler measures")
    return save_records(kept, Path(args.runs_dir) / EVAL_LISTS)


def child_command(args, key: str) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", key, "--config", str(args.config),
           "--runs-dir", str(args.runs_dir), "--eval-prompts", str(args.eval_prompts),
           "--eval-new-tokens", str(args.eval_new_tokens)]
    for flag, value in (("--steps", args.steps), ("--seed", args.seed), ("--threads", args.threads),
                        ("--eval-lists", args.eval_lists)):
        if value is not None:
            cmd += [flag, str(value)]
    for extra in args.train_flag or []:
        cmd.append(f"--train-flag={extra}")
    return cmd


def run_arms(args, arms: list[Arm], skip_scheduler_lists: bool = True) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    states = {arm.key: arm_state(args, arm) for arm in arms}  # every folder checked before anything runs
    Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
    write_eval_lists(args, skip_scheduler_lists)
    for arm in arms:
        if states[arm.key] == "done":
            console.print(f"[green]arm {arm.key}[/] ({arm.name}): complete, reused")
            continue
        console.print(f"[bold]arm {arm.key}[/] ({arm.name}): "
                      f"{'training + ' if states[arm.key] == 'train' else ''}evaluation")
        if subprocess.run(child_command(args, arm.key)).returncode != 0:
            raise CompareError(f"arm {arm.key} failed (output above); finished arms are kept: rerun with --resume")


# ----------------------------------------------------------------------------- results


def arm_result(arm: Arm, bench: dict, report: dict) -> dict:
    """One table row from an arm's bench.json and eval report.json."""
    objectives = report["objectives"]
    ranking = report["ranking"]
    control = (report["controllability"].get("policy") or {}).get("objectives", {})

    def at_vertex(ranker: str, metric: str) -> dict:
        return {o: ranking.get(ranker, {}).get(o, {}).get(o, {}).get(metric) for o in objectives}

    steps, prompts = bench["steps"], bench["steps"] * bench["prompts_per_step"]
    return {
        "arm": arm.key, "name": arm.name, "conditioning": report["run"]["conditioning"], "steps": steps,
        "top1": at_vertex("policy", "top1"), "kendall_tau": at_vertex("policy", "kendall_tau"),
        "ndcg": at_vertex("policy", "ndcg"), "top1_se": at_vertex("policy", "top1_se"),
        "kendall_tau_se": at_vertex("policy", "kendall_tau_se"), "ndcg_se": at_vertex("policy", "ndcg_se"),
        "base_logprob_top1": at_vertex("base_logprob", "top1"),
        "chance_top1": at_vertex("chance", "top1"), "n_lists": report["data"]["n_lists"],
        "spearman": {o: control.get(o, {}).get("spearman") for o in objectives},
        "spearman_within_prompt": {o: control.get(o, {}).get("spearman_within_prompt") for o in objectives},
        "n_prompts": report["prompts"]["n"],
        "s_per_step": bench["seconds"] / max(steps, 1), "s_per_prompt": bench["seconds"] / max(prompts, 1),
        "peak_rss_mb": bench["peak_rss_mb"], "train_seconds": bench["seconds"],
    }


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_cells(results: list[dict], objectives: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (rich and markdown print the same cells)."""
    header = (["arm"] + [f"top-1 {o}" for o in objectives] + [f"ρ {o}" for o in objectives]
              + ["s/step", "s/prompt", "peak RSS MB"])
    rows = [[r["arm"]] + [_fmt(r["top1"][o]) for o in objectives]
            + [_fmt(r["spearman"][o]) for o in objectives]
            + [_fmt(r["s_per_step"], 1), _fmt(r["s_per_prompt"], 2), _fmt(r["peak_rss_mb"], 0)] for r in results]
    if results:  # chance depends on the lists only, identical for every arm
        rows.append(["chance"] + [_fmt(results[0]["chance_top1"][o]) for o in objectives]
                    + [""] * (len(objectives) + 3))
    return header, rows


def rich_table(results: list[dict], objectives: list[str]):
    from rich.table import Table

    header, rows = table_cells(results, objectives)
    table = Table(title="pairwise DPO vs lambda-DPO: held-out top-1 at each objective's vertex, "
                        "controllability Spearman(lambda_k, score_k), cost")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    table.caption = "; ".join(f"{r['arm']} = {r['name']}" for r in results) + "; chance = a random order"
    return table


def markdown_table(results: list[dict], objectives: list[str]) -> str:
    header, rows = table_cells(results, objectives)
    rows = [[f"{r['arm']}: {r['name']}"] + row[1:] for r, row in zip(results, rows)] + rows[len(results):]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def collect(args, arms: list[Arm]) -> list[dict]:
    from lwdpo_edge.evaluate.report import REPORT_FILE

    results = []
    for arm in arms:
        run_dir = Path(args.runs_dir) / arm.key
        report = json.loads((run_dir / "eval" / REPORT_FILE).read_text())
        results.append(arm_result(arm, read_bench(run_dir), report))
    return results


def write_summary(args, results: list[dict], objectives: list[str], command: str) -> Path:
    """bench/out/compare-<timestamp>.json: every number, the command and the machine."""
    out = Path(args.out) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"command": command, "machine": machine_line(args.threads), "config": str(args.config),
               "objectives": objectives, "eval": eval_settings(args), "runs_dir": str(args.runs_dir), "arms": results}
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return out


# ----------------------------------------------------------------------------- command line


def parse_arms(text: str) -> list[Arm]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ARMS]
    if unknown or not keys:
        raise CompareError(f"--arms: unknown arm(s) {unknown or text!r}; choose from {','.join(ARMS)}")
    return [ARMS[k] for k in dict.fromkeys(keys)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="Training recipe YAML every arm starts from.")
    p.add_argument("--arms", default=",".join(ARMS), help="Comma-separated arms to run, e.g. 'a,c'.")
    p.add_argument("--steps", type=int, help="Optimizer steps per arm (default: the config's max_steps).")
    p.add_argument("--seed", type=int, help="Seed for every arm (default: the config's).")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads for training and evaluation (default: torch's choice).")
    p.add_argument("--train-flag", action="append", metavar="FLAG=VALUE",
                   help="Extra `lwdpo-edge train` flag for every arm, "
                   "e.g. --train-flag=--learning-rate=5e-5 (repeatable).")
    p.add_argument("--eval-prompts", type=int, default=30, help="Held-out prompts generated for per lambda point.")
    p.add_argument("--eval-lists", type=int, help="At most this many held-out lists ranked (default: all).")
    p.add_argument("--eval-new-tokens", type=int, default=96, help="Greedy answer length in the controllability eval.")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "compare", help="Where the arms' run folders go.")
    p.add_argument("--resume", action="store_true", help="Reuse arms already complete in --runs-dir; redo the rest.")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="Folder for compare-<timestamp>.json.")
    p.add_argument("--child", choices=list(ARMS), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    import lwdpo_edge  # noqa: F401  (offline, no telemetry: before any HF import)

    if args.child:
        child(args)
        return
    console = Console(width=max(Console().width, 140))  # the table has 4 + 2K columns; never squeeze them
    try:
        arms = parse_arms(args.arms)
        if not Path(args.config).is_file():
            raise CompareError(f"--config {args.config}: no such file")
        run_arms(args, arms)
        results = collect(args, arms)
    except CompareError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise SystemExit(2) from None
    objectives = list(results[0]["top1"])
    command = shlex.join(["python", "bench/compare.py", *(sys.argv[1:] if argv is None else argv)])
    console.print(rich_table(results, objectives))
    console.print(f"machine: {machine_line(args.threads)}", highlight=False)
    print(markdown_table(results, objectives))
    console.print(f"written: {write_summary(args, results, objectives, command)}")


if __name__ == "__main__":
    main()
