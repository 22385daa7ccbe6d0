"""`lwdpo-edge calibrate` (lwdpo_edge/evaluate/calibrate.py): the rule on hand-made tables, a tiny soup end to end."""

from __future__ import annotations

import json

import pytest
import torch

from lwdpo_edge.evaluate.calibrate import (LOOP_MARGIN, ON_TOPIC, ON_TOPIC_MARGIN, CalibrationConfig, CalibrationError,
                                           check_inputs, choose, heldout_prompts, strength_row)
from lwdpo_edge.evaluate.controllability import Generation
from lwdpo_edge.evaluate.grid import lambda_grid
from test_soup_eval import lively_dir, soup_run  # noqa: F401  (module fixtures: a tiny trained soup)
from train_helpers import OBJECTIVES, write_dataset


def row(strength, controllability, sound=True):
    return {"strength": strength, "controllability": controllability, "sound": sound}


def test_choose_takes_the_most_controllable_sound_strength_ties_to_the_smaller():
    rows = [row(1.0, 0.40), row(2.0, 0.60), row(2.5, 0.60), row(3.0, 0.90, sound=False)]
    assert choose(rows)[0] == 2.0  # 3.0 steers more but fails the floor; 2.0 and 2.5 tie
    strength, why = choose([row(2.0, 0.5, sound=False), row(1.5, 0.1, sound=False)])
    assert strength == 1.5 and "no strength passed the quality floor" in why


def generations(points, loops_at: str | None = None, on_topic: float = 0.8, drift_at: str | None = None):
    """Two prompts at each point; helpfulness rises with lambda_helpfulness, so Spearman is +1 for it."""
    out = []
    for p in range(2):
        for point in points:
            loop = point.name == loops_at and p == 0
            answer = "one two three four " * 3 if loop else "a plain answer"
            cosine = on_topic - (0.5 if point.name == drift_at else 0.0)
            out.append(Generation(p, point.name, point.lam, answer, 3,
                                  {"helpfulness": point.lam["helpfulness"], ON_TOPIC: cosine}))
    return out


def test_a_strength_is_sound_only_without_extra_loops_and_off_topic_vertices():
    points = lambda_grid(OBJECTIVES, "vertices")
    base = {"loops": 0.0, "on_topic": 0.8}
    good = strength_row(2.0, generations(points), base, points, ["helpfulness"])
    assert good["sound"] and good["spearman"]["helpfulness"] == pytest.approx(1.0)
    assert good["controllability"] == pytest.approx(1.0)
    looping = strength_row(2.0, generations(points, loops_at="uniform"), base, points, ["helpfulness"])
    assert not looping["loops_ok"] and looping["max_loop_rate"] == 0.5 > base["loops"] + LOOP_MARGIN
    assert strength_row(2.0, generations(points, loops_at="uniform"), {**base, "loops": 0.5}, points,
                        ["helpfulness"])["loops_ok"]  # the base loops as often: no worse
    drifting = strength_row(2.0, generations(points, drift_at="conciseness"), base, points, ["helpfulness"])
    assert not drifting["on_topic_ok"] and drifting["min_on_topic"] < base["on_topic"] - ON_TOPIC_MARGIN


def test_calibration_never_uses_training_prompts_and_needs_a_soup(tmp_path, soup_run):  # noqa: F811
    unsplit = write_dataset(tmp_path / "lists.jsonl")
    with pytest.raises(CalibrationError, match="no list is marked"):
        heldout_prompts(str(unsplit), OBJECTIVES)
    split = tmp_path / "split.jsonl"
    rows = [json.loads(line) for line in unsplit.read_text().splitlines()]
    split.write_text("".join(json.dumps({**r, "split": "heldout" if i < 2 else "train"}) + "\n"
                             for i, r in enumerate(rows)))
    assert len(heldout_prompts(str(split), OBJECTIVES)) == 2
    manifest = json.loads((soup_run / "lwdpo.json").read_text())
    header_run = tmp_path / "header"
    header_run.mkdir()
    (header_run / "lwdpo.json").write_text(json.dumps({**manifest, "conditioning": "header"}))
    with pytest.raises(CalibrationError, match="only an adapter-soup run"):
        check_inputs(CalibrationConfig(run_dir=header_run))


def test_calibrate_records_the_choice_and_the_run_then_mixes_at_it(soup_run, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from lwdpo_edge.cli import app
    from lwdpo_edge.export_contract import ExportContract
    from lwdpo_edge.soup import load_soup

    torch.set_num_threads(1)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Why is the sky blue?\nHow do I boil an egg?\n")
    result = CliRunner().invoke(app, ["calibrate", str(soup_run), "--strengths", "1,2", "--n-prompts", "2",
                                      "--max-new-tokens", "4", "--prompts", str(prompts)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((soup_run / "lwdpo.json").read_text())
    record = manifest["soup_calibration"]
    assert [r["strength"] for r in record["table"]] == [1.0, 2.0] and record["n_prompts"] == 2
    assert manifest["soup_strength"] == record["chosen"] == choose(record["table"])[0]
    assert load_soup(soup_run)[0].soup_mixer.default_strength == record["chosen"]
    assert ExportContract.from_manifest(manifest).soup_strength == record["chosen"]  # what exports carry
    bad = CliRunner().invoke(app, ["calibrate", str(soup_run), "--strengths", "1,nine"])
    assert bad.exit_code == 2 and "--strengths" in bad.output


def test_training_a_soup_without_held_out_prompts_keeps_the_default_and_says_why(soup_run, capsys):  # noqa: F811
    from lwdpo_edge.cli import calibrate_after_training

    before = json.loads((soup_run / "lwdpo.json").read_text())
    calibrate_after_training(soup_run)  # its data marks no list held out
    assert "calibrate skipped" in capsys.readouterr().err
    assert json.loads((soup_run / "lwdpo.json").read_text()) == before


def test_train_calibrates_a_soup_unless_told_a_strength_or_not_to(tmp_path):
    from lwdpo_edge.train.cli_args import parse_train_args

    default = parse_train_args(["--output", str(tmp_path / "a")])
    assert default.calibrate and default.soup_strength is None  # chosen after training
    assert not parse_train_args(["--output", str(tmp_path / "b"), "--no-calibrate"]).calibrate
    assert parse_train_args(["--output", str(tmp_path / "c"), "--soup-strength", "1.5"]).soup_strength == 1.5
