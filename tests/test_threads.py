"""Threads from how busy the cores are now (lwdpo_edge/threads.py), not from a lagging load average."""

from __future__ import annotations

import pytest

from lwdpo_edge.threads import auto_threads, busy_cores, choose_threads, cpu_times


def readings(*values):
    it = iter(values)
    return lambda: next(it)


def test_busy_cores_is_the_non_idle_share_of_the_interval_times_the_cores():
    # 1000 jiffies pass, 250 of them idle: 75 % busy on 2 cores = 1.5 cores
    assert busy_cores(0.0, readings((100, 1000), (350, 2000)), cores=2) == pytest.approx(1.5)
    assert busy_cores(0.0, readings((0, 0), (1000, 1000)), cores=2) == 0.0  # idle throughout
    assert busy_cores(0.0, readings(None, None), cores=2) is None  # no /proc/stat
    assert busy_cores(0.0, readings((5, 10), (5, 10)), cores=2) is None  # no time passed


def test_one_thread_only_when_other_work_holds_half_the_cores():
    assert choose_threads(2, 0.1, cores=2) == 2
    assert choose_threads(2, 1.0, cores=2) == 1
    assert choose_threads(8, 3.9, cores=8) == 8 and choose_threads(8, 4.0, cores=8) == 1
    assert choose_threads(2, None, cores=2) == 2  # unknown load: the default


def test_the_real_reading_and_the_printed_reason():
    if cpu_times() is None:
        pytest.skip("no /proc/stat")
    idle, total = cpu_times()
    assert 0 <= idle <= total
    threads, why = auto_threads(2)
    assert threads in (1, 2) and why.startswith(f"{threads} thread(s) (") and "cores busy" in why


def test_torch_threads_sets_the_count_inside_and_gives_the_callers_back():
    import torch

    from lwdpo_edge.threads import torch_threads

    before = torch.get_num_threads()
    said = []
    with torch_threads(1, said.append) as used:
        assert used == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before and said == []  # an explicit count is not announced
    with torch_threads(None, said.append) as used:
        assert torch.get_num_threads() == used >= 1
    assert torch.get_num_threads() == before and len(said) == 1 and "thread(s)" in said[0]
