"""Partial labels: a list scored on some objectives and null on others teaches only those it is scored on.

The toy data: lists scored on `a` only hold a MARKER answer (the worst under `a`, null under `b`);
lists scored on `b` only hold ordinary answers. No correct use of this data ever imitates the marker,
so after SFT-driven soup training `b`'s adapter must not raise the marker's log-probability. A rule
that reads a missing score as 0 makes every answer of an `a`-list tie under `b` and imitates the first
one, the marker: the last test runs that rule and shows the check catches it.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from train_helpers import QUESTIONS, tiny_config

from lwdpo_edge.data.schema import DataError
from lwdpo_edge.objective import lambda_best_index, lambda_dpo_loss, usable_objectives

MARKER = "ZEBRA QUARTZ ZEBRA QUARTZ ZEBRA"
ANSWERS = ["Light scatters.", "Boil it for nine minutes.", "Mass attracts mass.", "The cheetah."]
NAN = float("nan")


# ----------------------------------------------------------------------------- the rule on tensors


def test_an_objective_is_usable_with_two_scored_unequal_answers():
    scores = torch.tensor([[[1.0, 2.0, NAN], [5.0, NAN, NAN], [3.0, 3.0, 3.0], [NAN, NAN, NAN]]])  # (1, K=4, N=3)
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert usable_objectives(scores, mask).tolist() == [[True, False, False, False]]
    mask[0, 1] = False  # padding never counts as a scored answer
    assert usable_objectives(scores, mask).tolist() == [[False, False, False, False]]


def test_the_loss_ignores_an_objective_whose_scores_all_tie():
    policy, reference = torch.tensor([[-3.0, -5.0, -4.0]]), torch.zeros(1, 3)
    scores = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]]])  # objective 1 ties: no preference to learn
    loss, metrics = lambda_dpo_loss(policy, reference, scores, torch.tensor([[0.5, 0.5]]))
    alone, _ = lambda_dpo_loss(policy, reference, scores[:, :1], torch.ones(1, 1))
    torch.testing.assert_close(loss, alone)
    assert metrics["active"].tolist() == [[True, False]]


def test_the_sft_target_comes_only_from_objectives_the_list_is_scored_on():
    scores = torch.tensor([[[0.0, 1.0, -1.0], [NAN, NAN, NAN]]] * 3)  # scored on objective 0 only
    lam = torch.tensor([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    mask = torch.ones(3, 3, dtype=torch.bool)
    # b's vertex: nothing to imitate (-1), not candidate 0; any weight on a: a's best, lambda renormalised
    assert lambda_best_index(scores, lam, mask).tolist() == [-1, 1, 1]
    tied = torch.tensor([[[2.0, 2.0, 2.0], [NAN, NAN, NAN]]])
    assert lambda_best_index(tied, torch.tensor([[0.5, 0.5]]), torch.ones(1, 3, dtype=torch.bool)).tolist() == [-1]


# ----------------------------------------------------------------------------- the rule in training


def write_partial_data(path):
    """8 lists scored on `a` only (marker first, the worst under a) and 8 scored on `b` only."""
    rows = []
    for i in range(8):
        a_list = [{"text": MARKER, "scores": {"a": 0.0, "b": None}}]
        a_list += [{"text": text, "scores": {"a": float(j + 1), "b": None}} for j, text in enumerate(ANSWERS[:3])]
        rows.append({"prompt": QUESTIONS[i], "responses": a_list})
        b_list = [{"text": text, "scores": {"a": None, "b": float(j)}} for j, text in enumerate(ANSWERS)]
        rows.append({"prompt": QUESTIONS[(i + 3) % len(QUESTIONS)], "responses": b_list})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def marker_logprob(model_dir, adapter_dir=None) -> float:
    """Mean log-prob of MARKER as the answer to each question, base model or base + adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lwdpo_edge.conditioning import prompt_text

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    total = 0.0
    with torch.no_grad():
        for question in QUESTIONS:
            prompt = tokenizer(prompt_text(tokenizer, [{"role": "user", "content": question}]),
                               add_special_tokens=False)["input_ids"]
            answer = tokenizer(MARKER, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + answer])
            logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)  # (T-1, V)
            picked = logps[torch.arange(len(prompt) - 1, ids.shape[1] - 1), ids[0, len(prompt):]]
            total += float(picked.sum())
    return total / len(QUESTIONS)


def train_partial_soup(tiny_llama_dir, tmp_path, name):
    from lwdpo_edge.train.recipe import run_training

    data = write_partial_data(tmp_path / "partial.jsonl")
    config = tiny_config(tiny_llama_dir, data, tmp_path / name, conditioning="soup", max_steps=6, save_steps=100,
                         sft_warmup_steps=6, learning_rate=1e-2, objectives="a,b")
    return run_training(config)


def test_a_soup_adapter_learns_only_from_lists_scored_on_its_objective(tiny_llama_dir, tmp_path):
    from lwdpo_edge.contract import read_run_manifest

    run = train_partial_soup(tiny_llama_dir, tmp_path, "fixed")
    base = marker_logprob(tiny_llama_dir)
    assert marker_logprob(tiny_llama_dir, run / "adapters" / "b") - base < 1.0  # nats over ~10 tokens
    per = read_run_manifest(run)["training"]["per_objective"]
    assert per["a"]["lists"] == 8 and per["b"]["lists"] == 8


def test_the_old_rule_imitates_the_marker_and_fails_the_check(tiny_llama_dir, tmp_path, monkeypatch):
    """The check above can fail: with a missing score read as 0 and every list given to every adapter,
    b's adapter is fine-tuned on the marker and its log-probability rises by far more than the bar."""
    import lwdpo_edge.train.soup as soup
    import lwdpo_edge.train.trainer as trainer

    def missing_as_zero(scores, lam, mask):
        weighted = (lam[:, :, None] * torch.nan_to_num(scores, nan=0.0)).sum(dim=1)
        return weighted.masked_fill(~mask, float("-inf")).argmax(dim=-1)

    monkeypatch.setattr(trainer, "lambda_best_index", missing_as_zero)
    monkeypatch.setattr(soup, "lists_for", lambda records, objective, objectives: list(records))
    run = train_partial_soup(tiny_llama_dir, tmp_path, "old")
    assert marker_logprob(tiny_llama_dir, run / "adapters" / "b") - marker_logprob(tiny_llama_dir) > 5.0


def test_an_objective_no_list_can_teach_is_refused(tiny_llama_dir, tmp_path):
    from lwdpo_edge.train.recipe import run_training

    rows = [{"prompt": q,
             "responses": [{"text": t, "scores": {"a": float(j), "b": 1.0}} for j, t in enumerate(ANSWERS)]}
            for q in QUESTIONS]  # b ties on every list
    data = tmp_path / "tied.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=r"no list can train objective\(s\) b"):
        run_training(tiny_config(tiny_llama_dir, data, tmp_path / "run", objectives="a,b"))


def test_training_reports_lists_per_objective(tiny_llama_dir, tmp_path, capsys):
    from lwdpo_edge.contract import read_run_manifest
    from lwdpo_edge.train.recipe import run_training

    data = write_partial_data(tmp_path / "partial.jsonl")
    run = run_training(tiny_config(tiny_llama_dir, data, tmp_path / "run", max_steps=1, objectives="a,b"))
    assert "lists per objective: a 8, b 8" in capsys.readouterr().err
    assert read_run_manifest(run)["training"]["lists_per_objective"] == {"a": 8, "b": 8}
    assert math.isfinite(json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["loss"])
