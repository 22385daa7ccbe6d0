"""Pointwise rows -> ranked lists: one answer per row with label columns, grouped by prompt.

Rating spreadsheets and sets such as XSTest or HelpSteer hold one (prompt, answer) pair per row
with its labels in columns, while listwise training needs all answers to a prompt in one record.
This module reads such rows from CSV/TSV files, JSON lines (or a .json array) and local `datasets`
folders, turns label columns into objective scores and groups the answers by prompt:

    columns = PointwiseColumns("prompt", "completion", [parse_score_spec(
        "helpfulness=final_label:1_full_compliance=1,2_full_refusal=0,3_partial_refusal=0.5")])
    result = load_pointwise(["gpt4.csv", "mistral.csv"], columns)   # result.records: ListwiseRecords

  - a score is `objective=column[:mapping]`; a mapping `label=number,...` turns labels into
    numbers and a label it does not list becomes null (counted in `result.unmapped`); without a
    mapping a cell must be a number or a numeric string;
  - an empty cell, a JSON null or a key absent from a JSON row is a null score: partial labels are
    normal. A column that no row of a file has is refused instead: it is almost always a typo;
  - answers are grouped by exact prompt text in first-seen order, across all inputs (XSTest ships
    one file per model); a repeated (prompt, answer) pair keeps its first row and is counted;
  - a prompt with fewer than 2 answers, or with no score at all, makes no list: it is skipped and
    reported in `result.skipped` (load_records would refuse such a list);
  - `keep` columns become keys of the record (e.g. "split": "heldout" keeps a list out of
    training; every row of a prompt must agree), `keep_answer` columns keys of each answer.

A bad row raises DataError "FILE:LINE: column: problem"; CSV lines are where the row starts (a
quoted cell may span lines), JSON sources are those of loaders.iter_rows.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lwdpo_edge.data.loaders import iter_rows, resolve_path, save_records
from lwdpo_edge.data.schema import (
    DataError,
    ListwiseRecord,
    Response,
    check_objective_name,
    check_prompt,
    check_score,
    check_text,
    type_name,
)

MIN_ANSWERS = 2
DELIMITERS = {".csv": ",", ".tsv": "\t"}
# The native JSONL form writes meta keys beside these; a kept column with such a name would be overwritten.
RECORD_KEYS = ("prompt", "responses")
ANSWER_KEYS = ("text", "scores")


@dataclass(frozen=True)
class ScoreColumn:
    """One objective read from one column; `mapping` (label -> number) is None for a numeric column."""

    objective: str
    column: str
    mapping: dict[str, float] | None = None


@dataclass
class PointwiseColumns:
    """Which column holds what. `keep` and `keep_answer` map a key to the column it is copied from."""

    prompt: str
    response: str
    scores: list[ScoreColumn]
    keep: dict[str, str] = field(default_factory=dict)
    keep_answer: dict[str, str] = field(default_factory=dict)

    def all_columns(self) -> list[str]:
        """Every column read, for the check that a file has them."""
        named = [self.prompt, self.response, *(s.column for s in self.scores)]
        return list(dict.fromkeys([*named, *self.keep.values(), *self.keep_answer.values()]))


@dataclass
class PointwiseResult:
    """The lists built, and what did not make it into them (nothing is dropped silently)."""

    records: list[ListwiseRecord] = field(default_factory=list)
    objectives: list[str] = field(default_factory=list)
    n_rows: int = 0
    duplicates: int = 0  # repeated (prompt, answer) pairs; the first row was kept
    skipped: list[DataError] = field(default_factory=list)  # one per prompt that made no list
    unmapped: Counter = field(default_factory=Counter)  # (objective, label) -> rows scored null

    @property
    def n_answers(self) -> int:
        return sum(len(record.responses) for record in self.records)


# ----------------------------------------------------------------------------- column specs


def parse_score_spec(spec: str) -> ScoreColumn:
    """'objective=column[:mapping]' -> ScoreColumn. The column ends at the first ':', so mapping
    labels may hold ':' (a column name may not)."""
    name = f"score {spec!r}"
    objective, eq, rest = spec.partition("=")
    column, colon, mapping = rest.partition(":")
    objective, column = objective.strip(), column.strip()
    if not eq or not objective or not column:
        raise DataError("expected objective=column or objective=column:label=number,...", field=name)
    check_objective_name(objective, name)
    return ScoreColumn(objective, column, parse_mapping(mapping, name) if colon else None)


def parse_mapping(text: str, name: str) -> dict[str, float]:
    """'label=number,label=number' -> {label: number}. Each pair splits at its last '=', so a
    label may hold '=' (not ','); labels and numbers are stripped of blanks."""
    mapping: dict[str, float] = {}
    for pair in text.split(","):
        label, eq, number = pair.rpartition("=")
        label = label.strip()
        if not eq or not label:
            raise DataError(f"mapping entry {pair!r} must be label=number", field=name)
        if label in mapping:
            raise DataError(f"label {label!r} is mapped twice", field=name)
        try:
            value = float(number)
        except ValueError:
            raise DataError(f"mapping entry {pair!r}: {number.strip()!r} is not a number", field=name) from None
        mapping[label] = check_score(value, name)  # refuses nan and inf
    return mapping


def parse_keep_spec(spec: str, reserved: Sequence[str]) -> tuple[str, str]:
    """'key=column' or 'column' (the key is the column's name) -> (key, column)."""
    key, eq, column = (part.strip() for part in spec.partition("="))
    column = column if eq else key
    if not key or not column:
        raise DataError("expected column or key=column", field=f"keep {spec!r}")
    if key in reserved:
        raise DataError(f"{key!r} is a field of the record itself; name it key=column", field=f"keep {spec!r}")
    return key, column


def pointwise_columns(
    prompt: str, response: str, scores: Sequence[str], keep: Sequence[str] = (), keep_answer: Sequence[str] = ()
) -> PointwiseColumns:
    """The columns from command-line strings: scores as 'objective=column[:mapping]', kept
    columns as 'column' or 'key=column'."""
    if not scores:
        raise DataError("give at least one score: objective=column[:mapping]", field="score")
    parsed = [parse_score_spec(spec) for spec in scores]
    repeated = [name for name, n in Counter(s.objective for s in parsed).items() if n > 1]
    if repeated:
        raise DataError(f"objective {repeated[0]!r} is given twice", field="score")
    return PointwiseColumns(
        prompt,
        response,
        parsed,
        dict(parse_keep_spec(spec, RECORD_KEYS) for spec in keep),
        dict(parse_keep_spec(spec, ANSWER_KEYS) for spec in keep_answer),
    )


# ----------------------------------------------------------------------------- rows


def iter_table_rows(path: str | Path, columns: Sequence[str] = ()) -> Iterator[tuple[str, dict]]:
    """(source, row) for every row of a CSV/TSV file, a JSON lines / JSON array file or a datasets
    folder. A file without rows, or with none that has one of `columns`, is a DataError."""
    resolved = resolve_path(path)
    if resolved.is_file() and resolved.suffix.lower() in DELIMITERS:
        yield from _csv_rows(resolved, str(path), DELIMITERS[resolved.suffix.lower()], columns)
        return
    seen: dict[str, None] = {}
    for source, row in iter_rows(path):
        if isinstance(row, DataError):
            raise row
        if not isinstance(row, dict):
            raise DataError(f"not a JSON object (got {type_name(row)})", source=source, field="row")
        seen.update(dict.fromkeys(map(str, row)))
        yield source, row
    if not seen:
        raise DataError("no rows", source=str(path))
    for column in columns:
        if column not in seen:
            raise DataError(f"no row has this column (columns: {', '.join(seen)})", source=str(path), field=column)


def _csv_rows(path: Path, name: str, delimiter: str, columns: Sequence[str]) -> Iterator[tuple[str, dict]]:
    """Rows as {header: cell}; a row's source is the line it starts on. Short rows lack their last
    columns (null scores); a row longer than the header is refused (a stray delimiter or quote)."""
    n_rows = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = [cell.strip() for cell in next(reader, [])]
            _check_header(header, name, columns)
            start = reader.line_num + 1
            for cells in reader:
                source, start = f"{name}:{start}", reader.line_num + 1
                if not cells:  # a blank line
                    continue
                if len(cells) > len(header):
                    problem = f"{len(cells)} cells but the header has {len(header)} columns"
                    raise DataError(problem, source=source, field="row")
                n_rows += 1
                yield source, dict(zip(header, cells))
        except UnicodeDecodeError as err:
            raise DataError(f"not valid UTF-8 ({err.reason})", source=name, field="file") from None
        except csv.Error as err:
            raise DataError(f"malformed CSV: {err}", source=f"{name}:{reader.line_num}", field="row") from None
    if not n_rows:
        raise DataError("no rows under the header", source=name)


def _check_header(header: list[str], name: str, columns: Sequence[str]) -> None:
    if not any(header):
        raise DataError("no header row (the first line must name the columns)", source=name)
    for column in columns:
        if column not in header:
            problem = f"no such column (the header has: {', '.join(header)})"
            raise DataError(problem, source=f"{name}:1", field=column)


# ----------------------------------------------------------------------------- one answer


@dataclass
class Answer:
    """One row, checked: the prompt as messages, the scored answer and the record keys it carries."""

    source: str
    prompt: list[dict[str, str]]
    response: Response
    meta: dict


def read_answer(row: dict, source: str, columns: PointwiseColumns, unmapped: Counter) -> Answer:
    """Check one row and build its Answer; a bad cell raises DataError "SOURCE: column: problem"."""
    try:
        prompt = check_prompt(_cell(row, columns.prompt), columns.prompt)
        text = check_text(_cell(row, columns.response), columns.response)
        scores = {s.objective: read_score(row.get(s.column), s, unmapped) for s in columns.scores}
    except DataError as err:
        raise err.at(source) from None
    response = Response(text, scores, _kept(row, columns.keep_answer))
    return Answer(source, prompt, response, _kept(row, columns.keep))


def read_score(value, column: ScoreColumn, unmapped: Counter) -> float | None:
    """A cell -> score. Empty or null -> None; with a mapping, a label it lacks -> None (counted).
    JSON values are looked up in a mapping by their JSON text (1, 2.5, true)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if column.mapping is not None:
        label = value.strip() if isinstance(value, str) else json.dumps(value, default=str)
        if label not in column.mapping:
            unmapped[column.objective, label] += 1
        return column.mapping.get(label)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            hint = f"give the labels numbers: {column.objective}={column.column}:label=number,..."
            raise DataError(f"{value.strip()[:40]!r} is not a number ({hint})", field=column.column) from None
    return check_score(value, column.column)


def _cell(row: dict, column: str):
    if column not in row:
        raise DataError("missing", field=column)
    return row[column]


def _kept(row: dict, keep: dict[str, str]) -> dict:
    """The kept columns that hold a value (an empty cell or null is left out)."""
    return {key: row[column] for key, column in keep.items() if row.get(column) not in (None, "")}


# ----------------------------------------------------------------------------- grouping


@dataclass
class _Group:
    """The answers to one prompt so far, with the row that first asked it."""

    first: Answer
    responses: list[Response]
    texts: set[str]


def add_answer(groups: dict[str, _Group], answer: Answer, keep: dict[str, str]) -> bool:
    """Put an answer in its prompt's group (first-seen order); False for a repeated (prompt,
    answer) pair, whose first row is kept. Kept record keys must agree across a prompt's rows."""
    key = json.dumps(answer.prompt, ensure_ascii=False)
    group = groups.get(key)
    if group is None:
        groups[key] = _Group(answer, [answer.response], {answer.response.text})
        return True
    if answer.response.text in group.texts:
        return False
    for name, value in answer.meta.items():
        known = group.first.meta.setdefault(name, value)
        if known != value:
            problem = f"{value!r} differs from {known!r} at {group.first.source}, a row of the same prompt"
            raise DataError(problem, source=answer.source, field=keep[name])
    group.responses.append(answer.response)
    group.texts.add(answer.response.text)
    return True


def build_records(groups: dict[str, _Group], result: PointwiseResult) -> None:
    """Turn each group into a record, or a reason in result.skipped when it cannot rank anything."""
    for group in groups.values():
        first = group.first
        if len(group.responses) < MIN_ANSWERS:
            problem = f"only {len(group.responses)} answer (a ranked list needs {MIN_ANSWERS}); skipped"
        elif all(score is None for r in group.responses for score in r.scores.values()):
            problem = f"none of its {len(group.responses)} answers has a score; skipped"
        else:
            result.records.append(ListwiseRecord(first.prompt, group.responses, first.source, first.meta))
            continue
        preview = first.prompt[-1]["content"].strip().replace("\n", " ")
        preview = preview if len(preview) <= 50 else preview[:49] + "…"
        result.skipped.append(DataError(problem, source=first.source, field=f"prompt {preview!r}"))


# ----------------------------------------------------------------------------- the whole job


def load_pointwise(paths: Sequence[str | Path], columns: PointwiseColumns) -> PointwiseResult:
    """Read every row of `paths` in order, group the answers by prompt, build the ranked lists.
    Raises DataError at the first bad row, or when no prompt makes a list."""
    result = PointwiseResult(objectives=[s.objective for s in columns.scores])
    groups: dict[str, _Group] = {}
    for path in paths:
        for source, row in iter_table_rows(path, columns.all_columns()):
            answer = read_answer(row, source, columns, result.unmapped)
            result.n_rows += 1
            if not add_answer(groups, answer, columns.keep):
                result.duplicates += 1
    build_records(groups, result)
    if not result.records:
        first = f"; first: {result.skipped[0]}" if result.skipped else ""
        problem = f"no ranked list: all {len(result.skipped)} prompts were skipped{first}"
        hint = " (are all answers to a prompt in the inputs? several files may be given)"
        raise DataError(problem + hint, source=", ".join(map(str, paths)))
    return result


def convert_pointwise(paths: Sequence[str | Path], columns: PointwiseColumns, output: str | Path) -> PointwiseResult:
    """load_pointwise, then write the lists as native JSONL (load_records reads them back equal)."""
    if any(Path(output).resolve() == Path(path).resolve() for path in paths):
        raise DataError("the output would overwrite an input", source=str(output))
    result = load_pointwise(paths, columns)
    save_records(result.records, output)
    return result


def summary_line(result: PointwiseResult, output: str | Path) -> str:
    """One line for the terminal: what was written, what was dropped, and per objective the lists that can
    train it (>= 2 answers scored on it, not all equal: lwdpo_edge/data/usable.py)."""
    from lwdpo_edge.data.usable import lists_per_objective  # imports torch: lwdpo_edge.data stays light without it

    counts = lists_per_objective(result.records, result.objectives)  # training's own rule
    ranked = ", ".join(f"{name} {n}" for name, n in counts.items())
    line = (
        f"{output}: {len(result.records)} lists, {result.n_answers} answers from {result.n_rows} rows; "
        f"{len(result.skipped)} prompts skipped, {result.duplicates} duplicate answers dropped; "
        f"lists that can train each objective: {ranked}"
    )
    if result.unmapped:
        labels = ", ".join(f"{name} {label!r} x{n}" for (name, label), n in result.unmapped.most_common(5))
        line += f"; labels not in the mapping (null): {labels}" + (", ..." if len(result.unmapped) > 5 else "")
    return line


def skipped_lines(result: PointwiseResult, limit: int = 5) -> list[str]:
    """The first `limit` skipped prompts as "FILE:LINE: prompt '...': why", then how many more."""
    lines = [str(err) for err in result.skipped[:limit]]
    if len(result.skipped) > limit:
        lines.append(f"... and {len(result.skipped) - limit} more prompts skipped")
    return lines
