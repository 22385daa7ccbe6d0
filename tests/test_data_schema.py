"""The record schema: JSON round trip and the exact messages for bad fields."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwdpo_edge.data import DataError, ListwiseRecord, Response, objectives_of


def row(**overrides):
    base = {
        "prompt": "Why is the sky blue?",
        "responses": [
            {"text": "Rayleigh scattering.", "scores": {"helpfulness": 0.9, "conciseness": 0.5}},
            {"text": "No idea.", "scores": {"helpfulness": 0.1, "conciseness": 0.9}},
        ],
    }
    base.update(overrides)
    return base


def error_of(obj, source="data.jsonl:7"):
    with pytest.raises(DataError) as info:
        ListwiseRecord.from_json(obj, source=source)
    return str(info.value)


def test_plain_string_prompt_becomes_one_user_message():
    record = ListwiseRecord.from_json(row(), source="x.jsonl:1")
    assert record.prompt == [{"role": "user", "content": "Why is the sky blue?"}]
    assert record.source == "x.jsonl:1"
    assert record.responses[0] == Response("Rayleigh scattering.", {"helpfulness": 0.9, "conciseness": 0.5})


def test_round_trip_keeps_extra_keys_as_meta():
    messages = [
        {"role": "system", "content": ""},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "tell me a joke", "name": "bob"},
    ]
    record = ListwiseRecord.from_json(row(prompt=messages, id=3, meta={"a": 1}))
    assert record.prompt[-1] == {"role": "user", "content": "tell me a joke"}  # extra message keys dropped
    again = ListwiseRecord.from_json(record.to_json())
    assert again == record
    assert set(record.to_json()) == {"id", "meta", "prompt", "responses"}
    assert record.meta == {"id": 3, "meta": {"a": 1}} and again.meta == record.meta


def test_ties_nulls_and_ints_are_fine():
    record = ListwiseRecord.from_json(
        row(responses=[{"text": "a", "scores": {"h": 1, "c": None}}, {"text": "b", "scores": {"h": 1.0}}])
    )
    assert record.responses[0].scores == {"h": 1.0, "c": None}
    assert isinstance(record.responses[0].scores["h"], float)


def test_source_is_not_part_of_equality():
    assert ListwiseRecord.from_json(row(), source="a:1") == ListwiseRecord.from_json(row(), source="b:9")


@pytest.mark.parametrize(
    "obj, message",
    [
        ([1, 2], "data.jsonl:7: row: not a JSON object (got list)"),
        ({"responses": []}, "data.jsonl:7: prompt: missing"),
        (row(prompt=""), "data.jsonl:7: prompt: prompt is empty"),
        (row(prompt=[]), "data.jsonl:7: prompt: prompt is empty"),
        (row(prompt=5), "data.jsonl:7: prompt: must be a string or a list of messages, got number"),
        (row(prompt=["hi"]), "data.jsonl:7: prompt[0]: message must be an object with role and content, got string"),
        (row(prompt=[{"role": "bot", "content": "x"}]),
         "data.jsonl:7: prompt[0].role: unknown role 'bot' (expected system, user or assistant)"),
        (row(prompt=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]),
         "data.jsonl:7: prompt[1].role: prompt must end with a user turn, got assistant"),
        (row(prompt=[{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                     {"role": "user", "content": "q"}]),
         "data.jsonl:7: prompt[1].role: a system message must come first"),
        (row(prompt=[{"role": "user", "content": "  "}]), "data.jsonl:7: prompt[0].content: content is empty"),
        (row(prompt=[{"role": "user"}]), "data.jsonl:7: prompt[0].content: content must be a string, got null"),
        ({"prompt": "q"}, "data.jsonl:7: responses: missing"),
        (row(responses={"text": "a"}), "data.jsonl:7: responses: must be a list of responses, got object"),
        (row(responses=[{"text": "a", "scores": {"h": 1}}]),
         "data.jsonl:7: responses: need at least 2 responses, got 1"),
        (row(responses=["a", "b"]), "data.jsonl:7: responses[0]: must be an object with text and scores, got string"),
        (row(responses=[{"text": "a", "scores": {}}, {"scores": {}}]), "data.jsonl:7: responses[1].text: missing"),
        (row(responses=[{"text": "a", "scores": {"h": 1}}, {"text": ""}]),
         "data.jsonl:7: responses[1].text: text is empty"),
        (row(responses=[{"text": "a", "scores": {"h": 1}}, {"text": 3, "scores": {}}]),
         "data.jsonl:7: responses[1].text: text must be a string, got number"),
        (row(responses=[{"text": "a", "scores": {"h": 1}}, {"text": "b"}]),
         "data.jsonl:7: responses[1].scores: missing"),
        (row(responses=[{"text": "a", "scores": {"h": 1}}, {"text": "b", "scores": [1]}]),
         "data.jsonl:7: responses[1].scores: scores must be an object {objective: number | null}, got list"),
        (row(responses=[{"text": "a", "scores": {"h": "4"}}, {"text": "b", "scores": {}}]),
         "data.jsonl:7: responses[0].scores.h: score must be a number or null, got string"),
        (row(responses=[{"text": "a", "scores": {"h": True}}, {"text": "b", "scores": {}}]),
         "data.jsonl:7: responses[0].scores.h: score must be a number or null, got bool"),
        (row(responses=[{"text": "a", "scores": {"h": 1}}, {"text": "b", "scores": {"helpfulness": math.nan}}]),
         "data.jsonl:7: responses[1].scores.helpfulness: score is NaN"),
        (row(responses=[{"text": "a", "scores": {"h": math.inf}}, {"text": "b", "scores": {}}]),
         "data.jsonl:7: responses[0].scores.h: score is +inf"),
        (row(responses=[{"text": "a", "scores": {"h": -math.inf}}, {"text": "b", "scores": {}}]),
         "data.jsonl:7: responses[0].scores.h: score is -inf"),
        (row(responses=[{"text": "a", "scores": {"h": 10**400}}, {"text": "b", "scores": {}}]),
         "data.jsonl:7: responses[0].scores.h: score is too large for a float"),
        (row(responses=[{"text": "a", "scores": {"h": None}}, {"text": "b", "scores": {}}]),
         "data.jsonl:7: scores: no response has a score (all missing or null)"),
    ],
)
def test_bad_fields_give_file_line_field_problem(obj, message):
    assert error_of(obj) == message


def test_objective_names_must_fit_the_lambda_header():
    bad = row(responses=[{"text": "a", "scores": {"my score": 1}}, {"text": "b", "scores": {}}])
    assert error_of(bad).startswith("data.jsonl:7: responses[0].scores.my score: objective name 'my score' must be")


def test_error_keeps_its_parts():
    with pytest.raises(DataError) as info:
        ListwiseRecord.from_json(row(prompt=""), source="f:2")
    err = info.value
    assert (err.source, err.field, err.problem) == ("f:2", "prompt", "prompt is empty")
    assert isinstance(err, ValueError)
    assert str(DataError("plain message")) == "plain message"


def test_objectives_of_is_first_seen_union():
    a = ListwiseRecord.from_json(row(responses=[{"text": "a", "scores": {"b": 1}}, {"text": "b", "scores": {"a": 1}}]))
    b = ListwiseRecord.from_json(row(responses=[{"text": "a", "scores": {"c": 1, "a": 2}},
                                                {"text": "b", "scores": {}}]))
    assert objectives_of([a, b]) == ["b", "a", "c"]


# ----------------------------------------------------------------------------- property test

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True)
scores = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6))
texts = st.text(min_size=1).filter(str.strip)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": texts}), max_size=3
).map(lambda turns: turns + [{"role": "user", "content": "last question"}])
responses = st.lists(st.fixed_dictionaries({"text": texts, "scores": st.dictionaries(names, scores, max_size=4)}),
                     min_size=2, max_size=6)


@settings(max_examples=60, deadline=None)
@given(prompt=st.one_of(texts, messages), responses=responses)
def test_json_round_trip_property(prompt, responses):
    obj = {"prompt": prompt, "responses": responses}
    if all(s is None for r in responses for s in r["scores"].values()):
        with pytest.raises(DataError):
            ListwiseRecord.from_json(obj)
        return
    record = ListwiseRecord.from_json(obj)
    assert ListwiseRecord.from_json(record.to_json()) == record
    assert [r.text for r in record.responses] == [r["text"] for r in responses]
    assert record.prompt[-1]["role"] == "user"
