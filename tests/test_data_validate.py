"""validate_path collects every bad row; render_report prints them as FILE:LINE: field: problem."""

import json

from rich.console import Console

from lwdpo_edge.data import load_records, render_report, validate_path


def good(prompt="q", n=2):
    return json.dumps({"prompt": prompt,
                       "responses": [{"text": f"a{i}", "scores": {"h": i, "c": None}} for i in range(n)]})


def test_validate_collects_every_problem(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([
        good(n=2),
        "{not json",
        good(n=3),
        json.dumps({"prompt": "", "responses": []}),
        json.dumps({"prompt": "q", "responses": [{"text": "x", "scores": {"h": 1}}]}),
        good(n=3),
    ]) + "\n")
    report = validate_path(path)
    assert report.path == str(path)
    assert report.n_records == 3
    assert [str(p) for p in report.problems] == [
        f"{path}:2: row: malformed JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:4: prompt: prompt is empty",
        f"{path}:5: responses: need at least 2 responses, got 1",
    ]
    assert report.objectives == ["h", "c"]
    assert report.n_responses_hist == {2: 1, 3: 2}
    assert report.score_coverage == {"h": 1.0, "c": 0.0}
    assert not report.ok


def test_validate_agrees_with_load_records(tmp_path):
    # One checker: whatever validate accepts, load_records loads, and vice versa.
    path = tmp_path / "d.jsonl"
    path.write_text(good() + "\n" + good(n=4) + "\n")
    report = validate_path(path, objectives=["h", "c"])
    assert report.ok and report.n_records == len(load_records(path, objectives=["h", "c"]))


def test_validate_unknown_objective_and_missing_file(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(good() + "\n")
    report = validate_path(path, objectives=["helpfulness"])
    assert [str(p) for p in report.problems] == [
        f"{path}:1: responses[0].scores.h: unknown objective 'h' (expected one of: helpfulness)",
        f"{path}: no valid records (1 bad rows skipped)",
    ]
    missing = validate_path(tmp_path / "nope.jsonl")
    assert missing.n_records == 0 and [str(p) for p in missing.problems] == [
        f"{tmp_path / 'nope.jsonl'}: no such file or folder"]


def test_render_report_prints_summary_and_each_problem_verbatim(tmp_path):
    path = tmp_path / "d.jsonl"
    # "[lambda]" must come out as written, not be eaten as rich markup
    path.write_text(good("[lambda] x") + "\n" + json.dumps({"prompt": "[bold]", "responses": "[red]"}) + "\n")
    console = Console(record=True, width=60)
    render_report(validate_path(path), console)
    out = console.export_text()
    assert "records" in out and "N=2: 1" in out and "h (100% scored)" in out
    assert f"{path}:2: responses: must be a list of responses, got string" in out
    assert "OK" not in out.splitlines()[-1]


def test_render_report_ok(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(good() + "\n")
    console = Console(record=True, width=80)
    render_report(validate_path(path), console)
    assert console.export_text().splitlines()[-1] == "OK"
