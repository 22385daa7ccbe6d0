"""`lwdpo-edge train`: which training recipe a config runs. Each recipe is one file, read top to bottom.

    train/soup.py            the default (--conditioning soup): one adapter per objective, mixed at inference
    train/header.py          --conditioning header: one adapter, lambda sampled per step and written in the prompt
    train/user_objective.py  --feedback FILE: one more adapter, `user`, for an existing soup run

What they share is in train/setup.py.
"""

from __future__ import annotations

from pathlib import Path

from lwdpo_edge.contract import Conditioning
from lwdpo_edge.train import header, soup, user_objective
from lwdpo_edge.train.config import LambdaDPOConfig


def run_training(config: LambdaDPOConfig) -> Path:
    """Train and write the run folder; returns it."""
    if config.feedback:
        return user_objective.run(config)
    if config.conditioning == Conditioning.SOUP:
        return soup.run(config)
    return header.run(config)
