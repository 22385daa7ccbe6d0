"""Controllability: when lambda moves toward objective k, do greedy answers score higher on k?

For P held-out prompts x G lambda points (vertices, edge midpoints, centre) the backend answers
greedily under each point's header; the built-in raters score every answer. Per objective k:

    spearman                 Spearman(lambda_k, score_k) over all P*G (prompt, lambda) points
    spearman_within_prompt   the same after subtracting each prompt's mean score_k: prompt
                             difficulty no longer counts, only what lambda changes
    levels                   mean score_k at each distinct value of lambda_k (0 ... 1), in order
    monotone                 those means never go down from the low vertex (lambda_k = 0) to the
                             high vertex (lambda_k = 1), and end higher than they start

Per grid point: the mean score of each objective, the mean words and the share of answers that
repeat a 4-word sequence 3+ times (`raters.repeats_itself`).

Only objectives with a rater (built-in, or given with `eval --rater`: rater_plugins.py) can be measured on
fresh text; others are listed as unrated.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lwdpo_edge.conditioning import conditioned_messages
from lwdpo_edge.evaluate.grid import LambdaPoint
from lwdpo_edge.evaluate.heldout import user_question
from lwdpo_edge.evaluate.metrics import spearman
from lwdpo_edge.raters import count_words, repeats_itself, score_answers


@dataclass
class Job:
    prompt_index: int
    point: LambdaPoint
    messages: list[dict[str, str]]  # what the model is asked: header (if conditioned) + prompt


@dataclass
class Generation:
    prompt_index: int
    point: str
    lam: dict[str, float]
    answer: str
    words: int
    scores: dict[str, float]  # rated objectives only

    def to_json(self) -> dict:
        return {"prompt_index": self.prompt_index, "point": self.point, "lambda": self.lam,
                "answer": self.answer, "words": self.words, "scores": self.scores}


def make_jobs(prompts, points: Sequence[LambdaPoint], objectives, conditioned: bool) -> list[Job]:
    """Prompt-major order: one prompt's whole grid is adjacent, so a batch shares one prompt length."""
    return [Job(p, point, conditioned_messages(messages, point.lam if conditioned else None, objectives))
            for p, messages in enumerate(prompts) for point in points]


def generate_answers(backend, jobs: Sequence[Job], max_new_tokens: int, batch_size: int,
                     advance: Callable[[int], None] = lambda n: None) -> list[str]:
    """One answer per job; identical model inputs (e.g. every lambda of an unconditioned run) run once."""
    keys = [json.dumps(job.messages) for job in jobs]
    copies = Counter(keys)  # jobs served by each unique input, for the progress bar
    unique = {key: job.messages for key, job in zip(keys, jobs)}  # insertion order = job order
    answers: dict[str, str] = {}
    todo = list(unique.items())
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        for (key, _), answer in zip(chunk, backend.generate_batch([m for _, m in chunk], max_new_tokens)):
            answers[key] = answer
        advance(sum(copies[key] for key, _ in chunk))
    return [answers[key] for key in keys]


def soup_answers(backend, mixer, prompts, points: Sequence[LambdaPoint], objectives, strength: float | None,
                 max_new_tokens: int, batch_size: int,
                 advance: Callable[[int], None] = lambda n: None) -> tuple[list[Job], list[str], float]:
    """(jobs, answers, seconds spent generating) of a soup at every point, point-major, no header: the mix
    at (point, strength) folded into the weights for that point (`SoupMixer.folded`, base-model speed).
    `backend` runs the model as it is, which inside the fold is the mix with the adapters disabled."""
    jobs, answers, seconds = [], [], 0.0
    for point in points:
        point_jobs = make_jobs(prompts, [point], objectives, conditioned=False)
        started = time.perf_counter()
        with mixer.folded(point.lam, strength):
            answers += generate_answers(backend, point_jobs, max_new_tokens, batch_size, advance)
        jobs, seconds = jobs + point_jobs, seconds + time.perf_counter() - started
    return jobs, answers, seconds


def rate_generations(prompts, jobs: Sequence[Job], answers: Sequence[str], raters: Mapping) -> list[Generation]:
    questions = [user_question(prompts[job.prompt_index]) for job in jobs]
    scores = score_answers(questions, list(answers), dict(raters)) if jobs else []
    return [Generation(job.prompt_index, job.point.name, dict(job.point.lam), answer, count_words(answer), s)
            for job, answer, s in zip(jobs, answers, scores)]


# ----------------------------------------------------------------------------- statistics


def _centred_by_prompt(generations: Sequence[Generation], name: str) -> np.ndarray:
    """score_k minus that prompt's mean score_k over the grid.  (P*G,)"""
    scores = np.array([g.scores[name] for g in generations])
    prompt_ids = np.array([g.prompt_index for g in generations])
    means = {p: scores[prompt_ids == p].mean() for p in set(prompt_ids.tolist())}
    # Rounded: float noise from the subtraction (1e-15) must not split ties into fake rank orders.
    return np.round(scores - np.array([means[p] for p in prompt_ids]), 9)


def level_means(generations: Sequence[Generation], name: str) -> list[dict]:
    """Mean score_k per distinct lambda_k, low to high (each grid point weighs by its prompts), with
    the standard deviation and count that the verdict's significance margin needs."""
    levels = sorted({g.lam[name] for g in generations})
    out = []
    for level in levels:
        values = np.array([g.scores[name] for g in generations if g.lam[name] == level])
        out.append({"lambda": level, "mean": float(values.mean()),
                    "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0, "n": int(len(values))})
    return out


def objective_control(generations: Sequence[Generation], name: str) -> dict:
    lam = [g.lam[name] for g in generations]
    levels = level_means(generations, name)
    means = [level["mean"] for level in levels]
    steps = np.diff(means)
    return {
        "spearman": spearman(lam, [g.scores[name] for g in generations]),
        "spearman_within_prompt": spearman(lam, _centred_by_prompt(generations, name)),
        "levels": levels,
        "low_to_high": means[-1] - means[0] if len(means) > 1 else None,
        "monotone": bool(len(means) > 1 and np.all(steps >= 0) and means[-1] > means[0]),
    }


def point_summary(generations: Sequence[Generation], point: LambdaPoint, rated: Sequence[str]) -> dict:
    mine = [g for g in generations if g.point == point.name]
    return {
        "name": point.name, "kind": point.kind, "lambda": dict(point.lam), "n": len(mine),
        "mean_scores": {name: float(np.mean([g.scores[name] for g in mine])) for name in rated} if mine else {},
        "mean_words": float(np.mean([g.words for g in mine])) if mine else None,
        # share of answers caught in a loop (one 4-word sequence 3+ times): no point may degrade into loops
        "repeating": float(np.mean([repeats_itself(g.answer) for g in mine])) if mine else None,
    }


def controllability_report(generations: Sequence[Generation], points: Sequence[LambdaPoint],
                           rated: Sequence[str]) -> dict:
    """{"points": [per grid point means], "objectives": {name: objective_control}}."""
    return {
        "points": [point_summary(generations, point, rated) for point in points],
        "objectives": {name: objective_control(generations, name) for name in rated},
    }
