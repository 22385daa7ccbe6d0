"""Slow: the real default model (SmolLM2-135M-Instruct, QLoRA) and the shipped data, a few steps.

    .venv/bin/python -m pytest -m slow tests/test_smoke_default.py
"""

import pytest

from train_helpers import read_metrics


@pytest.mark.slow
def test_qlora_run_on_the_default_model_and_data(tmp_path):
    from lwdpo_edge.contract import read_run_manifest
    from lwdpo_edge.generate import generate_answer, load_run
    from lwdpo_edge.train.config import LambdaDPOConfig
    from lwdpo_edge.train.recipe import run_training

    config = LambdaDPOConfig(output_dir=str(tmp_path / "run"), qlora=True, max_steps=3, per_device_train_batch_size=1,
                             lambdas_per_prompt=2, save_steps=100, max_response_tokens=96, use_cpu=True,
                             conditioning="header", sft_warmup_steps=0)
    run = run_training(config)
    manifest = read_run_manifest(run)
    assert manifest["objectives"] == ["helpfulness", "conciseness", "readability"]
    assert manifest["training"]["records"] == 298  # 356 lists minus 58 held out
    rows = read_metrics(run)
    assert len(rows) == 3 and all(0 < r["loss"] < 5 for r in rows)

    model, tokenizer, manifest = load_run(run)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    for lam in ({"conciseness": 1.0}, {"helpfulness": 1.0}):
        answer = generate_answer(model, tokenizer, question, {**dict.fromkeys(manifest["objectives"], 0.0), **lam},
                                 manifest["objectives"], max_new_tokens=24)
        assert "Paris" in answer
