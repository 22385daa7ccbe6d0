"""Which lists can train (or judge) which objective.

Real multi-objective data is scored on some objectives per list and null on the others (XSTest's
safe prompts carry a helpfulness label, its unsafe ones a harmlessness label). A list teaches
objective k only when at least two of its answers carry a score for k and those scores differ:
`lwdpo_edge.objective.usable_objectives` states the rule once, for tensors; this module applies it
to records, so training can drop the lists that teach nothing, give each soup adapter only the
lists scored on its objective, and say how many lists each objective really trains on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lwdpo_edge.data.schema import DataError, ListwiseRecord
from lwdpo_edge.objective import usable_objectives


def usable_objectives_of(record: ListwiseRecord, objectives: Sequence[str]) -> list[str]:
    """The objectives this list can teach, in the given order."""
    raw = torch.tensor([[float("nan") if r.scores.get(name) is None else float(r.scores[name])
                         for r in record.responses]
                        for name in objectives], dtype=torch.float64)  # (K, N)
    usable = usable_objectives(raw[None], torch.ones(1, raw.shape[1], dtype=torch.bool))[0]  # (K,)
    return [name for name, ok in zip(objectives, usable.tolist()) if ok]


def lists_per_objective(records: Sequence[ListwiseRecord], objectives: Sequence[str]) -> dict[str, int]:
    """{objective: number of lists that can teach it}."""
    counts = dict.fromkeys(objectives, 0)
    for record in records:
        for name in usable_objectives_of(record, objectives):
            counts[name] += 1
    return counts


def lists_for(records: Sequence[ListwiseRecord], objective: str, objectives: Sequence[str]) -> list[ListwiseRecord]:
    """The lists that can teach `objective` (a soup adapter trains on these only)."""
    return [r for r in records if objective in usable_objectives_of(r, objectives)]


def require_usable_lists(records: Sequence[ListwiseRecord], objectives: Sequence[str], source: str) -> dict[str, int]:
    """lists_per_objective, after refusing an objective that no list can teach."""
    counts = lists_per_objective(records, objectives)
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"no list can train objective(s) {', '.join(empty)}: every list has fewer than two answers "
                        f"scored on it, or all its scores tie; score them, or leave them out of --objectives",
                        source=source)
    return counts
