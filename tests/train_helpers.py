"""Small ranked-list datasets and configs shared by the training tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

OBJECTIVES = ["helpfulness", "conciseness"]

QUESTIONS = [
    "Why is the sky blue?", "How do I boil an egg?", "What is a prime number?", "Name a fast animal.",
    "How do plants make food?", "What is gravity?", "Give me a tip for sleeping well.", "What is an atom?",
]
ANSWERS = [
    "Yes.", "It depends on many things, and there are several aspects worth considering in detail.",
    "Light scatters.", "Boil it for nine minutes, then cool it in cold water.",
    "A number with exactly two divisors.", "The cheetah.", "Sunlight turns water and air into sugar.",
    "Mass attracts mass.", "Go to bed at the same time every night and keep the room dark.",
]


def write_dataset(path: Path, n_prompts: int = 8, seed: int = 0, ragged: bool = True) -> Path:
    """A JSONL file of lists with 2-4 candidates scored on two conflicting objectives."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n_prompts):
            n = rng.choice([2, 3, 4]) if ragged else 4
            answers = rng.sample(ANSWERS, n)
            responses = [
                {"text": a,
                 "scores": {"helpfulness": float(len(set(a.split()))), "conciseness": -float(len(a.split()))}}
                for a in answers
            ]
            f.write(json.dumps({"id": i, "prompt": QUESTIONS[i % len(QUESTIONS)], "responses": responses}) + "\n")
    return path


def tiny_config(model_dir: Path, data: Path, output: Path, **overrides):
    from lwdpo_edge.train.config import LambdaDPOConfig

    settings = dict(
        model=str(model_dir), data=str(data), output_dir=str(output), max_steps=4, save_steps=2,
        per_device_train_batch_size=2, learning_rate=5e-3, warmup_steps=0, lr_scheduler_type="constant",
        logging_steps=1, seed=7, lora_r=4, lora_alpha=8, max_response_tokens=32, use_cpu=True,
        activation_checkpointing=False,
        # The listwise machinery itself: one adapter, header conditioning, no SFT parts, unless a test asks.
        conditioning="header", sft_warmup_steps=0, sft_weight=0.0,
    )
    settings.update(overrides)
    return LambdaDPOConfig(**settings)


def read_metrics(run_dir: Path) -> list[dict]:
    """The per-step training rows of metrics.jsonl (the final summary row has no 'loss')."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [row for row in rows if "loss" in row]
