"""`lwdpo-edge train --output RUN --feedback FILE` (train/user_objective.py): judgements written by the app's
code path add a `user` adapter to a soup run; the contract, runtime, app, serve and a GGUF export then mix it.

The run is export_helpers' tiny soup (a random llama base; helpfulness memorised ANSWERS to the probe
prompts, conciseness SHORT). The judgements always rank a third answer, USER, first; the `user` vertex
must then make USER far more likely than the other vertices do (teacher-forced log-probs, not free-running
text, so the check holds on any CPU)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from export_helpers import ANSWERS, SHORT, tiny_soup_run
from lwdpo_edge.apps.alternatives import Candidate
from lwdpo_edge.contract import read_run_manifest, write_run_manifest
from lwdpo_edge.export.verify import PROBE_PROMPTS
from lwdpo_edge.feedback_data import FeedbackLog, judgement_record
from lwdpo_edge.train.recipe import run_training
from lwdpo_edge.train.setup import TrainSetupError
from train_helpers import tiny_config

USER = "Purple, always purple."
LAM = {"helpfulness": 0.5, "conciseness": 0.5}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def write_feedback(path, repeats: int = 2):
    """repeats x 3 judgements through the app's code path (USER first), then a malformed line and a line
    without a user score; returns (file, line numbers of the two bad lines)."""
    log = FeedbackLog(path)
    for r in range(repeats):
        for k, prompt in enumerate(PROBE_PROMPTS):
            candidates = [Candidate(text, seed, LAM) for seed, text in enumerate((ANSWERS[k], SHORT[k], USER))]
            ranks = [2, 3, 1] if r % 2 == 0 else [3, 2, 1]
            log.append(judgement_record([{"role": "user", "content": prompt}], candidates, ranks, lam=LAM, strength=1.0,
                                        settings={"temperature": 0.8}, model_info={"path": "x"}, judgement="order"))
    bad = {"prompt": "Hi", "responses": [{"text": "a", "scores": {"helpfulness": 1}},
                                         {"text": "b", "scores": {"helpfulness": 0}}]}
    with open(path, "a") as f:
        f.write('{"prompt": "half a line\n' + json.dumps(bad) + "\n")
    n = 3 * repeats
    return path, (n + 1, n + 2)


def user_logp(model, k: int, lam) -> float:
    """log p(USER | probe prompt k) under `lam`, teacher-forced through the runtime."""
    messages = [{"role": "user", "content": PROBE_PROMPTS[k]}]
    ids = model.encode(USER)
    logits = model.next_token_logits(messages, ids, lam)  # (len(ids) + 1, V)
    logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    return float(sum(logp[i, token] for i, token in enumerate(ids)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smollm2_tokenizer):
    source = tiny_soup_run(tmp_path_factory, smollm2_tokenizer)
    root = tmp_path_factory.mktemp("user-objective")
    run = root / "run"
    shutil.copytree(source, run)
    before = {p.relative_to(run): p.read_bytes() for p in (run / "adapters").rglob("*") if p.is_file()}
    feedback, bad_lines = write_feedback(root / "feedback.jsonl")
    base = read_run_manifest(run)["base_model"]["path"]
    config = tiny_config(base, "default", run, feedback=str(feedback), feedback_min=6, max_steps=24, learning_rate=5e-3,
                         sft_warmup_steps=16, sft_weight=0.5, logging_steps=4, save_steps=100)
    return run_training(config), before, feedback, bad_lines


def test_feedback_adds_a_user_adapter_and_keeps_the_others(trained, capsys):
    run, before, feedback, (malformed, unscored) = trained
    manifest = read_run_manifest(run)
    assert manifest["objectives"] == ["helpfulness", "conciseness", "user"]
    assert manifest["adapters"]["user"] == "adapters/user" and manifest["conditioning"] == "soup"
    assert manifest["lambda_default"] == pytest.approx({"helpfulness": 1 / 3, "conciseness": 1 / 3, "user": 1 / 3})
    summary = manifest["training"]["per_objective"]["user"]
    assert summary["judgements"] == 6 and summary["steps"] == 24 and summary["feedback"] == str(feedback)
    for path, data in before.items():  # the other adapters are not retrained
        assert (run / path).read_bytes() == data, path
    user_config = json.loads((run / "adapters" / "user" / "adapter_config.json").read_text())
    sibling = json.loads((run / "adapters" / "helpfulness" / "adapter_config.json").read_text())
    assert (user_config["r"], user_config["lora_alpha"]) == (sibling["r"], sibling["lora_alpha"]) == (8, 16)
    assert sorted(user_config["target_modules"]) == sorted(sibling["target_modules"])


def test_bad_lines_are_reported_as_file_line_and_skipped(tmp_path, capsys):
    from lwdpo_edge.train.user_objective import load_feedback

    feedback, (malformed, unscored) = write_feedback(tmp_path / "f.jsonl", repeats=1)
    records = load_feedback(str(feedback), 3)
    assert len(records) == 3 and all(set(r.responses[0].scores) == {"user"} for r in records)
    err = capsys.readouterr().err
    assert f"skipped {feedback}:{malformed}: row: malformed JSON" in err
    assert f"skipped {feedback}:{unscored}: responses: fewer than 2 responses with a 'user' score" in err


def test_the_runtime_app_and_serve_mix_the_user_slider(trained):
    from fastapi.testclient import TestClient

    from lwdpo_edge import load_model
    from lwdpo_edge.apps.chat import build_app
    from lwdpo_edge.apps.chat_logic import presets
    from lwdpo_edge.apps.serve import create_app

    run = trained[0]
    with load_model(run, threads=1) as model:
        assert model.objectives == ["helpfulness", "conciseness", "user"]
        for k in range(len(PROBE_PROMPTS)):
            at_user = user_logp(model, k, {"user": 1})
            # learned: per token, the base (adapters off) gives ~ -11.2 (~ ln 49152), the trained vertex ~ -4.6
            assert at_user / len(model.encode(USER)) > -8.0
            # the user vertex wants USER far more than either other vertex or the centre does
            for other in ({"helpfulness": 1}, {"conciseness": 1}, {"helpfulness": 1, "conciseness": 1}):
                assert at_user > user_logp(model, k, other) + 5.0, (k, other)
        assert "user" in presets(model)
        demo = build_app(model, trained[0].parent / "chats", feedback_file=trained[0].parent / "fb.jsonl")
        ids = {c.get("props", {}).get("elem_id") for c in demo.config["components"]}
        assert {"lambda-helpfulness", "lambda-conciseness", "lambda-user"} <= ids
        demo.close()
        card = TestClient(create_app(model)).get("/v1/models").json()["data"][0]
        assert card["lwdpo"]["objectives"] == ["helpfulness", "conciseness", "user"]


def test_a_gguf_export_carries_and_applies_the_user_slider(trained, tmp_path):
    from lwdpo_edge import load_model
    from lwdpo_edge.export.pipeline import export_run
    from lwdpo_edge.gguf_keys import read_lwdpo_metadata

    exported = export_run(trained[0], "gguf", quant="f16", output=tmp_path, show_progress=False)
    assert exported.report.passed, exported.report.summary()
    assert read_lwdpo_metadata(exported.output)["objectives"] == ["helpfulness", "conciseness", "user"]
    assert (tmp_path / f"{exported.output.stem}.user.lora.gguf").is_file()
    with load_model(exported.output, threads=1) as model:
        assert model.objectives == ["helpfulness", "conciseness", "user"]
        for k in range(len(PROBE_PROMPTS)):
            assert user_logp(model, k, {"user": 1}) > user_logp(model, k, {"helpfulness": 1}) + 5.0


def test_too_few_empty_or_header_runs_get_one_clear_line(trained, tmp_path):
    from typer.testing import CliRunner

    from lwdpo_edge.cli import app

    run = trained[0]
    few, _ = write_feedback(tmp_path / "few.jsonl", repeats=1)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    config = dict(feedback_min=20)
    with pytest.raises(TrainSetupError, match=r"3 judgement\(s\) \(2 bad line\(s\) skipped.*at least 20"):
        run_training(tiny_config(run, "default", run, feedback=str(few), **config))
    result = CliRunner().invoke(app, ["train", "--output", str(run), "--feedback", str(empty)])
    assert result.exit_code == 2  # rich wraps the line to the terminal's width
    assert (f"error: {empty}: 0 judgement(s); training a 'user' slider needs at least 20"
            in " ".join(result.output.split()))
    header = tmp_path / "header-run"
    write_run_manifest(header, ["helpfulness"], {"spec": "x", "path": "x"}, {}, conditioning="header")
    with pytest.raises(TrainSetupError, match="adapter-soup run; this run's conditioning is 'header'"):
        run_training(tiny_config(run, "default", header, feedback=str(few), **config))
    assert read_run_manifest(run)["objectives"][-1] == "user"  # nothing was changed by the refusals
