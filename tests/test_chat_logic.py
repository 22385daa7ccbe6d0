"""The chat app without a server: slider weights -> lambda, presets, history files, the CLI's no-model error."""

from __future__ import annotations

import json
import os
import time

import pytest
from typer.testing import CliRunner

from chat_fake import DEFAULT, OBJECTIVES, FakeModel
from lwdpo_edge.apps.chat_config import ChatSetupError, default_model_path
from lwdpo_edge.apps.chat_logic import (ALL_ZERO_NOTE, presets, received_system, simplex_markdown,
                                        slider_lambda)
from lwdpo_edge.apps.history import ChatHistory, HistoryError
from lwdpo_edge.cli import app
from lwdpo_edge.lambdas import format_lambda_header, parse_lambda_header, quantize_lambda


def test_sliders_are_raw_weights_normalised_by_the_lambda_module():
    model = FakeModel()
    lam, note = slider_lambda(model, [0.6, 0.3, 0.3])
    assert lam == quantize_lambda({"helpfulness": 0.6, "conciseness": 0.3, "readability": 0.3}, OBJECTIVES)
    assert lam == {"helpfulness": 0.5, "conciseness": 0.25, "readability": 0.25} and note == ""
    table = simplex_markdown(lam)
    assert "| helpfulness | 0.50 |" in table and "| readability | 0.25 |" in table


def test_all_zero_sliders_fall_back_to_the_default_with_a_note():
    lam, note = slider_lambda(FakeModel(), [0, 0, 0])
    assert lam == quantize_lambda(DEFAULT, OBJECTIVES) and note == ALL_ZERO_NOTE
    assert ALL_ZERO_NOTE in simplex_markdown(lam, note)


def test_negative_weight_from_the_api_is_refused_with_the_reason():
    lam, note = slider_lambda(FakeModel(), [-1, 1, 0])
    assert lam == quantize_lambda(DEFAULT, OBJECTIVES) and "negative" in note and "helpfulness" in note


def test_presets_are_vertices_balanced_and_default():
    table = presets(FakeModel())
    assert table["conciseness"] == [0.0, 1.0, 0.0]
    assert slider_lambda(FakeModel(), table["balanced"])[0] == {"helpfulness": 0.34, "conciseness": 0.33,
                                                                "readability": 0.33}
    assert slider_lambda(FakeModel(), table["default"])[0] == quantize_lambda(DEFAULT, OBJECTIVES)


def test_received_system_is_the_header_then_the_neutralised_system_prompt():
    model = FakeModel()
    lam = {"helpfulness": 0.0, "conciseness": 1.0, "readability": 0.0}
    text = received_system(model, lam, "Be brief. [lambda] helpfulness=1")
    header, rest = text.split("\n", 1)
    assert header == format_lambda_header(lam, OBJECTIVES) and parse_lambda_header(text, OBJECTIVES) == lam
    assert "[lambda]" not in rest and rest.startswith("Be brief.")  # the user cannot override the sliders


def test_plain_model_gets_no_lambda_and_no_header():
    model = FakeModel(objectives=[], default_lambda=None)
    assert slider_lambda(model, []) == (None, "") and presets(model) == {}
    assert received_system(model, None, "") == "" and received_system(model, None, "Hi") == "Hi"
    assert "no lambda contract" in simplex_markdown(None)


def test_history_round_trip_atomic_and_listed_newest_first(tmp_path):
    history = ChatHistory(tmp_path / "chats")
    first = history.new_conversation({"path": "m.gguf"})
    first["messages"] += [{"role": "user", "content": "Hello   there\nfriend"}, {"role": "assistant", "content": "Hi"}]
    path = history.save(first)
    assert json.loads(path.read_text()) == first and first["title"] == "Hello there friend"
    assert history.load(first["id"]) == first
    time.sleep(1.1)  # ids carry the second they were made in
    second = history.save(history.new_conversation({}))
    assert [cid for _, cid in history.list()] == [second.stem, first["id"]]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_history_refuses_ids_that_are_paths(tmp_path):
    history = ChatHistory(tmp_path)
    for bad in ("../secret", "/etc/passwd", "", "20250101-120000-zzzzzz"):
        with pytest.raises(HistoryError, match="not a conversation id"):
            history.load(bad)


def test_default_model_is_the_newest_demo_export(tmp_path):
    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    older, newer = export / "run.q8_0.gguf", export / "run.f16.gguf"
    older.write_bytes(b"GGUF"), newer.write_bytes(b"GGUF")
    os.utime(older, (1, 1))
    assert default_model_path(tmp_path / "run") == newer
    with pytest.raises(ChatSetupError, match="lwdpo-edge export"):
        default_model_path(tmp_path / "elsewhere")


def test_cli_without_model_says_how_to_make_one_and_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/demo/export here
    result = CliRunner().invoke(app, ["chat", "--no-browser"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "make demo && lwdpo-edge export runs/demo" in lines[0]


def test_cli_with_a_bad_model_path_names_it(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    result = CliRunner().invoke(app, ["chat", str(bad), "--no-browser"])
    assert result.exit_code == 2 and "notes.txt" in result.output and "not a GGUF" in result.output
