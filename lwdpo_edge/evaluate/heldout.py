"""What evaluation runs on: held-out ranked lists (--data) and held-out prompts (--prompts).

A file whose rows carry "split" contributes only its "heldout" rows (the default dataset: 58 of 356
lists); a file without any split is taken whole (a user's own held-out file). Both are checked
against the run before any model loads: a list scored on an objective the run does not know is an
error, not a silent drop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lwdpo_edge.data.loaders import load_records
from lwdpo_edge.data.schema import DataError, ListwiseRecord, check_prompt

HELDOUT = "heldout"


def heldout_only(rows: list, split_of, source: str) -> list:
    """Rows whose split is "heldout" when any row names a split, else every row."""
    if not any(split_of(row) is not None for row in rows):
        return rows
    kept = [row for row in rows if split_of(row) == HELDOUT]
    if not kept:
        raise DataError(f"rows carry a 'split' but none is {HELDOUT!r}: nothing held out to evaluate on", source=source)
    return kept


def load_heldout_lists(data: str, objectives: Sequence[str]) -> list[ListwiseRecord]:
    """Held-out lists of `data`, every response scored on the run's objectives (None where missing).

    A native list that scores an objective the run does not know raises DataError (file:line), so an
    evaluation never quietly ignores half of what a user meant to measure.
    """
    try:
        records = load_records(data, objectives=list(objectives))
    except DataError as err:
        if "unknown objective" in err.problem:
            raise DataError(f"{err.problem}; the run was trained on {list(objectives)}",
                            source=err.source, field=err.field) from None
        raise
    return heldout_only(records, lambda r: r.meta.get("split"), str(data))


def prompts_from_lists(records: Sequence[ListwiseRecord]) -> list[list[dict[str, str]]]:
    """The prompts of the held-out lists, in file order, duplicates once."""
    seen: dict[str, list[dict[str, str]]] = {}
    for record in records:
        seen.setdefault(json.dumps(record.prompt, sort_keys=True), record.prompt)
    return list(seen.values())


def load_prompt_file(path: str | Path) -> list[list[dict[str, str]]]:
    """Prompts as chat messages from a .jsonl file (rows with "prompt": text or messages, optional
    "split") or any other text file (one prompt per line, '#' lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such prompt file", source=str(path))
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rows.append(_prompt_row(line, path, lineno))
    if not rows:
        raise DataError("the prompt file holds no prompts", source=str(path))
    rows = heldout_only(rows, lambda row: row.get("split"), str(path))
    return [row["messages"] for row in rows]


def _prompt_row(line: str, path: Path, lineno: int) -> dict:
    source = f"{path}:{lineno}"
    if path.suffix.lower() != ".jsonl":
        return {"messages": check_prompt(line.strip(), "prompt")}
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON: {err.msg} (column {err.colno})", source=source, field="row") from None
    if not isinstance(row, dict) or "prompt" not in row:
        raise DataError("missing", source=source, field="prompt")
    try:
        return {"messages": check_prompt(row["prompt"], "prompt"), "split": row.get("split")}
    except DataError as err:
        raise err.at(source) from None


def user_question(messages: Sequence[dict[str, str]]) -> str:
    """The text the raters compare an answer with: the last user turn."""
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")
