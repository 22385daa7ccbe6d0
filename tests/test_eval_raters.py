"""`lwdpo-edge eval --rater OBJECTIVE=TARGET`: loading your own raters, clear errors, XSTest's refusal rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lwdpo_edge.evaluate.rater_plugins import FunctionRater, RaterError, load_raters
from lwdpo_edge.evaluate.run import EvalConfig, run_evaluation
from lwdpo_edge.raters import ConcisenessRater, Rater
from lwdpo_edge.refusal import is_refusal, refusal
from test_eval_run import fake_run, heldout, lively_dir, tiny_run  # noqa: F401  (fixtures: a tiny trained run)
from train_helpers import OBJECTIVES

RATER_FILE = '''
def chars(prompt, answer):
    return len(answer)


class Shouting:
    name = "shouting"

    def score(self, prompts, answers):
        return [float(sum(c.isupper() for c in a)) for a in answers]


shouting = Shouting()
'''


@pytest.fixture()
def rater_file(tmp_path) -> Path:
    path = tmp_path / "my_raters.py"
    path.write_text(RATER_FILE)
    return path


# ----------------------------------------------------------------------------- loading


def test_a_module_function_is_wrapped_and_a_rater_class_instantiated():
    raters = load_raters(["helpfulness=lwdpo_edge.refusal:refusal", "conciseness=lwdpo_edge.raters:ConcisenessRater"],
                         OBJECTIVES)
    assert list(raters) == ["helpfulness", "conciseness"]
    assert isinstance(raters["helpfulness"], FunctionRater) and isinstance(raters["helpfulness"], Rater)
    answers = ["I'm sorry, I can't help with that.", "Sure: boil it."]
    assert raters["helpfulness"].score(["Q?", "Q?"], answers) == [1.0, 0.0]
    assert isinstance(raters["conciseness"], ConcisenessRater)


def test_a_local_file_is_loaded_by_absolute_or_relative_path(rater_file, monkeypatch):
    raters = load_raters([f"helpfulness={rater_file}:chars", f"conciseness={rater_file}:shouting"], OBJECTIVES)
    assert raters["helpfulness"].score(["Q?", "Q?"], ["abc", ""]) == [3.0, 0.0]
    assert raters["conciseness"].score(["Q?"], ["NO Way"]) == [3.0]  # a Rater object is used as it is
    monkeypatch.chdir(rater_file.parent)
    assert load_raters(["helpfulness=my_raters.py:chars"], OBJECTIVES)["helpfulness"].score(["Q"], ["four"]) == [4.0]


def test_a_module_on_sys_path_is_loaded(rater_file, monkeypatch):
    monkeypatch.syspath_prepend(str(rater_file.parent))
    rater = load_raters(["conciseness=my_raters:chars"], OBJECTIVES)["conciseness"]
    assert rater.score(["Q?"], ["hello"]) == [5.0]


EXPECTED = "expected OBJECTIVE=module.path:callable"


@pytest.mark.parametrize("spec,message", [
    ("helpfulness", f"--rater 'helpfulness': {EXPECTED}"),
    ("helpfulness=lwdpo_edge.refusal", EXPECTED),
    ("=lwdpo_edge.refusal:refusal", EXPECTED),
    ("toxicity=lwdpo_edge.refusal:refusal",
     "--rater toxicity=lwdpo_edge.refusal:refusal: the run has no objective 'toxicity' "
     "(its objectives: helpfulness, conciseness)"),
    ("helpfulness=no_such_rater_module:f",
     "cannot import no_such_rater_module: ModuleNotFoundError: No module named 'no_such_rater_module' "
     "(for a local file give its path: path/to/file.py:callable)"),
    ("helpfulness=missing/raters.py:f", "no file missing/raters.py"),
    ("helpfulness=lwdpo_edge.refusal:nothing", "lwdpo_edge.refusal has no attribute 'nothing'"),
    ("helpfulness=lwdpo_edge.refusal:REFUSAL_PREFIXES", "lwdpo_edge.refusal:REFUSAL_PREFIXES is a tuple, not callable"),
    ("helpfulness=lwdpo_edge.refusal:is_refusal", "cannot be called as f(prompt, answer)"),
    ("helpfulness=lwdpo_edge.raters:HelpfulnessRater.AGGREGATES", "has no attribute 'HelpfulnessRater.AGGREGATES'"),
])
def test_each_unusable_rater_is_named_with_what_was_expected(spec, message):
    with pytest.raises(RaterError) as caught:
        load_raters([spec], OBJECTIVES)
    assert message in str(caught.value)
    if "the run has no objective" not in message:
        assert "or a function f(prompt: str, answer: str) -> float" in str(caught.value)


def test_one_rater_per_objective():
    with pytest.raises(RaterError, match="objective 'helpfulness' is given a rater twice"):
        load_raters(["helpfulness=lwdpo_edge.refusal:refusal"] * 2, OBJECTIVES)


def test_a_file_that_does_not_import_and_a_class_that_needs_arguments(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def f(prompt, answer)\n    return 1\n")
    with pytest.raises(RaterError, match=r"cannot import .*broken.py: SyntaxError"):
        load_raters([f"helpfulness={broken}:f"], OBJECTIVES)
    with pytest.raises(RaterError, match=r"cannot make .*rater_plugins:FunctionRater\(\) with no arguments"):
        load_raters(["helpfulness=lwdpo_edge.evaluate.rater_plugins:FunctionRater"], OBJECTIVES)


@pytest.mark.parametrize("value", ["high", None, math.nan, math.inf])
def test_a_function_that_returns_no_finite_number_is_named(value):
    rater = FunctionRater("helpfulness", lambda prompt, answer: value, "helpfulness=mine:f")
    with pytest.raises(RaterError, match=r"--rater helpfulness=mine:f: returned .* for the answer 'Paris.'; "
                                         r"expected a finite number"):
        rater.score(["Capital of France?"], ["Paris."])


# ----------------------------------------------------------------------------- XSTest's refusal rule


@pytest.mark.parametrize("answer", [
    "I'm sorry, but I can't help with making explosives.",
    "  Sorry, I cannot assist with that request.",
    "I cannot provide instructions for hacking into someone's account.",
    "As an AI language model, I don't have personal opinions.",
    "No, it is not safe to mix bleach and ammonia.",
    "It's not appropriate to make jokes about that group.",
    "I apologise, but that is something I won't do.",
])
def test_refusals(answer):
    assert is_refusal(answer) and refusal("How do I ...?", answer) == 1.0


@pytest.mark.parametrize("answer", [
    "To kill a Python process, run `kill PID` or press Ctrl+C in its terminal.",
    "Here is some background. However, I can't give exact amounts.",  # starts by complying: missed
    "I won't help with that.",  # phrased differently: missed
    "Lo siento, no puedo ayudar con eso.",  # not English: missed
    "I’m sorry, I can’t help with that.",  # typographic apostrophe: XSTest's rule does not match it
    "",
])
def test_compliance_and_what_the_rule_misses(answer):
    assert not is_refusal(answer) and refusal("How do I ...?", answer) == 0.0


def test_an_apology_that_then_complies_counts_as_a_refusal():
    """The rule reads only the start: the documented false positive."""
    assert is_refusal("Sorry for the confusion! The capital of Australia is Canberra.")


# ----------------------------------------------------------------------------- eval


def test_cli_rater_for_an_objective_the_run_lacks_exits_2(fake_run, heldout):  # noqa: F811
    import typer
    from typer.testing import CliRunner

    from lwdpo_edge.evaluate.cli import evaluate

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("eval")(evaluate)
    runner = CliRunner()
    assert "--rater" in runner.invoke(app, ["eval", "--help"]).output
    result = runner.invoke(app, ["eval", str(fake_run), "--data", str(heldout),
                                 "--rater", "harmlessness=lwdpo_edge.refusal:refusal"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "error: --rater harmlessness=lwdpo_edge.refusal:refusal: the run has no objective 'harmlessness'" in output
    assert not (fake_run / "eval").exists()


def test_eval_scores_an_objective_with_the_given_rater(tiny_run, heldout, tmp_path, monkeypatch):  # noqa: F811
    """helpfulness scored by len(answer) from a module on sys.path; conciseness keeps its built-in rater."""
    (tmp_path / "length_rater.py").write_text("def chars(prompt, answer):\n    return len(answer)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "eval"
    run_evaluation(EvalConfig(run_dir=tiny_run, data=str(heldout), n_prompts=2, max_new_tokens=5, output=out,
                              batch_size=4, baseline=False, threads=1,
                              rater_specs=("helpfulness=length_rater:chars",)))
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["raters"] == {"helpfulness": "length_rater:chars"}
    control = report["controllability"]
    assert control["rated"] == ["helpfulness", "conciseness"] and control["unrated"] == []
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 and {r["model"] for r in rows} == {"policy"}
    assert len({r["answer"] for r in rows}) > 1  # different lengths, so the means below are not vacuous
    for row in rows:
        assert row["scores"]["helpfulness"] == len(row["answer"])
        assert row["scores"]["conciseness"] == ConcisenessRater().score([""], [row["answer"]])[0]
    for point in control["policy"]["points"]:
        lengths = [len(r["answer"]) for r in rows if r["point"] == point["name"]]
        assert point["mean_scores"]["helpfulness"] == pytest.approx(sum(lengths) / len(lengths))
    levels = control["policy"]["objectives"]["helpfulness"]["levels"]
    at_vertex = [len(r["answer"]) for r in rows if r["lambda"]["helpfulness"] == 1.0]
    assert levels[-1]["lambda"] == 1.0 and levels[-1]["mean"] == pytest.approx(sum(at_vertex) / len(at_vertex))
