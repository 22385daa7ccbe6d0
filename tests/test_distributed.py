"""Two real processes (DDP over gloo on CPU) end a run with identical adapter weights."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from train_helpers import write_dataset


def test_two_process_ddp_keeps_ranks_in_sync(tiny_llama_dir, tmp_path):
    data = write_dataset(tmp_path / "lists.jsonl", n_prompts=8)
    worker = Path(__file__).parent / "ddp_worker.py"
    # torchrun really starts 2 processes (`accelerate launch --cpu --num_processes 2` silently runs one).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(worker), str(tiny_llama_dir), str(data), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    params0, params1 = ranks[0]["params"], ranks[1]["params"]
    assert params0.keys() == params1.keys() and len(params0) > 0
    for name in params0:
        torch.testing.assert_close(params0[name], params1[name], rtol=0, atol=0, msg=name)
    # ...and they trained: LoRA B moved off its zero init.
    assert max(p.abs().max().item() for n, p in params0.items() if "lora_B" in n) > 0
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
