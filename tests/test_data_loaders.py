"""Loaders: native JSONL, UltraFeedback rows, OpenAssistant trees and datasets folders."""

import json
import warnings
from pathlib import Path

import pytest

from lwdpo_edge.data import DataError, ListwiseRecord, load_records, objectives_of, save_records
from lwdpo_edge.data import loaders

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OASST_FILE = SHARED_DATA / "oasst" / "en_100_tree.jsonl"


def native(prompt="Q?", *scores):
    """A native row with one response per scores dict."""
    scores = scores or ({"h": 1.0}, {"h": 0.0})
    return {"prompt": prompt, "responses": [{"text": f"answer {i}", "scores": s} for i, s in enumerate(scores)]}


def write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


# ----------------------------------------------------------------------------- native JSONL


def test_native_jsonl_ragged_n_ties_nulls_and_sources(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [
        native("a", {"h": 1, "c": 2}, {"h": 1, "c": None}),  # a tie on h, a missing c
        "",  # blank lines are skipped but still counted
        native("b", {"c": 0.5}, {"c": 0.1}, {"c": 0.1}, {"h": 3}),
    ])
    records = load_records(path)
    assert [len(r.responses) for r in records] == [2, 4]
    assert [r.source for r in records] == [f"{path}:1", f"{path}:3"]
    # every response carries every objective, absent -> None, in first-seen order
    assert records[1].responses[0].scores == {"h": None, "c": 0.5}
    assert records[0].responses[1].scores == {"h": 1.0, "c": None}


def test_first_bad_row_raises_with_its_line(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [native(), '{"prompt": "x", "responses": [', native()])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value).startswith(f"{path}:2: row: malformed JSON: ")


@pytest.mark.parametrize("line, message", [
    ("[1, 2]", "row: not a JSON object (got list)"),
    ('{"question": "x"}', "row: unknown row format (keys: question; expected prompt+responses, "
                          "instruction+completions or an OpenAssistant tree)"),
    ('{"prompt": "x", "responses": [{"text": "a", "scores": {"h": NaN}}, {"text": "b", "scores": {}}]}',
     "responses[0].scores.h: score is NaN"),
    ('{"prompt": "x", "responses": [{"text": "a", "scores": {"h": 1}}]}',
     "responses: need at least 2 responses, got 1"),
])
def test_bad_line_messages_from_a_file(tmp_path, line, message):
    path = write_lines(tmp_path / "d.jsonl", [native(), line])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:2: {message}"


def test_invalid_utf8_line_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(native()).encode() + b"\n" + b'{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: row: not valid UTF-8"):
        load_records(path)


def test_skip_bad_counts_every_skipped_row(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [native(), "{oops", native(prompt=""), native("ok 2"), "[]"])
    skipped = []
    records = load_records(path, skip_bad=True, on_skip=skipped.append)
    assert len(records) == 2
    assert [str(e) for e in skipped] == [
        f"{path}:2: row: malformed JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:3: prompt: prompt is empty",
        f"{path}:5: row: not a JSON object (got list)",
    ]


def test_skip_bad_without_callback_warns_never_silent(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [native(), "{oops", "{oops"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(load_records(path, skip_bad=True)) == 1
    assert any("skipped 2 bad row(s)" in str(w.message) for w in caught)


def test_no_valid_records_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no valid records"):
        load_records(write_lines(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(DataError, match=r"no valid records \(1 bad rows skipped\)"):
        load_records(write_lines(tmp_path / "bad.jsonl", ["{"]), skip_bad=True, on_skip=lambda e: None)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: no such file or folder"):
        load_records(tmp_path / "nope.jsonl")


def test_json_array_file(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([native("a"), native("b", {"h": 1}, {"h": 2}, {"h": 3})], indent=2))
    records = load_records(path)
    assert [r.source for r in records] == [f"{path}:row 0", f"{path}:row 1"]
    path.write_text(json.dumps([native("a"), {"prompt": "b"}]))
    with pytest.raises(DataError, match=r"d\.json:row 1: responses: missing"):
        load_records(path)


# ----------------------------------------------------------------------------- objectives


def test_objectives_unknown_name_is_an_error(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [native("a", {"helpfulness": 1}, {"helpfulnes": 0})])
    with pytest.raises(DataError) as info:
        load_records(path, objectives=["helpfulness", "conciseness"])
    assert str(info.value) == (f"{path}:1: responses[1].scores.helpfulnes: unknown objective 'helpfulnes' "
                               "(expected one of: helpfulness, conciseness)")


def test_objectives_fill_and_order(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [native("a", {"c": 1}, {"c": 0, "h": 2})])
    (record,) = load_records(path, objectives="h, c")  # "a,b" works like ["a", "b"]
    assert [list(r.scores.items()) for r in record.responses] == [[("h", None), ("c", 1.0)], [("h", 2.0), ("c", 0.0)]]


def test_objectives_need_a_real_score(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [native("a", {"c": None}, {"h": None})])
    with pytest.raises(DataError) as info:
        load_records(path, objectives=["h", "c"])
    assert str(info.value) == f"{path}:1: scores: no response has a score (all missing or null)"
    # derived formats: the selection can leave a row with nothing to rank by
    path = write_lines(tmp_path / "uf.jsonl", [uf_row()])
    with pytest.raises(DataError) as info:
        load_records(path, objectives=["honesty"])
    assert str(info.value) == f"{path}:1: scores: no response has a score for any of the objectives honesty"


def test_empty_objectives_refused(tmp_path):
    with pytest.raises(DataError, match="objectives: no objective names given"):
        load_records(write_lines(tmp_path / "d.jsonl", [native()]), objectives=[])


def test_save_records_round_trip(tmp_path):
    src = write_lines(tmp_path / "d.jsonl", [native("a", {"h": 1, "c": None}, {"h": 0.5}), native("b")])
    records = load_records(src)
    assert load_records(save_records(records, tmp_path / "out" / "again.jsonl")) == records


# ----------------------------------------------------------------------------- default dataset


def test_default_dataset_missing_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "DEFAULT_DATA", tmp_path / "default_data.jsonl")
    with pytest.raises(DataError, match="shipped default dataset is missing"):
        load_records("default")


def test_default_resolves_to_the_package_file(tmp_path, monkeypatch):
    fake = write_lines(tmp_path / "default_data.jsonl", [native()])
    monkeypatch.setattr(loaders, "DEFAULT_DATA", fake)
    (record,) = load_records("default")
    assert record.source == f"{fake}:1"
    assert loaders.DEFAULT_DATA.name == "default_data.jsonl"


# ----------------------------------------------------------------------------- UltraFeedback


def uf_completion(text, help_rating, honesty_rating, **extra):
    return {
        "model": "m", "response": text,
        "annotations": {
            "helpfulness": {"Rating": help_rating, "Rationale": "..."},
            "Instruction Following": [{"Rating": honesty_rating}],  # the HF export's one-element lists
        },
        **extra,
    }


def uf_row():
    return {
        "source": "evol", "instruction": "Name a prime.", "models": ["m"],
        "completions": [
            uf_completion("2", "5", "4", **{"fine-grained_score": 4.5, "overall_score": 8}),
            uf_completion("9", "1", "N/A", **{"fine-grained_score": 1.0, "overall_score": 2}),
            uf_completion("7", "4", "5"),
        ],
    }


def test_ultrafeedback_rows(tmp_path):
    path = write_lines(tmp_path / "uf.jsonl", [uf_row()])
    (record,) = load_records(path)
    assert record.prompt == [{"role": "user", "content": "Name a prime."}]
    assert [r.text for r in record.responses] == ["2", "9", "7"]
    assert objectives_of([record]) == ["helpfulness", "instruction_following", "fine_grained_score", "overall_score"]
    assert record.responses[1].scores == {"helpfulness": 1.0, "instruction_following": None,
                                          "fine_grained_score": 1.0, "overall_score": 2.0}
    assert record.responses[2].scores["overall_score"] is None  # absent -> missing


def test_ultrafeedback_objectives_select_among_aspects(tmp_path):
    path = write_lines(tmp_path / "uf.jsonl", [uf_row()])
    (record,) = load_records(path, objectives=["helpfulness"])
    assert [r.scores for r in record.responses] == [{"helpfulness": 5.0}, {"helpfulness": 1.0}, {"helpfulness": 4.0}]


def test_ultrafeedback_several_raters_average():
    completion = {"response": "x", "annotations": {"honesty": [{"Rating": "4"}, {"Rating": "N/A"}, {"Rating": 2}]}}
    (record,) = loaders.parse_row({"instruction": "q", "completions": [completion, completion]}, "s")
    assert record.responses[0].scores == {"honesty": 3.0}


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["completions"][1]["annotations"]["helpfulness"].update(Rating="great"),
     "completions[1].annotations.helpfulness.Rating: rating 'great' is not a number or N/A"),
    (lambda r: r["completions"][2].update(response=""), "completions[2].response: text is empty"),
    (lambda r: r["completions"][0]["annotations"]["Instruction Following"][0].pop("Rating"),
     "completions[0].annotations.Instruction Following[0].Rating: missing"),
    (lambda r: r.update(completions=r["completions"][:1]), "completions: need at least 2 completions, got 1"),
    (lambda r: r.update(instruction=""), "instruction: prompt is empty"),
    (lambda r: r["completions"][0].update({"overall_score": "high"}),
     "completions[0].overall_score: score must be a number or null, got string"),
])
def test_ultrafeedback_bad_fields(tmp_path, mutate, message):
    bad = uf_row()
    mutate(bad)
    path = write_lines(tmp_path / "uf.jsonl", [uf_row(), bad])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:2: {message}"


# ----------------------------------------------------------------------------- OpenAssistant


def node(role, text, rank=None, replies=(), **extra):
    return {"message_id": text, "role": role, "text": text, "rank": rank, "replies": list(replies), **extra}


def oasst_tree():
    return {"message_tree_id": "t", "prompt": node("prompter", "root question", replies=[
        node("assistant", "second best", rank=1, labels={"quality": {"value": 0.5, "count": 3},
                                                         "spam": {"value": 0.0, "count": 3}}),
        node("assistant", "best", rank=0, replies=[
            node("prompter", "follow up", replies=[
                node("assistant", "f-a", rank=0), node("assistant", "f-b", rank=1),
                node("assistant", "f-gone", rank=2, deleted=True),
            ]),
        ]),
        node("assistant", "unranked"),
    ])}


def test_oasst_tree_records_and_paths():
    records = loaders.parse_row(oasst_tree(), "t.jsonl:1")
    assert [r.prompt[-1]["content"] for r in records] == ["root question", "follow up"]
    first, follow = records
    assert [r.text for r in first.responses] == ["second best", "best"]  # the unranked reply is no candidate
    assert first.responses[0].scores == {"human_preference": -1.0, "quality": 0.5}  # spam is not an objective
    assert first.responses[1].scores == {"human_preference": 0.0}
    assert [m["role"] for m in follow.prompt] == ["user", "assistant", "user"]
    assert follow.prompt[1]["content"] == "best"
    assert [r.text for r in follow.responses] == ["f-a", "f-b"]  # the deleted reply is left out


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t["prompt"]["replies"][1].update(rank="0"),
     "prompt.replies[1].rank: rank must be a non-negative integer or null, got '0'"),
    (lambda t: t["prompt"]["replies"][1]["replies"][0]["replies"][1].update(text=""),
     "prompt.replies[1].replies[0].replies[1].text: text is empty"),
    (lambda t: t["prompt"]["replies"][0].update(role="bot"),
     "prompt.replies[0].role: unknown role 'bot' (expected prompter or assistant)"),
    (lambda t: t["prompt"]["replies"][0]["labels"]["quality"].update(value=float("nan")),
     "prompt.replies[0].labels.quality.value: score is NaN"),
])
def test_oasst_bad_fields(tmp_path, mutate, message):
    bad = oasst_tree()
    mutate(bad)
    path = write_lines(tmp_path / "t.jsonl", [oasst_tree(), bad])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value) == f"{path}:2: {message}"


@pytest.mark.skipif(not OASST_FILE.exists(), reason="needs ../shared/data/oasst")
def test_oasst_real_file():
    records = load_records(OASST_FILE)
    trees = [json.loads(line) for line in OASST_FILE.read_text().splitlines() if line.strip()]
    assert len(records) >= 100  # 100 trees, about 2 ranked prompter messages each
    assert objectives_of(records) == ["human_preference"]  # this export carries no labels
    by_text = {}
    for tree in trees:  # rank of every assistant message, to check the mapping against the file
        stack = [tree["prompt"]]
        while stack:
            message = stack.pop()
            by_text[message["text"]] = message.get("rank")
            stack.extend(message.get("replies", []))
    for record in records:
        assert len(record.responses) >= 2
        assert record.prompt[0]["role"] == "user" and record.prompt[-1]["role"] == "user"
        scores = [r.scores["human_preference"] for r in record.responses]
        best = record.responses[scores.index(max(scores))]
        assert by_text[best.text] == min(by_text[r.text] for r in record.responses)
        assert all(s == -by_text[r.text] for s, r in zip(scores, record.responses))
    assert any(len(r.prompt) > 1 for r in records)  # follow-up turns carry their conversation


# ----------------------------------------------------------------------------- datasets folders


def test_datasets_folder_equals_jsonl_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [native("a", {"h": 1, "c": None}, {"h": 0.5, "c": 2}),
            native("b", {"h": 1, "c": 3}, {"h": 0.5, "c": 2}, {"h": 0.1, "c": 0})]
    jsonl = write_lines(tmp_path / "d.jsonl", rows)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    from_folder = load_records(tmp_path / "ds")
    assert from_folder == load_records(jsonl)
    assert from_folder[1].source == f"{tmp_path / 'ds'}:row 1"


def test_datasets_folder_with_ultrafeedback_rows(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([uf_row()]).save_to_disk(str(tmp_path / "uf"))
    assert load_records(tmp_path / "uf") == load_records(write_lines(tmp_path / "uf.jsonl", [uf_row()]))


def test_datasets_dict_must_name_a_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    split = datasets.Dataset.from_list([native()])
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="splits train, test: pass one split's folder"):
        load_records(tmp_path / "dd")
    assert len(load_records(tmp_path / "dd" / "train")) == 1


def test_plain_folder_is_not_a_dataset(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a folder saved with datasets' save_to_disk"):
        load_records(tmp_path / "empty")


def test_records_are_listwise_records(tmp_path):
    (record,) = load_records(write_lines(tmp_path / "d.jsonl", [native()]))
    assert isinstance(record, ListwiseRecord)
