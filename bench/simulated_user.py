"""Your own slider end to end with a simulated user: judgements in the app's code path -> `train --feedback` -> a
`user` slider that steers toward a rule the project's raters do not know.

    .venv/bin/python bench/simulated_user.py --run runs/simuser --judgements 50 --threads 2

The rule: the user prefers answers that GIVE A NUMBER (any digit: a figure, a year, a quantity, a
numbered step); no rater in lwdpo_edge/raters.py looks at this. (Tried first: 'mentions an example'
('for example', 'such as', 'e.g.' ...): only 5% of the default model's sampled answers and 20% of its
lists of 4 had one, so 50 judgements would have needed ~250 prompts; digits: 40% and 80%, measured on
20 training prompts x 4 samples at temperature 0.8.) Stages, each timed:

  1. base run: a soup run to add to (RUN, made with --base-steps per adapter if RUN has no lwdpo.json);
  2. export it to GGUF q8_0 (what `lwdpo-edge chat` runs) and load it with the runtime;
  3. judgements: for training-split prompts of the shipped prompt set, the app's own functions
     (apps/alternatives.generate_alternatives at the default lambda, different seeds;
     lwdpo_edge/feedback_data.judgement_record; FeedbackLog.append) with the simulated user's full
     order: rank 1 for every candidate where the rule holds, rank 2 for the rest; a list where all
     agree is skipped (no preference, as a person would skip it), until --judgements are recorded;
  4. `lwdpo-edge train --output RUN --feedback FILE` (the real command, a child process);
  5. `lwdpo-edge export RUN` and `lwdpo-edge chat EXPORT` until the page serves a `lambda-user` slider
     (time from 'feedback file ready' to 'new slider in the app' = 4 + 5);
  6. rule rate of greedy answers, under the app's repetition penalty, to the prompts the user never saw:
     the held-out split, then the training-split prompts after the last one judged (stage 3 asks in
     order), at user = 1 (its vertex), user = 0 (the other objectives uniform) and the base model
     (adapters off), each with its binomial standard error sqrt(p (1 - p) / n), through
     lwdpo_edge.soup (transformers, batched); and, since all three settings answer the same prompts, the
     paired difference per prompt (user = 1 minus the other: +1, 0 or -1) with its standard error, over
     all of them (what the slow test judges) and over the held-out split alone.

Writes RUN/simulated_user.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
from contextlib import nullcontext
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULE_RE = re.compile(r"\d")
CLI = [sys.executable, "-m", "lwdpo_edge.cli"]


def rule_holds(text: str) -> bool:
    return bool(RULE_RE.search(text))


def simulated_ranks(texts: list[str]) -> list[int] | None:
    """The simulated user's order: answers that give a number first (tied), the rest after; None = no preference."""
    holds = [rule_holds(t) for t in texts]
    return [1 if h else 2 for h in holds] if 0 < sum(holds) < len(holds) else None


def prompts(split: str) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "lwdpo_edge/defaults/prompts.jsonl").read_text().splitlines() if line]
    return [row["prompt"] for row in rows if row["split"] == split]


def unseen_prompts(feedback_file: Path) -> tuple[list[str], int]:
    """(prompts the simulated user never saw, how many of them are held out): the held-out split, then
    the training-split prompts after the last judged one (collect() asks them in order)."""
    train = prompts("train")
    judged = {json.loads(line)["prompt"][-1]["content"]
              for line in Path(feedback_file).read_text(encoding="utf-8").splitlines() if line.strip()}
    last = max(train.index(q) for q in judged if q in train)
    heldout = prompts("heldout")
    return heldout + train[last + 1:], len(heldout)


def timed_run(args: list[str], threads: int) -> float:
    """Run a lwdpo-edge command (a child process, like a user would); its seconds. Fails loudly."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.time()
    subprocess.run(CLI + args, check=True, env=env, cwd=ROOT)
    return time.time() - started


def newest_gguf(run: Path) -> Path:
    return max((run / "export").glob("*.q8_0.gguf"), key=lambda p: p.stat().st_mtime)


def collect(model, log, target: int, n: int, max_tokens: int, seed: int) -> dict:
    """Judgements through the app's code path until `target` are in the log; counts."""
    from lwdpo_edge.apps.alternatives import SEEDS, generate_alternatives
    from lwdpo_edge.apps.chat_logic import default_lambda
    from lwdpo_edge.feedback_data import judgement_record

    lam, strength = default_lambda(model), model.info.get("soup_strength")
    asked = skipped = 0
    started = time.time()
    for i, question in enumerate(prompts("train")):
        if log.count() >= target:
            break
        prompt = [{"role": "user", "content": question}]
        candidates = generate_alternatives(model, prompt, lam, n=n, mode=SEEDS, temperature=0.8, top_p=0.95,
                                           max_tokens=max_tokens, strength=strength, seed=seed + 10 * i)
        asked += 1
        ranks = simulated_ranks([c.text for c in candidates])
        if ranks is None:
            skipped += 1
            continue
        log.append(judgement_record(prompt, candidates, ranks, lam=lam, strength=strength, judgement="order",
                                    settings={"temperature": 0.8, "top_p": 0.95, "max_tokens": max_tokens},
                                    model_info=model.info))
    return {"prompts_asked": asked, "skipped_no_preference": skipped, "judgements": log.count(),
            "seconds": round(time.time() - started, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_slider_seconds(model_path: Path, threads: int, timeout: float = 180.0) -> float:
    """Start `lwdpo-edge chat MODEL --no-browser` and poll its /config until a lambda-user slider is served."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.time()
    app = subprocess.Popen(CLI + ["chat", str(model_path), "--no-browser", "--port", str(port), "--threads", "1"],
                           env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.time() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as response:
                    if '"lambda-user"' in response.read().decode():
                        return time.time() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"no lambda-user slider after {timeout} s")
    finally:
        app.terminate()
        app.wait(30)


def rule_rates(run: Path, questions: list[str], max_new: int, batch: int) -> dict:
    """Rule rate (+- standard error) of greedy held-out answers at user = 1, user = 0 and the base model."""
    from lwdpo_edge.evaluate.backends import TransformersBackend
    from lwdpo_edge.soup import load_soup

    model, tokenizer, manifest = load_soup(run)
    others = [name for name in manifest["objectives"] if name != "user"]
    settings = {"user = 1": ({"user": 1.0}, True), "user = 0": ({name: 1.0 for name in others}, True),
                "base model": (None, False)}
    messages = [[{"role": "user", "content": q}] for q in questions]
    rates = {}
    for label, (lam, adapter) in settings.items():
        # Greedy under the app's own repetition penalty (the backend's default): what a user of the slider sees.
        backend = TransformersBackend(model, tokenizer, adapter=adapter)
        with nullcontext() if lam is None else model.soup_mixer.folded(lam):  # eval's path: the mix in the weights
            answers = [a for start in range(0, len(messages), batch)
                       for a in backend.generate_batch(messages[start:start + batch], max_new)]
        hits = [rule_holds(a) for a in answers]
        p = sum(hits) / len(hits)
        rates[label] = {"rate": round(p, 3), "se": round(math.sqrt(p * (1 - p) / len(hits)), 3), "n": len(hits),
                        "hits": hits, "mean_words": round(sum(len(a.split()) for a in answers) / len(answers), 1),
                        "answers": answers}
    return rates


def paired_difference(hits: list[bool], other_hits: list[bool]) -> dict:
    """Mean of d_i = hits_i - other_hits_i over the same prompts, with s.e. = sd(d) / sqrt(n).

    Pairing removes the between-prompt variance both settings share (a prompt about a year gets a digit
    either way), so this s.e. is smaller than sqrt(se_a^2 + se_b^2) whenever the two agree on most prompts.
    """
    if len(hits) != len(other_hits) or len(hits) < 2:
        raise ValueError(f"paired difference needs the same >= 2 prompts, got {len(hits)} and {len(other_hits)}")
    from lwdpo_edge.evaluate.metrics import standard_error_or_none

    d = [int(a) - int(b) for a, b in zip(hits, other_hits)]  # (n,) in {-1, 0, +1}
    return {"diff": round(sum(d) / len(d), 3), "se": round(standard_error_or_none(d), 3), "n": len(d),
            "gained": d.count(1), "lost": d.count(-1)}


def paired_report(rates: dict, first: int | None = None) -> dict:
    """user = 1 against each other setting, paired by prompt (over the first `first` prompts if given)."""
    at_one = rates["user = 1"]["hits"][:first]
    return {f"user = 1 vs {label}": paired_difference(at_one, r["hits"][:first])
            for label, r in rates.items() if label != "user = 1"}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs/simuser",
                        help="soup run to add 'user' to (made if missing)")
    parser.add_argument("--base-steps", type=int, default=12,
                        help="steps per adapter of the base run, if it is made here")
    parser.add_argument("--judgements", type=int, default=50)
    parser.add_argument("--n", type=int, default=4, help="alternatives per judgement")
    parser.add_argument("--max-tokens", type=int, default=80, help="tokens per alternative")
    parser.add_argument("--eval-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-args", default="", help="extra `lwdpo-edge train` options for the user adapter")
    parser.add_argument("--rate-only", action="store_true",
                        help="RUN already has its user adapter: only answer and rate (stage 6)")
    args = parser.parse_args(argv)

    import torch

    from lwdpo_edge import load_model
    from lwdpo_edge.feedback_data import FeedbackLog

    torch.set_num_threads(args.threads)
    run, result = args.run, {"rule": RULE_RE.pattern,
                             "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    if not (run / "lwdpo.json").is_file():
        result["base_run_seconds"] = round(timed_run(
            ["train", "--output", str(run), "--max-steps", str(args.base_steps),
             "--sft-warmup-steps", str(args.base_steps * 2 // 3),
             "--max-response-tokens", "128", "--threads", str(args.threads), "--save-steps", "1000"], args.threads), 1)
    log = FeedbackLog(run / "feedback.jsonl")
    if log.count() < args.judgements:
        result["base_export_seconds"] = round(timed_run(["export", str(run), "--threads", "1"], 1), 1)
        with load_model(newest_gguf(run), threads=1) as model:
            result["collect"] = collect(model, log, args.judgements, args.n, args.max_tokens, args.seed)
    if not args.rate_only:
        train = ["train", "--output", str(run), "--feedback", str(log.path), "--threads", str(args.threads),
                 *args.train_args.split()]
        result["train_seconds"] = round(timed_run(train, args.threads), 1)
        result["export_seconds"] = round(timed_run(["export", str(run), "--threads", "1"], 1), 1)
        result["app_slider_seconds"] = round(app_slider_seconds(newest_gguf(run), 1), 1)
        result["feedback_to_slider_seconds"] = round(
            result["train_seconds"] + result["export_seconds"] + result["app_slider_seconds"], 1)
    questions, result["n_heldout"] = unseen_prompts(log.path)
    result["rates"] = rule_rates(run, questions, args.eval_tokens, batch=32)
    result["paired"] = paired_report(result["rates"])
    result["paired_heldout"] = paired_report(result["rates"], first=result["n_heldout"])
    (run / "simulated_user.json").write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    return result


def report(result: dict) -> str:
    rows = ["| setting | rule rate | s.e. | n | mean words |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {label} | {r['rate']:.3f} | {r['se']:.3f} | {r['n']} | {r['mean_words']} |"
             for label, r in result["rates"].items()]
    rows += ["", "| paired by prompt | difference | s.e. | gained | lost |", "|---|---:|---:|---:|---:|"]
    paired = {"never seen": result.get("paired", paired_report(result["rates"])),
              "held-out split": result.get("paired_heldout", {})}
    rows += [f"| {label} ({where}, n {p['n']}) | {p['diff']:+.3f} | {p['se']:.3f} | {p['gained']} | {p['lost']} |"
             for where, report_ in paired.items() for label, p in report_.items()]
    c = result.get("collect")
    if c:
        rows.append(f"\njudgements {c.get('judgements')} ({c.get('prompts_asked')} prompts asked, "
                    f"{c.get('skipped_no_preference')} without a preference, {c.get('seconds')} s)")
    if "train_seconds" in result:
        rows.append(f"train {result['train_seconds']} s, export {result['export_seconds']} s, app to slider "
                    f"{result['app_slider_seconds']} s: feedback -> slider {result['feedback_to_slider_seconds']} s")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
