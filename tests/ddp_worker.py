"""One rank of the 2-process DDP test: train, then dump this rank's trainable parameters.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py MODEL DATA OUT
"""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import tiny_config  # noqa: E402

from lwdpo_edge.train.recipe import run_training  # noqa: E402
from lwdpo_edge.train.trainer import LambdaDPOTrainer  # noqa: E402

model_dir, data, out = sys.argv[1:4]
trained = {}
original_train = LambdaDPOTrainer.train


def train_and_keep(self, *args, **kwargs):
    result = original_train(self, *args, **kwargs)
    trained.update({n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad})
    return result


LambdaDPOTrainer.train = train_and_keep
config = tiny_config(model_dir, data, Path(out) / "run", max_steps=3, save_steps=100, ddp_backend="gloo",
                     per_device_train_batch_size=1, learning_rate=1e-2)
run_training(config)
rank = int(os.environ["RANK"])
torch.save({"world_size": int(os.environ["WORLD_SIZE"]), "params": trained}, Path(out) / f"rank{rank}.pt")
