"""Dataset synthesis: diverse candidates, schema-valid records, resumable atomic output, and the
shipped default dataset."""

import json
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest

import lwdpo_edge  # noqa: F401
from lwdpo_edge import DEFAULT_OBJECTIVES
from lwdpo_edge import synth
from lwdpo_edge.data.schema import ListwiseRecord
from lwdpo_edge.raters import ConcisenessRater, ReadabilityRater
from lwdpo_edge.synth import (
    DEFAULT_PROMPTS,
    STYLES,
    Generation,
    SynthConfig,
    build_messages,
    candidate_seed,
    choose_styles,
    dataset_stats,
    load_prompts,
    partial_path,
    run_synth,
    trim_to_sentence,
)

SHIPPED = Path(synth.__file__).parent / "defaults" / "default_data.jsonl"
BALANCED = ("brief", "simple", "detailed", "plain")  # the styles DATASET.md step 2 put in every list


# ----------------------------------------------------------------------------- pieces


def test_styles_differ_within_a_list_and_are_reproducible():
    import random

    for seed in range(20):
        styles = choose_styles(random.Random(seed), 4)
        assert len({s.name for s in styles}) == 4
        assert styles == choose_styles(random.Random(seed), 4)
    # More candidates than styles: every style is used before any repeats.
    many = choose_styles(random.Random(0), len(STYLES) + 2)
    assert {s.name for s in many[: len(STYLES)]} == {s.name for s in STYLES}


def test_required_styles_come_first_and_the_rest_are_drawn_without_repeats():
    import random

    required = ("brief", "simple", "detailed")
    for seed in range(20):
        styles = [s.name for s in choose_styles(random.Random(seed), 6, required)]
        assert styles[:3] == list(required) and len(set(styles)) == 6
        assert styles == [s.name for s in choose_styles(random.Random(seed), 6, required)]
    assert [s.name for s in choose_styles(random.Random(0), 2, ("simple", "brief"))] == ["simple", "brief"]


def test_bad_style_options_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="unknown style 'breif'"):
        SynthConfig(require_styles="brief,breif")
    with pytest.raises(ValueError, match="names 3 styles but a list has only 2"):
        SynthConfig(require_styles="brief,simple,plain", n_candidates=2)
    with pytest.raises(ValueError, match="--extend needs --require-styles"):
        SynthConfig(extend="data.jsonl")
    help_text = next(f.metadata["help"] for f in fields(SynthConfig) if f.name == "require_styles")
    assert all(style.name in help_text for style in STYLES)  # --help lists every style


def test_style_goes_into_the_user_turn_not_the_system_prompt():
    brief = next(s for s in STYLES if s.name == "brief")
    messages = build_messages("Why is the sky blue?", brief)
    assert messages[0] == {"role": "system", "content": synth.SYSTEM_PROMPT}
    assert messages[1]["content"].startswith("Why is the sky blue?") and brief.instruction in messages[1]["content"]


def test_candidate_seeds_are_stable_and_distinct():
    assert candidate_seed(0, "p0001", 0) == candidate_seed(0, "p0001", 0)
    seeds = {candidate_seed(s, p, k) for s in (0, 1) for p in ("p0001", "p0002") for k in range(4)}
    assert len(seeds) == 16


def test_trim_to_sentence_drops_a_cut_off_tail():
    assert trim_to_sentence("First point. Second point is cut o") == "First point."
    assert trim_to_sentence("Short. " + "no end " * 20) == "Short. " + "no end " * 20  # too little left: keep


def test_packaged_prompts_have_a_fixed_heldout_split():
    rows = load_prompts("default")
    assert len(rows) >= 300
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)
    heldout = sum(r["split"] == "heldout" for r in rows)
    assert 0.12 <= heldout / len(rows) <= 0.20
    assert rows == load_prompts(str(DEFAULT_PROMPTS))


def test_plain_text_prompt_files(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("What is rain?\n\n# a comment\nWhat is snow?\n")
    rows = load_prompts(str(path))
    assert [r["id"] for r in rows] == ["p0001", "p0002"]
    assert [r["prompt"] for r in rows] == ["What is rain?", "What is snow?"]
    assert rows == load_prompts(str(path))  # split from a stable hash, not Python's salted hash()


def test_bad_prompt_rows_name_the_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "ok"}\n{"question": "no prompt"}\n')
    with pytest.raises(ValueError, match=r"prompts.jsonl:2: prompt"):
        load_prompts(str(path))


def test_config_rejects_a_list_of_one():
    with pytest.raises(ValueError, match="n_candidates"):
        SynthConfig(n_candidates=1)


# ----------------------------------------------------------------------------- run_synth with a fake model


class FakeGenerator:
    """Answers by style, so scores differ; counts calls; can fail after a number of calls."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = 0, fail_after

    def generate(self, messages, max_new_tokens, temperature, seed):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # an interrupted run
        self.calls += 1
        user = messages[-1]["content"]
        text = f"Answer {seed % 97}. " + "More words here. " * (len(user) % 7)
        return Generation(text, tokens=len(text.split()), truncated=False)


FAST_RATERS = {"conciseness": ConcisenessRater(), "readability": ReadabilityRater()}


def _run(tmp_path, monkeypatch, generator, limit):
    monkeypatch.setattr(synth, "make_generator", lambda config: generator)
    config = SynthConfig(output=str(tmp_path / "data.jsonl"), limit=limit, n_candidates=4)
    return run_synth(config, raters=FAST_RATERS)


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_records_pass_the_schema_and_keep_the_split(tmp_path, monkeypatch):
    out = _run(tmp_path, monkeypatch, FakeGenerator(), limit=3)
    records = _lines(out)
    prompts = load_prompts("default")[:3]
    assert [r["id"] for r in records] == [p["id"] for p in prompts]
    for record, row in zip(records, prompts):
        ListwiseRecord.from_json(record)
        assert record["prompt"] == row["prompt"] and record["split"] == row["split"]
        assert len(record["responses"]) == 4
        assert {r["meta"]["style"] for r in record["responses"]} <= {s.name for s in STYLES}
    assert not partial_path(out).exists()


def test_rerun_and_extension_generate_nothing_twice(tmp_path, monkeypatch):
    first = FakeGenerator()
    out = _run(tmp_path, monkeypatch, first, limit=2)
    before = _lines(out)
    assert first.calls == 8

    again = FakeGenerator()
    _run(tmp_path, monkeypatch, again, limit=2)
    assert again.calls == 0 and _lines(out) == before

    more = FakeGenerator()
    _run(tmp_path, monkeypatch, more, limit=3)
    after = _lines(out)
    assert more.calls == 4
    assert after[:2] == before and len(after) == 3
    assert len({r["id"] for r in after}) == 3


def test_an_interrupted_run_resumes_from_the_partial_file(tmp_path, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, monkeypatch, FakeGenerator(fail_after=9), limit=4)  # dies inside prompt 3
    partial = partial_path(tmp_path / "data.jsonl")
    assert [r["id"] for r in _lines(partial)] == ["p0001", "p0002"]
    with open(partial, "a") as f:
        f.write('{"id": "p0003", "respo')  # a line torn by the kill

    resumed = FakeGenerator()
    out = _run(tmp_path, monkeypatch, resumed, limit=4)
    assert resumed.calls == 8  # prompts 3 and 4 only
    records = _lines(out)
    assert [r["id"] for r in records] == ["p0001", "p0002", "p0003", "p0004"]
    assert not partial.exists()

    # Same seed, same per-prompt sampling: the resumed file equals an uninterrupted run.
    clean = tmp_path / "clean"
    clean.mkdir()
    assert _lines(_run(clean, monkeypatch, FakeGenerator(), limit=4)) == records


def test_extend_adds_each_missing_style_once_and_keeps_every_old_candidate(tmp_path, monkeypatch):
    original = _lines(_run(tmp_path, monkeypatch, FakeGenerator(), limit=3))
    required = ["brief", "simple", "detailed", "plain"]
    missing = sum(len(set(required) - {r["meta"]["style"] for r in rec["responses"]}) for rec in original)
    assert missing > 0  # the draw of 4 of 7 styles left gaps to fill

    generator = FakeGenerator()
    monkeypatch.setattr(synth, "make_generator", lambda config: generator)
    config = SynthConfig(extend=str(tmp_path / "data.jsonl"), output=str(tmp_path / "extended.jsonl"),
                         require_styles=",".join(required))
    extended = _lines(run_synth(config, raters=FAST_RATERS))
    assert generator.calls == missing  # one generation per missing style, nothing else
    for old, new in zip(original, extended):
        assert new["responses"][: len(old["responses"])] == old["responses"]  # kept verbatim, scores too
        styles = [r["meta"]["style"] for r in new["responses"]]
        assert set(required) <= set(styles) and len(styles) == len(set(styles))
        seeds = [r["meta"]["seed"] for r in new["responses"]]
        assert len(set(seeds)) == len(seeds)  # the added candidates do not reuse a seed
        assert all(set(r["scores"]) == set(FAST_RATERS) for r in new["responses"])
        ListwiseRecord.from_json(new)

    again = FakeGenerator()
    monkeypatch.setattr(synth, "make_generator", lambda config: again)
    assert _lines(run_synth(config, raters=FAST_RATERS)) == extended and again.calls == 0  # rerun: nothing redone
    with pytest.raises(ValueError, match="different files"):
        run_synth(SynthConfig(extend=config.extend, output=config.extend, require_styles="brief"), raters=FAST_RATERS)


# ----------------------------------------------------------------------------- statistics


def _record(scores_by_response, styles):
    return {"prompt": "q", "split": "train", "responses": [
        {"text": "a b", "scores": dict(zip(["a", "b"], s)), "meta": {"style": st}}
        for s, st in zip(scores_by_response, styles)
    ]}


def test_stats_count_conflicts_between_objectives():
    records = [
        _record([(1, 0), (0, 1), (0.5, 0.5)], ["x", "y", "z"]),  # best on a is worst on b, and vice versa
        _record([(1, 1), (0, 0), (0.5, 0.5)], ["x", "y", "z"]),  # objectives agree
    ]
    stats = dataset_stats(records)
    assert stats["n_per_list"] == {3: 2}
    assert stats["best_is_worst"]["a"]["b"] == 0.5
    assert stats["top_disagree"] == 0.5
    assert stats["spearman_within_list"]["a"]["b"] == pytest.approx(0.0)  # -1 and +1
    assert stats["best_style"]["a"] == {"x": 1.0}
    assert stats["spread"]["a"]["range"] == 1.0


# ----------------------------------------------------------------------------- the real default model


@pytest.mark.skipif(not synth.llama_cpp_available(), reason="llama-cpp-python not installed")
def test_llama_cpp_end_to_end_with_the_default_model(tmp_path):
    pytest.importorskip("sentence_transformers")
    config = SynthConfig(output=str(tmp_path / "d.jsonl"), limit=3, max_new_tokens=8, backend="llama_cpp", threads=1)
    out = run_synth(config)
    records = _lines(out)
    assert len(records) == 3
    for record in records:
        ListwiseRecord.from_json(record)
        assert [list(r["scores"]) for r in record["responses"]] == [list(DEFAULT_OBJECTIVES)] * 4
        assert all(r["meta"]["tokens"] <= 8 for r in record["responses"])
    run_synth(config)  # a rerun finds every prompt done
    assert _lines(out) == records


def test_transformers_backend_on_a_tiny_random_model(tmp_path, tiny_llama_dir):
    config = SynthConfig(model=str(tiny_llama_dir), output=str(tmp_path / "t.jsonl"), limit=2, max_new_tokens=6,
                         backend="transformers")
    records = _lines(run_synth(config, raters=FAST_RATERS))
    assert len(records) == 2
    for record in records:
        ListwiseRecord.from_json(record)
        assert all(r["meta"]["tokens"] <= 6 for r in record["responses"])


# ----------------------------------------------------------------------------- the shipped dataset


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.exists():
        pytest.skip("default_data.jsonl not generated yet")
    return _lines(SHIPPED)


def test_shipped_dataset_is_valid_and_covers_both_splits(shipped):
    prompts = {r["id"]: r for r in load_prompts("default")}
    assert len(shipped) >= 250
    assert len({r["id"] for r in shipped}) == len(shipped)
    for record in shipped:
        ListwiseRecord.from_json(record)
        assert record["split"] == prompts[record["id"]]["split"]
        assert record["prompt"] == prompts[record["id"]]["prompt"]
        assert 4 <= len(record["responses"]) <= 7
        assert set(BALANCED) <= {r["meta"]["style"] for r in record["responses"]}  # balanced: in every list
        assert all(list(r["scores"]) == list(DEFAULT_OBJECTIVES) for r in record["responses"])
    assert Counter(r["split"] for r in shipped)["heldout"] >= 30
    assert SHIPPED.stat().st_size < 5_000_000


def test_shipped_styles_are_the_seeded_draw_then_the_missing_balanced_ones(shipped):
    # The style draw is part of the recipe (DATASET.md): a change to choose_styles must not silently change it.
    import random

    for record in shipped[::25]:
        drawn = [s.name for s in choose_styles(random.Random(f"0:{record['id']}"), 4)]
        added = [name for name in BALANCED if name not in drawn]
        assert [r["meta"]["style"] for r in record["responses"]] == drawn + added


def test_shipped_dataset_has_winners_losers_and_conflicts(shipped):
    stats = dataset_stats(shipped, list(DEFAULT_OBJECTIVES))
    for objective in DEFAULT_OBJECTIVES:
        assert stats["clear_top"][objective] > 0.9  # a unique best candidate in almost every list
    assert stats["top_disagree"] > 0.5  # objectives often pick different winners
    for a in DEFAULT_OBJECTIVES:
        for b in DEFAULT_OBJECTIVES:
            if a != b:
                assert stats["best_is_worst"][a][b] > 0.05  # and sometimes flatly opposite ones


def test_shipped_scores_are_reproduced_by_the_raters(shipped):
    pytest.importorskip("sentence_transformers")
    from lwdpo_edge.raters import default_raters, score_answers

    sample = shipped[::40]
    prompts = [r["prompt"] for r in sample for _ in r["responses"]]
    answers = [x["text"] for r in sample for x in r["responses"]]
    stored = [x["scores"] for r in sample for x in r["responses"]]
    for got, want in zip(score_answers(prompts, answers, default_raters()), stored):
        for objective in DEFAULT_OBJECTIVES:
            assert got[objective] == pytest.approx(want[objective], abs=1e-3)
