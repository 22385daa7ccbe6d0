"""What a list costs: lambda-DPO's listwise step (new path vs old) against TRL DPO on pairs, side by side.

    .venv/bin/python bench/listwise_cost.py --prompts 4 --threads 2            # default model, ~15 min
    .venv/bin/python bench/listwise_cost.py --shape 1b --prompts 1 --threads 2 # 1B-class memory arms

Every arm is a fresh child process (its own peak RSS), on the same lists: the first `--prompts`
training lists of the shipped data, each cut to its first 4 candidates, no lambda header (so TRL sees
the same prompt text and the reference cache can apply), LoRA r=16 on all projections, 128 response
tokens at most, the same seed. Arms:

  lwdpo            `lwdpo-edge train` defaults: shared prompt, chunked LM head, reference cache
  lwdpo-nocache    the same without the reference cache (every step computes the reference)
  lwdpo-old        --no-shared-prompt --no-chunked-logps --no-cache-reference-logps (the old path)
  trl-all-pairs    TRL DPOTrainer on all 6 pairs of each list, 2 pairs per step
  trl-best-vs-rest TRL DPOTrainer on the 3 pairs best-vs-each-other (by mean z-score), 2 pairs per step
  trl-one-pair     TRL DPOTrainer on 1 pair (best vs worst) of the same prompts, 1 pair per step

lwdpo arms run 2 epochs over the lists (one list per step) and report seconds per prompt for the
first epoch (reference not cached yet; step 1 excluded as warm-up) and the second (cached). TRL arms
run 1 epoch (TRL recomputes its reference every step) and report seconds per prompt = seconds per
step x steps per list, step 1 excluded. `--shape 1b` swaps in a Llama-3.2-1B-shaped model with random
weights (hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP 8192, SmolLM2's 49k vocabulary, tied
embeddings: 1.07B parameters): memory and time need no trained weights.

The parity line (new path vs old path, one list, same LoRA weights) prints the max abs difference
of the loss and of every LoRA gradient.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_dpo_config, machine_line, peak_rss_mb, trl_rows

LWDPO_ARMS = {"lwdpo": {}, "lwdpo-nocache": {"cache_reference_logps": False},
              "lwdpo-old": {"shared_prompt": False, "chunked_logps": False, "cache_reference_logps": False}}
TRL_ARMS = {"trl-all-pairs": ("all-pairs", 2), "trl-best-vs-rest": ("best-vs-rest", 2),
            "trl-one-pair": ("best-vs-worst", 1)}
ONE_B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
             num_key_value_heads=8, tie_word_embeddings=True, max_position_embeddings=8192, rope_theta=500000.0)


def bench_lists(prompts: int, out: Path) -> Path:
    """The first `prompts` training lists, 4 candidates each, as a data file."""
    from lwdpo_edge.data import load_records
    from lwdpo_edge.data.loaders import save_records

    records = [r for r in load_records("default") if r.meta.get("split") != "heldout"][:prompts]
    for record in records:
        record.responses = record.responses[:4]
    return save_records(records, out / "lists.jsonl")


def one_b_model(out: Path) -> Path:
    """A random-weight 1B-class llama folder with the default model's tokenizer (built once per run)."""
    import shutil

    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from lwdpo_edge.models import resolve_model

    source = resolve_model("default")
    config = AutoConfig.from_pretrained(source)
    for key, value in ONE_B.items():
        setattr(config, key, value)
    config.head_dim = config.hidden_size // config.num_attention_heads
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    for path in source.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(path, out / path.name)
    return out


def lwdpo_child(arm: str, model: str, data: Path, prompts: int, qlora: bool, threads: int, out: Path) -> dict:
    from lwdpo_edge.train.config import LambdaDPOConfig
    from lwdpo_edge.train.recipe import run_training

    config = LambdaDPOConfig(
        output_dir=str(out / "run"), model=model, data=str(data), max_steps=2 * prompts, num_train_epochs=2,
        per_device_train_batch_size=1, qlora=qlora, save_steps=10_000, max_response_tokens=128, use_cpu=True,
        seed=0, threads=threads, conditioning="header", condition_on_lambda=False, lambdas_per_prompt=1,
        sft_warmup_steps=0, sft_weight=0.0, **LWDPO_ARMS[arm])
    run = run_training(config)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    times = [r["time"] for r in rows]
    step = [b - a for a, b in zip(times, times[1:])]  # step i+1's duration
    first, second = step[: prompts - 1], step[prompts - 1:]
    return {"s_per_prompt": statistics.mean(first) if first else float("nan"),
            "s_per_prompt_cached": statistics.mean(second) if second else float("nan"),
            "losses": [r["loss"] for r in rows]}


def trl_child(arm: str, model: str, data: Path, qlora: bool, threads: int, out: Path) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOTrainer

    from lwdpo_edge.data import load_records
    from lwdpo_edge.models import LoraSettings, load_policy, load_tokenizer, resolve_model

    mode, per_step = TRL_ARMS[arm]
    records = load_records(str(data))
    rows = trl_rows(records, mode)
    model_dir = resolve_model(model)
    stamps = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = bench_dpo_config(out / "trl", max_length=512, per_step=per_step, steps=len(rows) // per_step)
    trainer = DPOTrainer(model=load_policy(model_dir, qlora=qlora, lora=LoraSettings()), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=load_tokenizer(model_dir),
                         callbacks=[Stamp()])
    runtime = trainer.train().metrics["train_runtime"]
    steps = [b - a for a, b in zip(stamps, stamps[1:])]  # step 1 excluded (warm-up) when there are more
    step = statistics.mean(steps) if steps else runtime / len(stamps)
    return {"s_per_prompt": step * len(rows) / per_step / len(records), "pairs_per_list": len(rows) / len(records)}


def parity_child(model: str, data: Path, threads: int) -> dict:
    """Loss and LoRA gradients of one list through the old path and the new path, same weights."""
    import torch

    from lwdpo_edge.batching import encode_listwise, encode_listwise_packed
    from lwdpo_edge.data import load_records
    from lwdpo_edge.logprobs import scored_sequence_logps, sequence_logps
    from lwdpo_edge.models import LoraSettings, load_policy, load_tokenizer, resolve_model
    from lwdpo_edge.objective import lambda_dpo_loss

    model_dir = resolve_model(model)
    torch.manual_seed(0)  # LoRA A's init and B below: the same weights every run
    tokenizer, policy = load_tokenizer(model_dir), load_policy(model_dir, qlora=False, lora=LoraSettings())
    for name, p in policy.named_parameters():  # LoRA B is zero at init: make the policy differ from the reference
        if "lora_B" in name:
            p.data.normal_(0, 0.02)
    records, objectives = load_records(str(data))[:1], ["helpfulness", "conciseness", "readability"]
    lam = [{"helpfulness": 0.5, "conciseness": 0.3, "readability": 0.2}]

    def grid(flat, batch):
        return (flat.new_zeros(batch.candidate_mask.numel()).index_put((batch.candidate_index,), flat)
                .view(batch.candidate_mask.shape))

    def old():
        b = encode_listwise(records, lam, tokenizer, objectives, condition_on_lambda=False, max_response_tokens=128)
        return b, lambda: grid(sequence_logps(policy, b.input_ids, b.attention_mask, b.completion_mask), b)

    def new():
        b = encode_listwise_packed(records, lam, tokenizer, objectives, condition_on_lambda=False,
                                   max_response_tokens=128)
        return b, lambda: grid(
            scored_sequence_logps(policy, b.rows.model_inputs(), b.rows.scored)[b.sequence_of_candidate], b)

    results = {}
    for name, path in (("old", old), ("new", new)):
        batch, logps = path()
        policy.zero_grad()
        with torch.no_grad(), policy.disable_adapter():
            reference = logps()
        loss, _ = lambda_dpo_loss(logps(), reference, batch.scores, batch.lam, beta=0.1, mask=batch.candidate_mask)
        loss.backward()
        results[name] = (loss.item(), {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None})
    grads_old, grads_new = results["old"][1], results["new"][1]
    return {"loss_old": results["old"][0], "loss_new": results["new"][0],
            "loss_diff": abs(results["old"][0] - results["new"][0]),
            "grad_diff": max((grads_old[n] - grads_new[n]).abs().max().item() for n in grads_old),
            "grad_max": max(g.abs().max().item() for g in grads_old.values()), "n_grads": len(grads_old)}


def child(args) -> dict:
    import torch

    import lwdpo_edge  # noqa: F401  (telemetry off)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.child == "parity":
        result = parity_child(args.model, args.data, args.threads)
    elif args.child in LWDPO_ARMS:
        result = lwdpo_child(args.child, args.model, args.data, args.prompts, args.qlora, args.threads, out)
    else:
        result = trl_child(args.child, args.model, args.data, args.qlora, args.threads, out)
    return {**result, "arm": args.child, "qlora": args.qlora, "peak_rss_mb": peak_rss_mb()}


def measure(arm: str, qlora: bool, model: str, data: Path, prompts: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--child", arm, "--model", model, "--data", str(data), "--prompts",
               str(prompts), "--threads", str(threads), "--out", tmp] + (["--qlora"] if qlora else [])
        started = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{arm} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {arm}{' (QLoRA)' if qlora else ''}: {time.time() - started:.0f} s, {json.dumps(result)}", flush=True)
        return result


def report(results: dict, shape: str) -> None:
    def r(arm, qlora=False):
        return results.get((arm, qlora))

    print(f"\n| arm ({shape}) | s/prompt (1st epoch) | s/prompt (reference cached) | peak RSS MB |")
    print("|---|---|---|---|")
    for (arm, qlora), res in results.items():
        if arm == "parity":
            continue
        cached = res.get("s_per_prompt_cached")
        print(f"| {arm}{' QLoRA' if qlora else ''} | {res['s_per_prompt']:.2f} | "
              f"{'' if cached is None else f'{cached:.2f}'} | {res['peak_rss_mb']:.0f} |")
    ratios = []
    if r("lwdpo", True) and r("lwdpo"):
        ratios.append(("peak RSS, QLoRA / fp32 LoRA (lwdpo)",
                       r("lwdpo", True)["peak_rss_mb"] / r("lwdpo")["peak_rss_mb"]))
    if r("lwdpo") and r("trl-one-pair"):
        ratios.append(("peak RSS, lwdpo list of 4 / TRL one pair",
                       r("lwdpo")["peak_rss_mb"] / r("trl-one-pair")["peak_rss_mb"]))
    for trl in ("trl-all-pairs", "trl-best-vs-rest"):
        if r("lwdpo") and r(trl):
            ratios.append((f"s/prompt, {trl} / lwdpo (1st epoch)", r(trl)["s_per_prompt"] / r("lwdpo")["s_per_prompt"]))
            ratios.append((f"s/prompt, {trl} / lwdpo (cached)",
                           r(trl)["s_per_prompt"] / r("lwdpo")["s_per_prompt_cached"]))
    if r("lwdpo") and r("lwdpo-old"):
        ratios.append(("s/prompt, lwdpo (1st epoch) / lwdpo-old",
                       r("lwdpo")["s_per_prompt"] / r("lwdpo-old")["s_per_prompt"]))
        ratios.append(("peak RSS, lwdpo / lwdpo-old", r("lwdpo")["peak_rss_mb"] / r("lwdpo-old")["peak_rss_mb"]))
    if r("lwdpo-nocache") and r("lwdpo"):
        ratios.append(("s/prompt, lwdpo cached / lwdpo-nocache",
                       r("lwdpo")["s_per_prompt_cached"] / r("lwdpo-nocache")["s_per_prompt_cached"]))
    for name, value in ratios:
        print(f"{name}: {value:.2f}")
    parity = r("parity")
    if parity:
        print(f"parity new vs old path (one list, fp32): loss {parity['loss_old']:.6f} vs {parity['loss_new']:.6f}, "
              f"|d loss| {parity['loss_diff']:.2e}, max |d grad| {parity['grad_diff']:.2e} over {parity['n_grads']} "
              f"LoRA tensors (max |grad| {parity['grad_max']:.2e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("default", "1b"), default="default")
    parser.add_argument("--prompts", type=int, default=4, help="lists in the bench data (4 candidates each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", default=None, help="comma-separated subset (default: all for the shape)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--qlora", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "build-1b":
        one_b_model(Path(args.out))
        return
    if args.child:
        print(json.dumps(child(args)))
        return
    print(f"machine: {machine_line(args.threads)}")
    every_arm = [("parity", False), ("lwdpo", False), ("lwdpo", True), ("lwdpo-old", False), ("lwdpo-old", True),
                 ("lwdpo-nocache", False), ("trl-one-pair", False), ("trl-all-pairs", False),
                 ("trl-best-vs-rest", False)]
    # The 1B shape runs the memory arms by default (the pair arms cost minutes each there); --arms picks any.
    default_plan = (every_arm if args.shape == "default"
                    else [("lwdpo", False), ("lwdpo", True), ("trl-one-pair", False)])
    wanted = set(args.arms.split(",")) if args.arms else None
    known = list(dict.fromkeys(arm for arm, _ in every_arm))
    if wanted and wanted - set(known):
        parser.error(f"--arms: unknown {sorted(wanted - set(known))}; choose from {', '.join(known)}")
    plan = default_plan if wanted is None else [(a, q) for a, q in every_arm if a in wanted]
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        data = bench_lists(args.prompts, Path(tmp))
        model = "default"
        if args.shape == "1b":  # built in a child: this parent stays small (see _common.peak_rss_mb)
            model = str(Path(tmp) / "one_b")
            subprocess.run([sys.executable, __file__, "--child", "build-1b", "--out", model], check=True,
                           capture_output=True)
        print(f"{args.shape} model, {args.prompts} lists of 4, {args.threads} threads; arms one at a time", flush=True)
        results = {(arm, qlora): measure(arm, qlora, model, data, args.prompts, args.threads) for arm, qlora in plan}
    report(results, args.shape)
    print(f"total bench time {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
