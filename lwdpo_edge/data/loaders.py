"""Read listwise records from a file or folder, whatever its format (docs/design.md; formats: docs/training.md).

    records = load_records("data.jsonl")                          # stops at the first bad row
    records = load_records("data.jsonl", skip_bad=True, on_skip=bad.append)  # or skips and reports
    records = load_records("default")                             # the dataset shipped in the package

Where rows come from (`path`):
  - "default": lwdpo_edge/defaults/default_data.jsonl, shipped with the package;
  - a file: JSON lines (any extension; blank lines are ignored; sources read "FILE:LINE", 1-based),
    or a .json file holding one JSON array of rows (sources read "FILE:row N", 0-based);
  - a folder: a `datasets` Dataset saved with `save_to_disk` (sources read "FOLDER:row N",
    0-based like `ds[N]`). A saved DatasetDict with several splits is refused: name the split folder.

Each row is recognised by its keys (formats.detect_format): native {"prompt", "responses"},
UltraFeedback {"instruction", "completions"} or an OpenAssistant message tree {"message_tree_id",
"prompt": node}; see schema.py and formats.py for the exact shapes and how scores are derived.

`objectives`, when given, names the run's objectives:
  - native rows: any other score name is an error ("unknown objective"), since it is most likely a
    typo in a file the user wrote;
  - UltraFeedback / OpenAssistant rows: their objectives are derived by the loader (e.g. four
    aspects plus two summary scores), so `objectives` selects among them and the rest are dropped;
  - either way, each record needs a real score for at least one of them.

Every returned response has a score (maybe None) for every objective, in one order: the given
`objectives`, or else all score names in first-seen order. A missing score is simply None.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from lwdpo_edge.data.formats import detect_format, from_oasst_tree, from_ultrafeedback, unknown_format_error
from lwdpo_edge.data.schema import DataError, ListwiseRecord, check_has_score, objectives_of, type_name

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "defaults" / "default_data.jsonl"


def load_records(
    path: str | Path,
    objectives: Sequence[str] | None = None,
    skip_bad: bool = False,
    on_skip: Callable[[DataError], None] | None = None,
) -> list[ListwiseRecord]:
    """All records in `path`. A bad row raises DataError ("FILE:LINE: field: problem"), or, with
    `skip_bad`, is skipped and passed to `on_skip` (a warning sums them up if there is no on_skip).
    Raises DataError if the file is missing or holds no valid record."""
    wanted = check_objectives(objectives)
    records: list[ListwiseRecord] = []
    skipped: list[DataError] = []
    for source, row in iter_rows(path):
        try:
            records.extend(parse_row(row, source, wanted))
        except DataError as err:
            if not skip_bad:
                raise
            skipped.append(err)
            if on_skip is not None:
                on_skip(err)
    if skipped and on_skip is None:  # never a silent drop
        warnings.warn(f"{path}: skipped {len(skipped)} bad row(s); first: {skipped[0]}", stacklevel=2)
    if not records:
        note = f" ({len(skipped)} bad rows skipped)" if skipped else ""
        raise DataError("no valid records" + note, source=str(path))
    return fill_scores(records, wanted or objectives_of(records))


def parse_row(row, source: str, objectives: list[str] | None = None) -> list[ListwiseRecord]:
    """One row (already parsed, or the DataError from parsing it) -> its records.

    This is the only per-row checker: load_records and validate_path both go through it."""
    try:
        if isinstance(row, DataError):
            raise row
        if not isinstance(row, dict):
            raise DataError(f"not a JSON object (got {type_name(row)})", field="row")
        kind = detect_format(row)
        if kind == "native":
            records = [ListwiseRecord.from_json(row)]
            check_known_objectives(records[0], objectives)
        elif kind == "ultrafeedback":
            records = [from_ultrafeedback(row)]
        elif kind == "oasst":
            records = from_oasst_tree(row)
        else:
            raise unknown_format_error(row)
        for record in records:
            record.source = source
            check_has_score(record.responses, objectives)
    except DataError as err:
        raise err.at(source) from None
    return records


def check_objectives(objectives: Sequence[str] | str | None) -> list[str] | None:
    """Normalise the objectives argument; "a,b" is accepted as ["a", "b"]."""
    if objectives is None:
        return None
    if isinstance(objectives, str):
        objectives = objectives.split(",")
    names = list(dict.fromkeys(name.strip() for name in objectives if name.strip()))
    if not names:
        raise DataError("no objective names given", field="objectives")
    return names


def check_known_objectives(record: ListwiseRecord, objectives: list[str] | None) -> None:
    if objectives is None:
        return
    for i, response in enumerate(record.responses):
        for name in response.scores:
            if name not in objectives:
                raise DataError(
                    f"unknown objective {name!r} (expected one of: {', '.join(objectives)})",
                    field=f"responses[{i}].scores.{name}",
                )


def fill_scores(records: list[ListwiseRecord], objectives: list[str]) -> list[ListwiseRecord]:
    """Give every response exactly `objectives`, in that order: absent -> None, others dropped.
    Only names that the caller selected out (derived formats) are dropped; unknown native names
    were already refused."""
    for record in records:
        for response in record.responses:
            response.scores = {name: response.scores.get(name) for name in objectives}
    return records


# ----------------------------------------------------------------------------- where rows come from


def resolve_path(path: str | Path) -> Path:
    if str(path) == "default":
        if not DEFAULT_DATA.is_file():
            raise DataError(f"the shipped default dataset is missing (expected {DEFAULT_DATA})", source="default")
        return DEFAULT_DATA
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError("no such file or folder", source=str(path))
    return resolved


def iter_rows(path: str | Path) -> Iterator[tuple[str, object]]:
    """(source, row) for every row; a row that cannot be parsed comes as its DataError, so the
    caller decides whether to stop or skip."""
    resolved = resolve_path(path)
    name = str(path) if str(path) != "default" else str(resolved)
    if resolved.is_dir():
        yield from _dataset_rows(resolved, name)
    elif resolved.suffix.lower() == ".json" and _starts_with(resolved, b"["):
        yield from _json_array_rows(resolved, name)
    else:
        yield from _jsonl_rows(resolved, name)


def _jsonl_rows(path: Path, name: str) -> Iterator[tuple[str, object]]:
    with open(path, "rb") as f:  # bytes, so a bad UTF-8 line is reported with its number
        for lineno, raw in enumerate(f, start=1):
            source = f"{name}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                problem = f"not valid UTF-8 ({err.reason} at byte {err.start})"
                yield source, DataError(problem, source=source, field="row")
                continue
            if not line.strip():
                continue
            try:
                yield source, json.loads(line)
            except json.JSONDecodeError as err:
                yield source, DataError(f"malformed JSON: {err.msg} (column {err.colno})", source=source, field="row")


def _json_array_rows(path: Path, name: str) -> Iterator[tuple[str, object]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f"{name}:{err.lineno}" if isinstance(err, json.JSONDecodeError) else name
        raise DataError(f"malformed JSON: {err}", source=where, field="file") from None
    if not isinstance(rows, list):
        raise DataError(f"a JSON file must hold a list of rows, got {type_name(rows)}", source=name, field="file")
    for i, row in enumerate(rows):
        yield f"{name}:row {i}", row


def _dataset_rows(path: Path, name: str) -> Iterator[tuple[str, object]]:
    try:
        import datasets  # optional: only folders need it
    except ImportError:
        problem = "reading a datasets folder needs the `datasets` package (pip install 'lwdpo-edge[train]')"
        raise DataError(problem, source=name) from None
    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError("not a folder saved with datasets' save_to_disk (and not a data file)", source=name) from None
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        # Silently mixing train and test rows would poison an evaluation, so the user must choose.
        problem = f"a DatasetDict with splits {splits}: pass one split's folder, e.g. {path / next(iter(ds))}"
        raise DataError(problem, source=name)
    for i, row in enumerate(ds):
        yield f"{name}:row {i}", row


def _starts_with(path: Path, prefix: bytes) -> bool:
    """Does the file start with `prefix` after blanks (a JSON array rather than JSON lines)?"""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(prefix)


def save_records(records: Sequence[ListwiseRecord], path: str | Path) -> Path:
    """Write records as native JSON lines (load_records reads them back equal)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            # allow_nan=False: a NaN score must never reach a file (it is not JSON).
            f.write(json.dumps(record.to_json(), ensure_ascii=False, allow_nan=False) + "\n")
    return path
