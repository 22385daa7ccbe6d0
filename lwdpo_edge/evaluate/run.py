"""The evaluation, top to bottom: check inputs, load once, rank, generate, judge, write.

    lwdpo-edge eval runs/demo                    # held-out split of the default data, 30 prompts
    run_evaluation(EvalConfig(run_dir="runs/demo", n_prompts=10))

Every input is checked before the model loads (seconds, not minutes, to a clear error). One model
serves everything: the run's adapter on the fp32 base is the policy, and the same weights with the
adapter disabled are both the DPO reference and the untrained baseline.

A soup run (`--conditioning soup`, lwdpo_edge/soup.py) loads every objective's adapter instead; at
each lambda point the policy is the adapter mix at that point (prompts carry no header: the mix is
the condition), and the base with all adapters disabled is still reference and baseline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lwdpo_edge.contract import (
    ADAPTER_DIR,
    RUN_CONDITIONINGS,
    Conditioning,
    RunFolderError,
    read_run_manifest,
    soup_adapter_dirs,
)
from lwdpo_edge.decoding import REPETITION_PENALTY, check_repetition_penalty
from lwdpo_edge.evaluate.controllability import (controllability_report, generate_answers, make_jobs,
                                                 rate_generations, soup_answers)
from lwdpo_edge.evaluate.criteria import judge, judged_points
from lwdpo_edge.evaluate.grid import GRID_KINDS, lambda_grid, ranking_points
from lwdpo_edge.evaluate.heldout import load_heldout_lists, load_prompt_file, prompts_from_lists, user_question
from lwdpo_edge.evaluate.pareto import pareto_report
from lwdpo_edge.evaluate.rater_plugins import load_raters, parse_rater_spec
from lwdpo_edge.evaluate.report import check_output_folder, write_report
from lwdpo_edge.lambdas import LambdaError
from lwdpo_edge.raters import default_raters
from lwdpo_edge.soup import strength_for
from lwdpo_edge.threads import torch_threads

EVAL_VERSION = 1
GRIDS = GRID_KINDS


class EvalError(ValueError):
    """An evaluation option or output folder that cannot be used."""


@dataclass
class EvalConfig:
    run_dir: Path
    data: str = "default"
    prompts: str | None = None  # None: the prompts of the held-out lists
    n_prompts: int = 30
    max_new_tokens: int = 96
    output: Path | None = None  # None: RUN_DIR/eval
    baseline: bool = True
    grid: str = "full"
    batch_size: int = 32  # CPU decoding reads all weights per token and batch: fewer, larger batches
    lists_per_batch: int = 1  # lists per forward when ranking; on CPU 1 beat 8 by 1.4x (no padding, cache-sized)
    max_lists: int | None = None
    soup_strength: float | None = None  # soup runs: None = the run's default (lwdpo.json soup_strength)
    repetition_penalty: float = REPETITION_PENALTY  # lwdpo_edge/decoding.py: the runtime's; 1 = plain greedy
    threads: int | None = None  # None: auto_threads()
    rater_specs: tuple[str, ...] = ()  # --rater OBJECTIVE=module:callable, over the built-in raters (rater_plugins.py)

    @property
    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path(self.run_dir) / "eval"


@dataclass
class Inputs:
    """Everything checked and loaded before the model: a bad input fails here."""

    manifest: dict
    objectives: list[str]
    lists: list
    prompts: list[list[dict[str, str]]]
    prompt_source: str
    raters: dict = field(default_factory=dict)  # rated objectives only, in run order


def check_run(run_dir: Path) -> dict:
    manifest = read_run_manifest(run_dir)
    conditioning = manifest.get("conditioning", "header")
    if conditioning not in RUN_CONDITIONINGS:
        raise RunFolderError(f"{run_dir}: conditioning {conditioning!r} is not supported by this eval "
                             f"(knows {', '.join(RUN_CONDITIONINGS)})")
    if conditioning == Conditioning.SOUP:
        soup_adapter_dirs(run_dir, manifest)  # raises naming the missing adapter
        return manifest
    if not (Path(run_dir) / ADAPTER_DIR / "adapter_config.json").is_file():
        raise RunFolderError(f"{run_dir}: no trained adapter ({ADAPTER_DIR}/adapter_config.json missing)")
    return manifest


def prepare(config: EvalConfig, raters: Mapping | None) -> Inputs:
    if min(config.n_prompts, config.max_new_tokens, config.batch_size, config.lists_per_batch) < 1:
        raise EvalError("--n-prompts, --max-new-tokens and --batch-size must be at least 1")
    if config.grid not in GRIDS:
        raise EvalError(f"--grid must be one of {GRIDS}, got {config.grid!r}")
    try:
        check_repetition_penalty(config.repetition_penalty)
    except ValueError as err:
        raise EvalError(f"--repetition-penalty: {err}") from None
    manifest = check_run(config.run_dir)
    try:
        strength_for(manifest.get("conditioning", "header"), config.soup_strength)
    except LambdaError as err:
        raise EvalError(f"--soup-strength: {err}") from None
    objectives = list(manifest["objectives"])
    given = load_raters(config.rater_specs, objectives)
    lists = load_heldout_lists(config.data, objectives)[: config.max_lists]
    if config.prompts is not None:
        prompts, source = load_prompt_file(config.prompts), str(config.prompts)
    else:
        prompts, source = prompts_from_lists(lists), f"held-out lists of {config.data}"
    try:
        check_output_folder(config.output_dir)
    except FileExistsError as err:
        raise EvalError(str(err)) from None
    if raters is None:
        raters = default_raters()
    raters = {**raters, **given}
    rated = {name: raters[name] for name in objectives if name in raters}
    return Inputs(manifest, objectives, lists, prompts[: config.n_prompts], source, rated)


def _progress():
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


def _advancer(progress, task) -> Callable[[int], None]:
    return lambda n: progress.advance(task, n)


# ----------------------------------------------------------------------------- phases


def rank_heldout(model, tokenizer, inputs: Inputs, settings, config: EvalConfig, progress) -> dict:
    """Ranking metrics of the run, the base model's log-prob and chance, per ranking point."""
    # imports torch at its top
    from lwdpo_edge.evaluate.ranking import (adapter_on, ranking_passes, ranking_report, score_lists,
                                             weighted_ranking_report)

    points = ranking_points(inputs.objectives, config.grid)
    task = progress.add_task("ranking held-out lists", total=ranking_passes(points, settings) * len(inputs.lists))
    mixer = getattr(model, "soup_mixer", None)
    policy_at = adapter_on if mixer is None else lambda point: mixer.folded(point.lam, config.soup_strength)
    scored = score_lists(model, tokenizer, inputs.lists, points, inputs.objectives, settings,
                         config.lists_per_batch, _advancer(progress, task), policy_at)
    return {**ranking_report(scored, inputs.objectives, settings.beta),
            "lambda_weighted": weighted_ranking_report(scored, points, inputs.objectives, settings.beta,
                                                       settings.score_normalization)}


def generate_grid(backend, inputs: Inputs, points, conditioned: bool, config: EvalConfig, progress, label: str):
    """Greedy answers of one backend at every (prompt, lambda point), rated; and the seconds spent generating."""
    jobs = make_jobs(inputs.prompts, points, inputs.objectives, conditioned)
    task = progress.add_task(f"generating ({label})", total=len(jobs))
    answers, seconds = timed(generate_answers, backend, jobs, config.max_new_tokens, config.batch_size,
                             _advancer(progress, task))
    generated = len({json.dumps(job.messages) for job in jobs})  # identical inputs were answered once
    return rate_generations(inputs.prompts, jobs, answers, inputs.raters), seconds, generated


def generate_all(model, tokenizer, inputs: Inputs, points, conditioned: bool, config: EvalConfig, progress,
                 timing: dict):
    """{"base": [...], "policy": [...]} generations; the base model first, so that the policy can then
    generate with the adapter merged into the fp32 weights (~15% faster than unmerged LoRA): nothing
    after this needs the unmerged model."""
    from lwdpo_edge.evaluate.backends import TransformersBackend  # imports torch at its top

    generations = {}
    mixer = getattr(model, "soup_mixer", None)
    for name in (["base"] if config.baseline else []) + ["policy"]:
        if name == "policy" and mixer is None:
            model.merge_adapter()
        backend = TransformersBackend(model, tokenizer, adapter=name == "policy",
                                      repetition_penalty=config.repetition_penalty)
        if name == "policy" and mixer is not None:  # a soup mix changes per point: folded point by point
            generations[name], timing[f"generation_{name}_s"], timing[f"answers_generated_{name}"] = (
                generate_soup_grid(backend, mixer, inputs, points, config, progress))
        else:
            generations[name], timing[f"generation_{name}_s"], timing[f"answers_generated_{name}"] = generate_grid(
                backend, inputs, points, conditioned, config, progress, name)
    return generations


def generate_soup_grid(backend, mixer, inputs: Inputs, points, config: EvalConfig, progress):
    """generate_grid for a soup run's policy (`soup_answers`: the mix folded point by point, no header);
    generations come back in make_jobs' prompt-major order. Every point is its own model, so every
    answer was generated."""
    task = progress.add_task("generating (policy, soup mix per point)", total=len(inputs.prompts) * len(points))
    jobs, answers, seconds = soup_answers(backend, mixer, inputs.prompts, points, inputs.objectives,
                                          config.soup_strength, config.max_new_tokens, config.batch_size,
                                          _advancer(progress, task))
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].prompt_index)  # stable: grid order within a prompt
    return (rate_generations(inputs.prompts, [jobs[i] for i in order], [answers[i] for i in order], inputs.raters),
            round(seconds, 2), len(jobs))


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, round(time.perf_counter() - started, 2)


def count_tokens(tokenizer, generations) -> int:
    return sum(len(tokenizer(g.answer, add_special_tokens=False)["input_ids"]) for g in generations)


def run_evaluation(config: EvalConfig, raters: Mapping | None = None) -> Path:
    """Evaluate the run folder and write the report folder; returns its path."""
    from transformers.utils import logging as hf_logging  # transformers: heavy, not needed for --help

    started = time.perf_counter()
    inputs = prepare(config, raters)
    hf_logging.disable_progress_bar()  # one rich display; no tqdm "Loading weights" bars inside it
    with torch_threads(config.threads, lambda why: Console(stderr=True).print(f"eval: {why}", highlight=False)) as n:
        return evaluate_loaded(replace(config, threads=n), inputs, started)


def evaluate_loaded(config: EvalConfig, inputs: Inputs, started: float) -> Path:
    from lwdpo_edge.evaluate.ranking import RankingSettings  # imports torch at its top
    from lwdpo_edge.generate import load_run  # imports torch at its top

    model, tokenizer, _ = load_run(config.run_dir)
    if getattr(model, "soup_mixer", None) is not None and config.soup_strength is None:
        config = replace(config, soup_strength=model.soup_mixer.default_strength)  # recorded in the report
    settings = RankingSettings.from_manifest(inputs.manifest)
    points = lambda_grid(inputs.objectives, config.grid)
    rated = list(inputs.raters)
    timing, generations = {}, {}
    with _progress() as progress:
        ranking, timing["ranking_s"] = timed(rank_heldout, model, tokenizer, inputs, settings, config, progress)
        if rated:  # no rater for any objective: nothing to measure on generations
            generations = generate_all(model, tokenizer, inputs, points, settings.condition_on_lambda, config,
                                       progress, timing)
    control = {name: controllability_report(gens, points, rated) for name, gens in generations.items()}
    if "base" in control:  # the trade-off front of the run against the base model's mean point
        control["pareto"] = pareto_report(control["policy"]["points"], control["base"]["points"], rated)
    ceiling = imitation_ceiling(inputs, points) if rated else None
    criteria = judge(generations.get("policy", []), generations.get("base", []), points, rated, ranking,
                     len(inputs.prompts), ceiling) if rated else None
    timing.update(generation_cost(tokenizer, generations, timing), total_s=round(time.perf_counter() - started, 1))
    report = build_report(config, inputs, settings, points, ranking, control, criteria, timing)
    report["controllability"]["data_ceiling"] = ceiling
    rows = [{"model": name, "prompt": user_question(inputs.prompts[g.prompt_index]), **g.to_json()}
            for name, gens in generations.items() for g in gens]
    return write_report(report, rows, config.output_dir)


def imitation_ceiling(inputs: Inputs, points) -> dict:
    """The held-out lists' own ceiling (ceiling.py) at the judged points (vertices and centre)."""
    from lwdpo_edge.evaluate.ceiling import data_ceiling  # imports torch at its top

    normalization = inputs.manifest.get("training", {}).get("config", {}).get("score_normalization", "zscore")
    return data_ceiling(inputs.lists, judged_points(points), inputs.objectives, list(inputs.raters), normalization)


def generation_cost(tokenizer, generations: dict, timing: dict) -> dict:
    """Seconds per generated answer and new tokens per second (answers re-tokenised), per model. A model
    whose input is the same at every point (a base without header) answered each prompt once; its
    copies hold the same answer, so they count once."""
    out = {}
    for name, gens in generations.items():
        seconds, generated = timing[f"generation_{name}_s"], timing[f"answers_generated_{name}"]
        out[f"seconds_per_answer_{name}"] = round(seconds / max(generated, 1), 3)
        tokens = count_tokens(tokenizer, gens) * generated / max(len(gens), 1)
        out[f"tokens_per_s_{name}"] = round(tokens / max(seconds, 1e-9), 1)
    return out


def build_report(config: EvalConfig, inputs: Inputs, settings, points, ranking, control, criteria, timing) -> dict:
    manifest = inputs.manifest
    rated = list(inputs.raters)
    return {
        "eval_version": EVAL_VERSION,
        "run": {"dir": str(config.run_dir), "conditioning": manifest.get("conditioning", "header"),
                "steps": manifest.get("training", {}).get("steps"), "base_model": manifest["base_model"],
                "ranking_settings": asdict(settings)},
        "objectives": inputs.objectives,
        "data": {"source": str(config.data), "n_lists": len(inputs.lists)},
        "prompts": {"source": inputs.prompt_source, "n": len(inputs.prompts)},
        "settings": {"grid": config.grid, "max_new_tokens": config.max_new_tokens, "batch_size": config.batch_size,
                     "baseline": config.baseline, "backend": "transformers", "greedy": True, "threads": config.threads,
                     "soup_strength": config.soup_strength, "repetition_penalty": config.repetition_penalty,
                     "raters": {s.objective: s.target for s in map(parse_rater_spec, config.rater_specs)}},
        "ranking": {"points": [p.name for p in points], **ranking},  # ranked on the generation grid
        "controllability": {
            "grid": [{"name": p.name, "kind": p.kind, "lambda": p.lam} for p in points],
            "rated": rated, "unrated": [n for n in inputs.objectives if n not in rated],
            "n_prompts": len(inputs.prompts), **control,
        },
        "criteria": criteria,
        "timing": timing,
    }
