"""Lambda samplers and the performance-driven scheduler: draws, the online rule, checkpoint/resume."""

import json

import numpy as np
import pytest

from lwdpo_edge.train.lambda_sampling import (
    DirichletSampler,
    PerformanceScheduler,
    build_sampler,
    simplex_anchors,
    step_rng,
)
from train_helpers import read_metrics, tiny_config, write_dataset

OBJECTIVES = ["helpfulness", "conciseness", "readability"]


def test_anchors_cover_vertices_midpoints_and_centre():
    names = [name for name, _ in simplex_anchors(OBJECTIVES)]
    assert names == ["helpfulness", "conciseness", "readability", "helpfulness+conciseness",
                     "helpfulness+readability", "conciseness+readability", "centre"]
    assert dict(simplex_anchors(OBJECTIVES))["helpfulness+readability"] == {"helpfulness": 0.5, "conciseness": 0.0,
                                                                            "readability": 0.5}


def test_step_rng_is_reproducible_and_differs_per_rank():
    a = DirichletSampler(OBJECTIVES).draw(4, step_rng(1, 10, 0, 0))
    assert a == DirichletSampler(OBJECTIVES).draw(4, step_rng(1, 10, 0, 0))
    assert a != DirichletSampler(OBJECTIVES).draw(4, step_rng(1, 10, 0, 1))


def test_scheduler_moves_mass_to_the_weakest_anchor():
    scheduler = PerformanceScheduler(OBJECTIVES)
    before = scheduler.probabilities()
    assert np.allclose(before, 1 / 7)
    losses = [1.0] * 7
    losses[1] = 2.0  # conciseness vertex is where the policy is worst
    scheduler.update(losses)
    after = scheduler.probabilities()
    assert after.argmax() == 1 and after[1] > before[1]
    assert after.min() >= scheduler.explore / 7  # exploration floor


def test_scheduler_rewards_anchors_that_improve():
    scheduler = PerformanceScheduler(OBJECTIVES, decay=0.0)
    scheduler.update([1.0] * 7)
    scheduler.update([1.0, 1.0, 0.6, 1.0, 1.0, 1.0, 1.0])  # readability fell fastest, but is now the lowest loss
    assert scheduler.probabilities().argmax() == 2


def test_scheduler_draws_cluster_around_the_chosen_anchor():
    scheduler = PerformanceScheduler(OBJECTIVES, explore=0.0)
    scheduler.logits = np.array([0, 0, 50.0, 0, 0, 0, 0])  # nearly all mass on the readability vertex
    draws = scheduler.draw(200, np.random.default_rng(0))
    assert np.mean([d["readability"] for d in draws]) > 0.7


def test_scheduler_state_round_trips_through_json():
    a = PerformanceScheduler(OBJECTIVES)
    a.update([1.0, 2.0, 1.5, 1.0, 1.0, 0.5, 1.0])
    b = PerformanceScheduler(OBJECTIVES)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert np.allclose(a.probabilities(), b.probabilities()) and b.updates == 1
    with pytest.raises(ValueError, match="anchors"):
        PerformanceScheduler(OBJECTIVES[:2]).load_state_dict(a.state_dict())


def test_build_sampler_names():
    assert isinstance(build_sampler("performance", OBJECTIVES, 1.0, 0.3, None, every=5), PerformanceScheduler)
    fixed = build_sampler("fixed", OBJECTIVES, 1.0, 0.3, "conciseness=3,readability=1")
    assert fixed.draw(1, np.random.default_rng(0)) == [{"helpfulness": 0.0, "conciseness": 0.75, "readability": 0.25}]
    with pytest.raises(ValueError, match="unknown lambda scheduler"):
        build_sampler("learned", OBJECTIVES, 1.0, 0.3, None)


def test_performance_scheduler_trains_logs_and_resumes(tiny_llama_dir, tmp_path, monkeypatch):
    """A real run: the scheduler updates every 2 steps, logs to metrics.jsonl, and a resumed run
    restores its state from the checkpoint (same losses and scheduler probabilities as a straight run)."""
    from lwdpo_edge.train import recipe
    from lwdpo_edge.train.callbacks import RichProgressCallback

    data = write_dataset(tmp_path / "lists.jsonl", n_prompts=10)
    settings = dict(max_steps=6, save_steps=2, lambda_scheduler="performance", scheduler_every=2, scheduler_lists=3,
                    objectives="helpfulness,conciseness")
    straight = recipe.run_training(tiny_config(tiny_llama_dir, data, tmp_path / "straight", **settings))

    def crash_after_step_5(self, args, state, control, **kwargs):
        if state.global_step == 5:
            raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(RichProgressCallback, "on_step_end", crash_after_step_5)
        with pytest.raises(KeyboardInterrupt):
            recipe.run_training(tiny_config(tiny_llama_dir, data, tmp_path / "resumed", **settings))
    recipe.run_training(tiny_config(tiny_llama_dir, data, tmp_path / "resumed", resume=True, **settings))

    rows, resumed = read_metrics(straight), read_metrics(tmp_path / "resumed")
    probs = [{k: v for k, v in r.items() if k.startswith("scheduler/p/")} for r in rows]
    assert [bool(p) for p in probs] == [False, True, False, True, False, True]  # updated at steps 2, 4, 6
    assert probs[1] != probs[5]  # it moved
    assert sum(probs[5].values()) == pytest.approx(1.0)
    for key in ("loss", "scheduler/p/helpfulness", "scheduler/loss/conciseness"):
        nan = float("nan")
        assert [r.get(key, nan) for r in resumed] == pytest.approx([r.get(key, nan) for r in rows], rel=1e-4,
                                                                   nan_ok=True), key
    state = json.loads((straight / "checkpoints" / "checkpoint-6" / "lambda_scheduler.json").read_text())
    assert state["updates"] == 3
