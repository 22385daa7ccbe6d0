"""Check a data file without training on it: every bad row, not just the first.

`lwdpo-edge data validate FILE` calls validate_path and render_report and exits 1 on problems.
The checking itself is load_records' (skip_bad=True collects each row's DataError), so the
validator and the trainer can never disagree about what a bad row is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.data.schema import DataError, ListwiseRecord, objectives_of


@dataclass
class ValidationReport:
    path: str
    n_records: int
    problems: list[DataError]
    objectives: list[str]
    n_responses_hist: dict[int, int]  # N (responses in a record) -> number of records
    # objective -> fraction of responses with a real (non-null) score; shows how sparse an objective is
    score_coverage: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_path(path: str | Path, objectives: Sequence[str] | None = None) -> ValidationReport:
    """Read `path` like load_records does and collect every problem instead of stopping."""
    problems: list[DataError] = []
    try:
        records = load_records(path, objectives, skip_bad=True, on_skip=problems.append)
    except DataError as err:  # file-level: missing, unreadable, or no valid record at all
        problems.append(err)
        records = []
    return ValidationReport(
        path=str(path),
        n_records=len(records),
        problems=problems,
        objectives=objectives_of(records),
        n_responses_hist=dict(sorted(Counter(len(r.responses) for r in records).items())),
        score_coverage=score_coverage(records),
    )


def score_coverage(records: list[ListwiseRecord]) -> dict[str, float]:
    known: Counter[str] = Counter()
    total = 0
    for record in records:
        for response in record.responses:
            total += 1
            known.update(name for name, score in response.scores.items() if score is not None)
    return {name: known[name] / total for name in objectives_of(records)} if total else {}


def render_report(report: ValidationReport, console: Console) -> None:
    """A summary table, then one plain line per problem ("FILE:LINE: field: problem")."""
    table = Table(title="data validation", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("path", Text(report.path))
    table.add_row("records", str(report.n_records))
    table.add_row("responses per record", ", ".join(f"N={n}: {c}" for n, c in report.n_responses_hist.items()) or "-")
    coverage = report.score_coverage
    objectives = ", ".join(
        f"{name} ({coverage[name]:.0%} scored)" if name in coverage else name for name in report.objectives
    )
    table.add_row("objectives", objectives or "-")
    table.add_row("problems", Text(str(len(report.problems)), style="red" if report.problems else "green"))
    console.print(table)
    for problem in report.problems:
        # Text, not markup: data such as "[lambda]" must print as written.
        console.print(Text(str(problem)), highlight=False, soft_wrap=True)
    if report.ok:
        console.print(Text("OK", style="green"))
