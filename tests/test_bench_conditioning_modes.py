"""bench/conditioning_modes.py: the side-by-side table and its bars, read from eval reports made by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
spec = importlib.util.spec_from_file_location("bench_conditioning_modes", BENCH / "conditioning_modes.py")
modes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(modes)


def fake_eval(tmp_path: Path, label: str, spearman: float, top1: dict, hypervolume: float, loops: list[float],
              training: dict) -> Path:
    run = tmp_path / label
    (run / "eval").mkdir(parents=True)
    (run / "lwdpo.json").write_text(json.dumps({"conditioning": "soup", "training": training}))
    grid = [{"name": "a", "kind": "vertex"}, {"name": "b", "kind": "vertex"}, {"name": "uniform", "kind": "centre"},
            {"name": "a-lean", "kind": "interior"}]
    points = [{"name": g["name"], "repeating": r} for g, r in zip(grid, loops)]
    report = {
        "run": {"dir": str(run)}, "settings": {"soup_strength": 1.0},
        "ranking": {"points": [g["name"] for g in grid],
                    "lambda_weighted": {"policy": {name: {"top1": v}
                                                   for name, v in {"a": 0.9, "b": 0.9, **top1}.items()}}},
        "controllability": {"grid": grid, "rated": ["a", "b"],
                            "policy": {"objectives": {"a": {"spearman": spearman}, "b": {"spearman": spearman}},
                                       "points": points},
                            "base": {"points": [{"name": "a", "repeating": 0.10}]},
                            "pareto": {"hypervolume": hypervolume, "front": ["a"]}},
    }
    (run / "eval" / "report.json").write_text(json.dumps(report))
    return run / "eval"


def test_the_bars_compare_the_new_mode_with_the_old_off_the_vertices(tmp_path):
    soup = modes.row(modes.load(fake_eval(tmp_path, "soup", 0.74, {"uniform": 0.5, "a-lean": 0.5}, 0.02, [0.2, 0, 0, 0],
                                          {"per_objective": {"a": {"seconds": 10.0}, "b": {"seconds": 5.0}}})))
    mixture = modes.row(modes.load(fake_eval(tmp_path, "mix", 0.71, {"uniform": 0.6, "a-lean": 0.5}, 0.03,
                                             [0.12, 0, 0.14, 0], {"mode": "mixture", "seconds": 30.0})))
    assert soup["training_seconds"] == 15.0 and mixture["training_seconds"] == 30.0
    assert list(mixture["weighted_top1"]) == ["uniform", "a-lean"]  # vertices are left out
    assert mixture["worst_loops"] == 0.14 and mixture["worst_loop_point"] == "uniform"
    lines = modes.verdict({"mixture": mixture, "soup": soup}, "mixture", "soup")
    assert [line.split(":")[0] for line in lines] == [
        "- PASS", "- PASS", "- PASS", "- PASS", "- PASS", "- FAIL"]  # 0.14 > 0.10 + 0.03
    worse = dict(mixture, weighted_top1={"uniform": 0.7, "a-lean": 0.4})  # higher mean, lower at one point
    assert modes.verdict({"mixture": worse, "soup": soup}, "mixture", "soup")[1].startswith("- FAIL")
    table = "\n".join(modes.table({"soup": soup, "mixture": mixture}))
    assert "| lambda-weighted top-1 at uniform | 0.50 | 0.60 |" in table and "| training s | 15 | 30 |" in table
