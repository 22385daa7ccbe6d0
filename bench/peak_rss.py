"""Run `python -m MODULE ARGS...` in this process, then print its own peak RSS (MB) on stderr.

    python bench/peak_rss.py lwdpo_edge.cli train --max-steps 3

Benchmarks use it so each measured child reports its own peak, not the max over all children.
"""

import resource
import runpy
import sys

module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exit_:
    if exit_.code not in (0, None):
        raise
# VmHWM, not ru_maxrss: the latter includes the RSS of the parent at fork (see _common.peak_rss_mb)
try:
    peak_mb = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
except (OSError, IndexError):
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"PEAK_RSS_MB {peak_mb:.1f}", file=sys.stderr)
