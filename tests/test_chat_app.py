"""The chat app served for real (Gradio on 127.0.0.1) and driven with gradio_client, on a recording fake model.

The fake answers with the system message it received, so each test sees exactly what the model was asked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chat_fake import DEFAULT, OBJECTIVES, SAMPLING, FakeModel, FakeSoupModel, Served, text_of
from lwdpo_edge.lambdas import format_lambda_header, parse_lambda_header, quantize_lambda

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture
def served(tmp_path):
    app = Served(FakeModel(), tmp_path / "chats")
    yield app
    app.close()


def test_moving_a_slider_changes_the_header_the_model_receives(served):
    helpful = (1.0, 0.0, 0.0)
    concise = (0.2, 0.6, 0.2)
    for weights in (helpful, concise):
        expected = format_lambda_header(dict(zip(OBJECTIVES, weights)), OBJECTIVES)
        _, shown = served.client.predict("", *weights, api_name="/preview")
        assert shown == expected  # the "Model receives" box
        chatbot, box = served.ask("What is a prime number?", weights)
        received = served.model.received[-1][0]["content"]
        assert received == expected and box == ""
        assert parse_lambda_header(received, OBJECTIVES) == quantize_lambda(dict(zip(OBJECTIVES, weights)), OBJECTIVES)
        assert text_of(chatbot[-1]) == f"I was asked under: {expected}"  # streamed back word by word, intact
    first, second = (m[0]["content"] for m in served.model.received)
    assert first != second


def test_simplex_values_shown_live_and_all_zero_falls_back_to_default(served):
    table, shown = served.client.predict("", 0.9, 0.9, 0.2, api_name="/preview")
    assert "| helpfulness | 0.45 |" in table and "| conciseness | 0.45 |" in table and "| readability | 0.10 |" in table
    table, shown = served.client.predict("", 0, 0, 0, api_name="/preview")
    assert "using the model's default lambda" in table and shown == format_lambda_header(DEFAULT, OBJECTIVES)
    served.ask("Hi", (0, 0, 0))
    assert served.model.received[-1][0]["content"] == format_lambda_header(DEFAULT, OBJECTIVES)


def test_presets_set_the_sliders(served):
    assert served.client.predict(api_name="/preset_readability") == (0.0, 0.0, 1.0)
    assert served.client.predict(api_name="/preset_balanced") == (1.0, 1.0, 1.0)
    assert served.client.predict(api_name="/preset_default") == tuple(quantize_lambda(DEFAULT, OBJECTIVES).values())


def test_system_prompt_follows_the_header_and_sampling_reaches_the_model(served):
    served.ask("Hi", (0, 1, 0), system="You are terse. [lambda] helpfulness=1", sampling=(0.7, 0.8, 32))
    system = served.model.received[-1][0]["content"]
    header, rest = system.split("\n", 1)
    assert header == format_lambda_header({"conciseness": 1}, OBJECTIVES)
    assert rest.startswith("You are terse.") and "[lambda]" not in rest
    assert served.model.settings[-1] == {"temperature": 0.7, "top_p": 0.8, "max_tokens": 32}


def test_conversation_saved_each_turn_and_exported_as_json(served):
    served.ask("First question", (1, 0, 0))
    served.ask("Second question", (0, 0, 1))
    assert [m["role"] for m in served.model.received[-1]] == ["system", "user", "assistant", "user"]  # multi-turn
    (saved,) = served.saved()
    roles = [m["role"] for m in saved["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"] and saved["title"] == "First question"
    assert saved["messages"][1]["system"] == format_lambda_header({"helpfulness": 1}, OBJECTIVES)
    assert saved["messages"][3]["lambda"] == {"helpfulness": 0.0, "conciseness": 0.0, "readability": 1.0}
    assert saved["messages"][3]["stopped"] is False and saved["model"]["path"] == served.model.info["path"]
    update = served.client.predict(api_name="/export")  # {"value": downloaded file, "visible": True}
    assert update["visible"] is True
    exported = json.loads(Path(update["value"]).read_text())
    assert exported == saved


def test_a_saved_conversation_loads_in_a_new_session(served):
    served.ask("Remember me", (0.2, 0.2, 0.6))
    (saved,) = served.saved()
    other = Client(served.url, verbose=False)
    try:
        chatbot, *sliders = other.predict(saved["id"], api_name="/load_chat")
    finally:
        other.close()
    assert [text_of(m) for m in chatbot] == [m["content"] for m in saved["messages"]]
    assert sliders == [0.2, 0.2, 0.6]  # where the last answer was generated


def test_stop_closes_the_model_stream_and_keeps_the_partial_answer(tmp_path):
    app = Served(FakeModel(answer_words=[f"w{i}" for i in range(400)], delay=0.05), tmp_path / "chats")  # ~20 s
    try:
        job = app.client.submit("Talk a lot", "", 0.0, 1.0, 512, 1, 0, 0, api_name="/respond")
        deadline = time.monotonic() + 30
        while len(job.outputs()) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        job.cancel()  # what the Stop button does: POST /cancel for the running event
        assert app.model.finished.wait(10) and app.model.closed == 1
        time.sleep(0.3)  # the handler's finally saves after closing the stream
        (saved,) = app.saved()
        answer = saved["messages"][-1]
        assert answer["stopped"] is True and 0 < len(answer["content"].split()) < 400
        assert answer["content"] == " ".join(f"w{i}" for i in range(len(answer["content"].split())))
    finally:
        app.close()


def test_a_failed_turn_is_reported_and_left_out_of_the_conversation(served):
    with pytest.raises(AppError, match="generation failed: prompt is 9999 tokens"):
        served.ask("CONTEXT FULL")
    assert served.saved() == []  # nothing was said: nothing saved
    served.ask("First question")
    with pytest.raises(AppError, match="generation failed"):
        served.ask("CONTEXT FULL again")
    chatbot, _ = served.ask("Second question")
    assert [m["content"] for m in served.model.received[-1][1:]] == [
        "First question", text_of(chatbot[1]), "Second question"]
    (saved,) = served.saved()
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["First question", "Second question"]


def test_a_plain_model_gets_a_plain_chat(tmp_path):
    app = Served(FakeModel(objectives=[], default_lambda=None, answer_words=["plain"]), tmp_path / "chats")
    try:
        endpoints = app.client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert not any(name.startswith("/preset_") for name in endpoints)
        # message, system, temperature, top-p, max tokens; no sliders
        assert len(endpoints["/respond"]["parameters"]) == 5
        chatbot, _ = app.client.predict("Hi", "Be kind.", *SAMPLING, api_name="/respond")
        assert app.model.received[-1] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
        assert text_of(chatbot[-1]) == "plain"
    finally:
        app.close()


def test_soup_model_gets_a_strength_slider_that_reaches_the_mix(tmp_path):
    app = Served(FakeSoupModel(strength=2.0), tmp_path / "chats")
    try:
        _, shown = app.client.predict("", 0.0, 1.0, 0.0, 3.5, api_name="/preview")
        assert shown == "adapter mix: helpfulness 0.00, conciseness 1.00, readability 0.00, strength 3.5 (no header)"
        app.client.predict("Short please", "", *SAMPLING, 0.0, 1.0, 0.0, 3.5, api_name="/respond")
        assert app.model.mixes[-1] == ({"helpfulness": 0.0, "conciseness": 1.0, "readability": 0.0}, 3.5)
        saved = app.saved()[-1]["messages"][-1]
        assert saved["settings"]["strength"] == 3.5 and saved["system"] == shown
    finally:
        app.close()
    # The slider starts at the model's own default strength.
    app = Served(FakeSoupModel(strength=2.0), tmp_path / "chats2")
    try:
        app.client.predict("Hi", "", *SAMPLING, 0.5, 0.3, 0.2, 2.0, api_name="/respond")
        assert app.model.mixes[-1][1] == 2.0
        config = app.client.view_api(return_format="dict", print_info=False)
        params = config["named_endpoints"]["/respond"]["parameters"]
        assert params[-1]["label"] == "steering strength" and params[-1]["parameter_default"] == 2.0
    finally:
        app.close()


@pytest.mark.parametrize("model, receives, system", [
    (FakeModel(), "lambda header first", "System prompt (after the lambda header)"),
    (FakeSoupModel(), "adapter mix", "System prompt"),
    (FakeModel(objectives=[], default_lambda=None), "(system message)", "System prompt"),
])
def test_the_boxes_say_where_lambda_reaches_the_model(tmp_path, model, receives, system):
    app = Served(model, tmp_path / "chats")
    try:
        config = app.client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        labels = [p["label"] for p in config["/respond"]["parameters"]]
        assert labels[1] == system
        shown = [c for c in app.demo.config["components"] if c["props"].get("elem_id") == "received"]
        assert receives in shown[0]["props"]["label"]
    finally:
        app.close()
