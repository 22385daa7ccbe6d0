"""Choose a soup's steering strength from held-out prompts: the most controllable one that stays sound.

    lwdpo-edge calibrate runs/demo            # also the last step of `lwdpo-edge train` for a soup run
    run_calibration(CalibrationConfig(run_dir="runs/demo"))

For each strength s of a small grid, the soup answers the run's held-out prompts greedily (the
runtime's decoding) at each vertex and the centre (the points the steering verdict judges), with the
mix at (lambda, s) folded into the weights. The base model answers the same prompts once. Then

    controllability(s) = mean over rated objectives of Spearman(lambda_k, score_k)   (evaluate/controllability.py)
    sound(s)           = at every grid point, loop rate <= base loop rate + LOOP_MARGIN, and
                         at every vertex, mean on-topic cosine >= the base's - ON_TOPIC_MARGIN

and the chosen strength is the sound one with the highest controllability (ties: the smaller). When
no strength is sound, the smallest of the grid is chosen and the report says so. The table and the
choice are written into lwdpo.json ("soup_strength", "soup_calibration"): export, the runtime, the
app and `serve` read the strength from there, and every one of them still takes an override.

Held-out means never a training prompt: the prompts of the lists marked "split": "heldout" in the
run's data, or a prompt file the user names.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lwdpo_edge.contract import Conditioning, check_strength, read_run_manifest, update_run_manifest
from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.decoding import REPETITION_PENALTY
from lwdpo_edge.evaluate.controllability import (controllability_report, generate_answers, make_jobs,
                                                 rate_generations, soup_answers)
from lwdpo_edge.evaluate.grid import lambda_grid
from lwdpo_edge.evaluate.heldout import HELDOUT, load_prompt_file, prompts_from_lists
from lwdpo_edge.evaluate.rater_plugins import load_raters
from lwdpo_edge.raters import HelpfulnessRater, default_raters
from lwdpo_edge.threads import torch_threads

STRENGTHS = (1.0, 1.5, 2.0, 2.5, 3.0)  # beyond 3 the demo run's vertices degenerate (docs/experiments.md)
LOOP_MARGIN = 0.03  # a grid point may loop at most 3 points more often than the base model
ON_TOPIC_MARGIN = 0.1  # a vertex's mean prompt-answer cosine may be at most 0.1 below the base model's
ON_TOPIC = "on_topic"  # MiniLM cosine of prompt and whole answer: about the question or not, whatever its length


class CalibrationError(ValueError):
    """A run or an input that calibration cannot use."""


@dataclass
class CalibrationConfig:
    run_dir: Path
    strengths: tuple[float, ...] = STRENGTHS
    n_prompts: int = 30
    max_new_tokens: int = 96
    batch_size: int = 32  # decoding on a CPU is bound by reading the weights: one batch for all prompts
    prompts: str | None = None  # None: the held-out prompts of the run's data
    rater_specs: tuple[str, ...] = ()  # --rater OBJECTIVE=module:callable (rater_plugins.py)


def heldout_prompts(data: str, objectives: Sequence[str]) -> list[list[dict[str, str]]]:
    """Prompts of the lists marked held out; a data file without that split has none to give."""
    held = [r for r in load_records(data, objectives=list(objectives)) if r.meta.get("split") == HELDOUT]
    if not held:
        raise CalibrationError(f"{data}: no list is marked \"split\": \"heldout\", and calibration never uses "
                               f"training prompts: pass --prompts FILE with prompts the run did not train on")
    return prompts_from_lists(held)


def check_inputs(config: CalibrationConfig) -> tuple[dict, list, dict]:
    """(manifest, prompts, rated raters) before any model loads."""
    manifest = read_run_manifest(config.run_dir)
    if manifest.get("conditioning") != Conditioning.SOUP:
        raise CalibrationError(f"{config.run_dir}: only an adapter-soup run has a steering strength to calibrate")
    if not config.strengths or min(config.n_prompts, config.max_new_tokens, config.batch_size) < 1:
        raise CalibrationError("--strengths must name at least one strength; counts must be at least 1")
    for strength in config.strengths:
        check_strength(strength)
    objectives = manifest["objectives"]
    raters = {**default_raters(), **load_raters(config.rater_specs, objectives)}
    rated = {name: raters[name] for name in objectives if name in raters}
    if not rated:
        raise CalibrationError(f"no rater for any of {objectives}: give one with --rater OBJECTIVE=module:callable")
    if config.prompts is not None:
        prompts = load_prompt_file(config.prompts)
    else:
        prompts = heldout_prompts(manifest.get("training", {}).get("config", {}).get("data", "default"), objectives)
    return manifest, prompts[: config.n_prompts], rated


def strength_row(strength: float, generations, base: dict, points, rated: Sequence[str]) -> dict:
    """One row of the table: controllability, and the two quality checks against the base model."""
    report = controllability_report(generations, points, rated)
    spearman = {name: report["objectives"][name]["spearman"] for name in rated}
    loops = {p["name"]: p["repeating"] for p in report["points"]}
    on_topic = {p.name: float(np.mean([g.scores[ON_TOPIC] for g in generations if g.point == p.name]))
                for p in points if p.kind == "vertex"}
    loop_ok = all(rate <= base["loops"] + LOOP_MARGIN + 1e-9 for rate in loops.values())
    on_topic_ok = all(value >= base["on_topic"] - ON_TOPIC_MARGIN for value in on_topic.values())
    finite = [value for value in spearman.values() if value is not None and np.isfinite(value)]
    return {"strength": strength, "spearman": spearman,
            "controllability": float(np.mean(finite)) if finite else float("-inf"),
            "max_loop_rate": max(loops.values()), "loops_ok": loop_ok,
            "min_on_topic": min(on_topic.values()), "on_topic_ok": on_topic_ok, "sound": loop_ok and on_topic_ok}


def choose(rows: Sequence[dict]) -> tuple[float, str]:
    """(strength, why): the sound row with the highest controllability, ties to the smaller strength."""
    sound = [row for row in rows if row["sound"]]
    if not sound:
        smallest = min(row["strength"] for row in rows)
        return smallest, f"no strength passed the quality floor: the smallest, {smallest:g}"
    best = max(sound, key=lambda row: (row["controllability"], -row["strength"]))
    return best["strength"], f"the most controllable of the {len(sound)} strengths that pass the quality floor"


def answers_at(model, backend, prompts, points, objectives, strength, config, raters) -> list:
    """Rated greedy answers of the soup at every point at one strength, the mix folded per point."""
    jobs, answers, _ = soup_answers(backend, model.soup_mixer, prompts, points, objectives, strength,
                                    config.max_new_tokens, config.batch_size)
    return rate_generations(prompts, jobs, answers, raters)


def base_quality(model, tokenizer, prompts, objectives, config, raters) -> dict:
    """The base model's loop rate and mean on-topic cosine on the same prompts (no header: one answer each)."""
    from lwdpo_edge.evaluate.backends import TransformersBackend  # imports torch at its top
    from lwdpo_edge.raters import repeats_itself

    backend = TransformersBackend(model, tokenizer, adapter=False, repetition_penalty=REPETITION_PENALTY)
    any_point = lambda_grid(objectives, "vertices")[:1]  # unconditioned: the point only labels the job
    jobs = make_jobs(prompts, any_point, objectives, conditioned=False)
    generations = rate_generations(prompts, jobs, generate_answers(backend, jobs, config.max_new_tokens,
                                                                   config.batch_size), raters)
    return {"loops": float(np.mean([repeats_itself(g.answer) for g in generations])),
            "on_topic": float(np.mean([g.scores[ON_TOPIC] for g in generations]))}


def calibrate_loaded(model, tokenizer, manifest: dict, prompts, rated: Mapping, config: CalibrationConfig,
                     progress=lambda message: None) -> dict:
    """The calibration record (table, choice, rule) of a loaded soup; writes nothing."""
    from lwdpo_edge.evaluate.backends import TransformersBackend  # imports torch at its top

    started = time.perf_counter()
    objectives = manifest["objectives"]
    raters = {**rated, ON_TOPIC: HelpfulnessRater(aggregate="answer")}
    points = lambda_grid(objectives, "vertices")  # each vertex and the centre
    base = base_quality(model, tokenizer, prompts, objectives, config, {ON_TOPIC: raters[ON_TOPIC]})
    backend = TransformersBackend(model, tokenizer, adapter=True, repetition_penalty=REPETITION_PENALTY)
    rows = []
    for strength in config.strengths:
        generations = answers_at(model, backend, prompts, points, objectives, strength, config, raters)
        rows.append(strength_row(strength, generations, base, points, list(rated)))
        progress(format_row(rows[-1]))
    chosen, why = choose(rows)
    return {"chosen": chosen, "why": why, "table": rows, "base": base, "n_prompts": len(prompts),
            "points": [p.name for p in points], "rated": list(rated), "max_new_tokens": config.max_new_tokens,
            "rule": f"highest mean Spearman(lambda_k, score_k) over rated objectives among strengths whose every grid "
                    f"point loops at most {LOOP_MARGIN:g} more often than the base model and whose every vertex's mean "
                    f"on-topic cosine is at most {ON_TOPIC_MARGIN:g} below the base model's",
            "seconds": round(time.perf_counter() - started, 1)}


def format_row(row: dict) -> str:
    spearman = " ".join(f"{name} " + ("n/a" if value is None else f"{value:+.2f}")
                        for name, value in row["spearman"].items())
    verdict = "sound" if row["sound"] else ("loops" if not row["loops_ok"] else "off-topic")
    return (f"strength {row['strength']:g}: Spearman {spearman} (mean {row['controllability']:+.2f}); "
            f"most loops {row['max_loop_rate']:.2f}, least on-topic vertex {row['min_on_topic']:.2f}: {verdict}")


def run_calibration(config: CalibrationConfig, progress=print) -> dict:
    """Calibrate the run's steering strength and record it in its lwdpo.json; returns the record."""
    from lwdpo_edge.generate import load_run  # imports torch at its top

    manifest, prompts, rated = check_inputs(config)
    sizes = f"calibrate: {len(prompts)} held-out prompts x {len(config.strengths)} strengths"
    with torch_threads(None, lambda why: progress(f"{sizes}; {why}")):
        model, tokenizer, _ = load_run(config.run_dir)
        record = calibrate_loaded(model, tokenizer, manifest, prompts, rated, config, progress)
    update_run_manifest(config.run_dir, soup_strength=record["chosen"], soup_calibration=record)
    progress(f"calibrate: steering strength {record['chosen']:g} ({record['why']}; {record['seconds']:g} s), "
             f"written to {Path(config.run_dir) / 'lwdpo.json'}")
    return record
