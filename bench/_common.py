"""Pieces the training benchmarks share: the pairwise baseline's pairs, peak RSS, the machine line.

    from _common import bench_dpo_config, mean_z, pair_indices, trl_rows

The pairwise baseline ranks a list's candidates by the mean, over objectives, of each candidate's
z-score within the list: the same per-objective normalisation as `--score-normalization zscore`
(population std; a constant objective gives all zeros; a missing score is left out of the mean).
"""

from __future__ import annotations

import itertools
import os
import platform
import resource

PAIR_MODES = ("all-pairs", "best-vs-rest", "best-vs-worst")


def mean_z(record, objectives=None) -> list[float]:
    """Per candidate: mean over the objectives it is scored on of its z-score within the list."""
    import torch

    from lwdpo_edge.objective import normalize_scores

    names = list(objectives or record.responses[0].scores)
    raw = torch.tensor([[_score(r, n) for r in record.responses] for n in names], dtype=torch.float64)  # (K, N)
    z = normalize_scores(raw, "zscore")
    present = torch.isfinite(z)
    totals = torch.where(present, z, torch.zeros_like(z)).sum(0)
    counts = present.sum(0)
    return [float(t / c) if c else 0.0 for t, c in zip(totals, counts)]


def _score(response, name: str) -> float:
    value = response.scores.get(name)
    return float("nan") if value is None else float(value)


def pair_indices(record, mode: str, objectives=None) -> list[tuple[int, int]]:
    """(better, worse) candidate indices of one list, by mean z-score.

    best-vs-worst: one pair (the paper's pairwise baseline); no pair when best and worst tie.
    best-vs-rest: the best against each other candidate; all-pairs: every pair, better first.
    Ties keep file order (sorted() is stable), so the result is deterministic.
    """
    if mode not in PAIR_MODES:
        raise ValueError(f"unknown pair mode {mode!r}; expected one of {PAIR_MODES}")
    z = mean_z(record, objectives)
    order = sorted(range(len(z)), key=lambda i: -z[i])
    if mode == "all-pairs":
        pairs = list(itertools.combinations(order, 2))
    elif mode == "best-vs-rest":
        pairs = [(order[0], other) for other in order[1:]]
    else:
        pairs = [(order[0], order[-1])]
    return [(a, b) for a, b in pairs if z[a] > z[b]] if mode == "best-vs-worst" else pairs


def trl_rows(records, mode: str, objectives=None, prompt_of=lambda record: record.prompt) -> list[dict]:
    """TRL preference rows (conversational prompt/chosen/rejected) from ranked lists."""
    rows = []
    for record in records:
        for better, worse in pair_indices(record, mode, objectives):
            rows.append({"prompt": prompt_of(record),
                         "chosen": [{"role": "assistant", "content": record.responses[better].text}],
                         "rejected": [{"role": "assistant", "content": record.responses[worse].text}]})
    return rows


def bench_dpo_config(output_dir, max_length: int, per_step: int, steps: int):
    """TRL's DPOConfig for a cost arm: fp32, like the lambda-DPO arm it is timed against.

    TRL 1.x defaults to bf16=True (even on a CPU). Under that default the TRL arm ran in bf16
    autocast: on a CPU without AVX512-BF16 one 1B-class step took over an hour (emulated bf16), and on
    one with it TRL computed in another precision than the arm beside it. Both are wrong for a ratio."""
    from trl import DPOConfig

    return DPOConfig(output_dir=str(output_dir), per_device_train_batch_size=per_step, max_steps=steps, beta=0.1,
                     learning_rate=1e-4, report_to="none", use_cpu=True, save_strategy="no", max_length=max_length,
                     disable_tqdm=True, logging_steps=1000, seed=0, bf16=False, fp16=False)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this program's own memory. Not
    getrusage's ru_maxrss: a child started by fork + exec inherits in ru_maxrss the RSS its parent had
    at the fork (the kernel keeps the pre-exec image's high-water mark), so a bench parent holding a
    1B model would be counted in every child's peak.
    """
    try:
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo's first 'flags' line); empty where there is none."""
    try:
        line = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


def machine_line(threads: int | None = None) -> str:
    """CPU model, cores, RAM, torch version and threads: what a reader needs to compare timings."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        ram = float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"{threads or torch.get_num_threads()} torch threads")
