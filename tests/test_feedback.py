"""The chat app's feedback file (lwdpo_edge/feedback_data.py) and alternatives (apps/alternatives.py), no UI."""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

from feedback_fake import SeededSoup
from lwdpo_edge.apps.alternatives import (
    SEEDS,
    SPREAD,
    Candidate,
    alternative_lambdas,
    generate_alternatives,
    last_exchange,
)
from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.data.validate import validate_path
from lwdpo_edge.feedback_data import FeedbackError, FeedbackLog, check_ranks, judgement_record, ranks_from_best

PROMPT = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
          {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a fruit."}]
LAM = {"helpfulness": 0.5, "conciseness": 0.3, "readability": 0.2}


def record(ranks=(2, 1, 3), judgement="order"):
    candidates = [Candidate(f"candidate {i}", 10 + i, LAM) for i in range(len(ranks))]
    return judgement_record(PROMPT, candidates, ranks, lam=LAM, strength=2.5, judgement=judgement,
                            settings={"temperature": 0.8, "top_p": 0.9, "max_tokens": 64},
                            model_info={"path": "/m/x.gguf", "format": "gguf", "conditioning": "soup"})


def test_a_judgement_is_a_record_that_validate_and_the_loader_accept(tmp_path):
    log = FeedbackLog(tmp_path / "data" / "feedback.jsonl")
    assert log.count() == 0
    assert log.append(record()) == 1 and log.append(record((1, 2, 2), "best")) == 2
    assert log.count() == 2
    report = validate_path(log.path)
    assert report.ok and report.n_records == 2 and report.objectives == ["user"]
    first, second = load_records(log.path)
    assert first.prompt == PROMPT  # the conversation, system prompt and earlier turns included
    assert [r.scores for r in first.responses] == [{"user": -2.0}, {"user": -1.0}, {"user": -3.0}]
    assert [r.scores["user"] for r in second.responses] == [-1.0, -2.0, -2.0]  # best, the rest tied
    assert [r.meta["seed"] for r in first.responses] == [10, 11, 12]
    row = json.loads(log.path.read_text().splitlines()[0])
    assert row["objective"] == "user" and row["lambda"] == LAM and row["strength"] == 2.5
    assert (row["model"]["path"] == "/m/x.gguf" and row["created"].endswith("+00:00")
            and row["source"] == "chat-feedback")
    result = CliRunner().invoke(__import__("lwdpo_edge.cli", fromlist=["app"]).app, ["data", "validate", str(log.path)])
    assert result.exit_code == 0, result.output


def test_rankings_that_say_nothing_are_refused():
    assert ranks_from_best(3, 2) == [2, 2, 1]
    assert check_ranks(["1", 2, 2], 3) == [1, 2, 2]
    for bad, message in [((1, 1, 1), "same rank"), ((2, 3, 3), "ranked 1"), ((1, 4, 2), "in 1..3"),
                         ((1, 2), "2 ranks")]:
        with pytest.raises(FeedbackError, match=message):
            check_ranks(bad, 3)
    with pytest.raises(FeedbackError, match="candidate index"):
        ranks_from_best(2, 2)
    with pytest.raises(FeedbackError, match="at least 2 candidates"):
        judgement_record(PROMPT, [Candidate("x", 0, LAM)], [1], lam=LAM, strength=None, settings={},
                         model_info={}, judgement="best")


def test_concurrent_appends_lose_nothing_and_never_leave_half_a_line(tmp_path):
    log = FeedbackLog(tmp_path / "feedback.jsonl")
    log.path.write_text(json.dumps(record()))  # a hand-edited file without its final newline
    threads = [threading.Thread(target=lambda: [log.append(record()) for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = log.path.read_text().splitlines()
    assert len(lines) == 21 == log.count()
    assert all(json.loads(line)["objective"] == "user" for line in lines)
    # no temp files left
    assert sorted(p.name for p in tmp_path.iterdir()) == [".feedback.jsonl.lock", "feedback.jsonl"]


def test_alternatives_differ_by_seed_or_spread_over_lambda():
    model = SeededSoup(strength=2.0)
    lam = model.validate_lambda(LAM)
    same = generate_alternatives(model, PROMPT, lam, n=3, mode=SEEDS, temperature=0.0, top_p=0.9, max_tokens=32,
                                 strength=2.0, seed=5)
    assert [c.seed for c in same] == [5, 6, 7] and len({c.text for c in same}) == 3
    assert all(c.lam == lam for c in same)
    assert {s["temperature"] for s in model.settings} == {0.8}  # greedy would repeat one answer
    assert {s["strength"] for s in model.settings} == {2.0}
    spread = alternative_lambdas(model, lam, 4, SPREAD)
    assert spread[0] == lam
    assert spread[1] == {"helpfulness": 0.75, "conciseness": 0.15, "readability": 0.10}  # halfway to helpfulness
    assert spread[2]["conciseness"] == 0.65 and spread[3]["readability"] == 0.60
    with pytest.raises(ValueError, match="2 to 4"):
        generate_alternatives(model, PROMPT, lam, n=5, temperature=0.7, top_p=1.0, max_tokens=8)
    assert last_exchange(PROMPT + [{"role": "assistant", "content": "A pear."}]) == 3
    assert last_exchange([{"role": "user", "content": "x"}]) is None
