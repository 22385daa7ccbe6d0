"""How much faster, and how far off, is a bf16 forward pass than fp32 on this CPU?

    .venv/bin/python bench/bf16_forward.py --threads 2 --repeats 3

The held-out ranking of `lwdpo-edge eval` is one forward pass per list and lambda point, in fp32.
This times the default model's forward on a batch of candidate-sized rows under fp32 and under
torch's CPU autocast to bfloat16 (AMX or AVX512-BF16 kernels where the CPU has them), alternating
the two to cancel drift in the machine's speed, and prints the ratio and the log-prob error that
bf16 would add to every candidate's score.
"""

from __future__ import annotations

import argparse
import statistics
import time


def vector_flags() -> str:
    """The CPU's AVX2 / AVX-512 / AMX flags: which kernels a bf16 matmul can use."""
    from _common import cpu_flags

    return " ".join(sorted(f for f in cpu_flags() if f == "avx2" or f.startswith(("avx512", "amx")))) or "unknown"


def forward_logps(model, tokens, bf16: bool):
    """(seconds, (B, T, V) log-probs in fp32) of one forward pass."""
    import torch

    started = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logps = model(tokens).logits.float().log_softmax(-1)  # (B, T, V)
    return time.perf_counter() - started, logps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=4, help="rows per batch (candidates of one list)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per row")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM

    from lwdpo_edge.models import resolve_model

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("default"), dtype=torch.float32).eval()
    tokens = torch.randint(0, model.config.vocab_size, (args.rows, args.tokens))  # (B, T)
    forward_logps(model, tokens, bf16=True)  # first call builds the bf16 kernels' state
    _, reference = forward_logps(model, tokens, bf16=False)
    seconds = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for name in seconds:
            took, logps = forward_logps(model, tokens, bf16=name == "bf16")
            seconds[name].append(took)
    error = (logps - reference).abs()  # (B, T, V), the last bf16 pass
    sequence_error = (logps - reference).gather(-1, tokens.unsqueeze(-1)).sum(dim=(1, 2)).abs()  # (B,)
    result = {"cpu": vector_flags(), "threads": args.threads,
              "fp32_s": statistics.median(seconds["fp32"]), "bf16_s": statistics.median(seconds["bf16"]),
              "max_token_error": float(error.max()), "mean_token_error": float(error.mean()),
              "max_row_error": float(sequence_error.max())}
    result["speedup"] = result["fp32_s"] / result["bf16_s"]
    print(f"CPU flags: {result['cpu']}; {args.threads} threads; batch {args.rows} x {args.tokens} tokens")
    print(f"fp32 {result['fp32_s']:.2f} s, bf16 {result['bf16_s']:.2f} s (medians of {args.repeats}): "
          f"bf16 is {result['speedup']:.2f}x faster")
    print(f"bf16 log-prob error: per token max {result['max_token_error']:.3f}, mean {result['mean_token_error']:.4f}; "
          f"per row (sum over {args.tokens} tokens) max {result['max_row_error']:.3f}")
    return result


if __name__ == "__main__":
    main()
