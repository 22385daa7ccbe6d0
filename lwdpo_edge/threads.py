"""How many torch threads a job should use, decided from how busy the cores are *now*.

With oversubscribed cores torch's OpenMP threads wait for each other at every op: measured on 2
shared cores, one 16-answer batch took 3.3 s with 2 threads, then 247 s on the next call; with 1
thread it took 5.2 s every time. So a job uses 1 thread when other work already holds half the
cores or more, and torch's default otherwise.

The load average cannot say "now": its 1-minute figure still counts a job that ended seconds ago
(an eval started right after training would run single-threaded on an idle machine). The CPU time
the kernel counts in /proc/stat over a short interval can: busy cores = (1 - idle share) x cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SAMPLE_SECONDS = 0.5


def cpu_times(stat_path: str = "/proc/stat") -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot, or None where /proc/stat is not there."""
    try:
        with open(stat_path) as f:
            fields = [int(x) for x in f.readline().split()[1:]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])


def busy_cores(interval: float = SAMPLE_SECONDS, read: Callable[[], tuple[int, int] | None] = cpu_times,
               cores: int | None = None) -> float | None:
    """Cores kept busy by all processes over the next `interval` seconds (this one sleeps), or None."""
    before = read()
    time.sleep(interval)
    after = read()
    if before is None or after is None or after[1] <= before[1]:
        return None
    idle_share = (after[0] - before[0]) / (after[1] - before[1])
    return (1.0 - idle_share) * (cores or os.cpu_count() or 1)


def choose_threads(default: int, busy: float | None, cores: int) -> int:
    """1 when other work holds half the cores or more, else `default` (unknown load: `default`)."""
    return 1 if busy is not None and busy >= cores / 2 else default


def auto_threads(default: int) -> tuple[int, str]:
    """(threads, why) for a job about to start; `why` is printed so the choice is never a mystery."""
    cores = os.cpu_count() or 1
    busy = busy_cores(cores=cores)
    threads = choose_threads(default, busy, cores)
    seen = "load unknown" if busy is None else f"{busy:.1f} of {cores} cores busy over the last {SAMPLE_SECONDS:g} s"
    return threads, f"{threads} thread(s) ({seen}; --threads N sets it)"


@contextmanager
def torch_threads(requested: int | None, announce: Callable[[str], None]) -> Iterator[int]:
    """torch's CPU threads at `requested` inside the block (None: `auto_threads`, and `announce(why)`);
    the caller's own setting again afterwards, since it is process-wide. Yields the thread count used."""
    import torch  # torch: heavy; this module is imported where --help must stay fast

    previous = torch.get_num_threads()
    if not requested:
        requested, why = auto_threads(previous)
        announce(why)
    torch.set_num_threads(requested)
    try:
        yield requested
    finally:
        torch.set_num_threads(previous)
