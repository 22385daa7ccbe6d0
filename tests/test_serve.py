"""`lwdpo-edge serve`: a real uvicorn server (in a thread, ephemeral port) over the tiny f16 GGUF export.

Answers are checked against the runtime called directly (and against the memorised answers), errors
against OpenAI's error shape, and a crowd of concurrent requests against the same requests run alone.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from lwdpo_edge import load_model
from lwdpo_edge.apps.serve import create_app
from lwdpo_edge.apps.serve_schema import Limits
from lwdpo_edge.export.verify import PROBE_PROMPTS
from lwdpo_edge.runtime.base import ChatModel
from runtime_helpers import ANSWERS, LAMBDA_DEFAULT, OBJECTIVES, Server, tiny_export

USER = [{"role": "user", "content": PROBE_PROMPTS[0]}]
LIMITS = Limits(max_body_bytes=20_000, max_messages=8, max_tokens=64, default_max_tokens=32)


@pytest.fixture(scope="module")
def model(tmp_path_factory, smollm2_tokenizer):
    loaded = load_model(tiny_export("gguf", tmp_path_factory, smollm2_tokenizer), threads=1)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def server(model):
    running = Server(create_app(model, LIMITS))
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def post(client, **body):
    return client.post("/v1/chat/completions", json={"model": "run.f16", "temperature": 0, **body})


def sse_chunks(response) -> list:
    """The data: payloads of an SSE response, [DONE] kept as the string."""
    events = [line[len("data: "):] for line in response.text.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def assert_error(response, status, param=None, code=None, text=None):
    assert response.status_code == status
    error = response.json()["error"]
    assert (set(error) == {"message", "type", "param", "code"}
            and error["type"] in ("invalid_request_error", "authentication_error"))
    assert param is None or error["param"] == param
    assert code is None or error["code"] == code
    assert text is None or text in error["message"]


def test_models_endpoint_lists_the_model_and_its_contract(client):
    data = client.get("/v1/models").json()
    assert data["object"] == "list" and [m["id"] for m in data["data"]] == ["run.f16"]
    card = data["data"][0]
    assert card["object"] == "model" and card["lwdpo"]["objectives"] == OBJECTIVES
    assert card["lwdpo"]["default_lambda"] == LAMBDA_DEFAULT and card["lwdpo"]["format"] == "gguf"
    assert client.get("/v1/models/run.f16").json() == card
    assert_error(client.get("/v1/models/gpt-4"), 404, "model", "model_not_found")
    assert_error(client.get("/v1/nothing"), 404)


def test_chat_completion_matches_the_runtime(client, model):
    response = post(client, messages=USER)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "run.f16" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ANSWERS[0]} and choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == model.chat(USER, max_tokens=32)
    prompt_tokens = len(model.encode(model.prompt(USER)))
    completion_tokens = len(model.encode(ANSWERS[0]))
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    assert body["lwdpo"]["lambda"] == LAMBDA_DEFAULT  # the default lambda, echoed
    short = post(client, messages=USER, max_tokens=2).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 2


def test_lambda_per_request_and_header_in_system_message(client, model):
    steered = post(client, messages=USER, lwdpo={"lambda": {"conciseness": 3, "helpfulness": 1}}).json()
    assert steered["lwdpo"]["lambda"] == {"helpfulness": 0.25, "conciseness": 0.75, "readability": 0.0}
    assert steered["choices"][0]["message"]["content"] == model.chat(USER, {"conciseness": 3, "helpfulness": 1},
                                                                     max_tokens=32)
    as_list = post(client, messages=USER, lwdpo={"lambda": [1, 3, 0]}).json()
    assert as_list["lwdpo"]["lambda"] == steered["lwdpo"]["lambda"]
    header = [{"role": "system", "content": "[lambda] helpfulness=0.25 conciseness=0.75 readability=0.00"}, *USER]
    honoured = post(client, messages=header).json()
    assert honoured["lwdpo"]["lambda"] == steered["lwdpo"]["lambda"]
    assert honoured["usage"] == steered["usage"]  # the same prompt, token for token


def test_streaming_sends_openai_chunks_that_add_up_to_the_answer(client):
    response = post(client, messages=USER, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(response)
    assert chunks[-1] == "[DONE]"
    *body, usage_chunk, done = chunks
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "run.f16" for c in body)
    assert len({c["id"] for c in body + [usage_chunk]}) == 1
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert body[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in body)
    assert text == ANSWERS[0] == post(client, messages=USER).json()["choices"][0]["message"]["content"]
    assert len(body) > 4  # token by token, not one block
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == len(body) - 2
    no_usage = sse_chunks(post(client, messages=USER, stream=True))
    assert no_usage[-1] == "[DONE]" and "usage" not in no_usage[-2]


@pytest.mark.parametrize("lam, text", [
    ({"kindness": 1}, "unknown objective(s) ['kindness']"), ({"helpfulness": -1}, "is negative"),
    ({"helpfulness": 0}, "sums to 0"), ([1, 2], "2 values but there are 3 objectives"),
    ({"helpfulness": "x"}, "not a number"),
])
def test_bad_lambda_is_a_400_naming_the_problem(client, lam, text):
    assert_error(post(client, messages=USER, lwdpo={"lambda": lam}), 400, "lwdpo.lambda", "invalid_lambda", text)
    assert_error(post(client, messages=USER, stream=True, lwdpo={"lambda": lam}), 400, "lwdpo.lambda", "invalid_lambda",
                 text)


def test_bad_header_in_system_message_is_a_400(client):
    header = [{"role": "system", "content": "[lambda] kindness=1.00"}, *USER]
    assert_error(post(client, messages=header), 400, "messages", "invalid_lambda", "kindness")


def test_requests_over_the_limits_or_malformed_are_refused(client):
    assert_error(post(client, messages=[{"role": "user", "content": "x" * 30_000}]), 413, code="request_too_large")
    chunked = client.post("/v1/chat/completions", content=iter([b"{" + b" " * 15_000, b" " * 15_000 + b"}"]))
    assert_error(chunked, 413, code="request_too_large")  # no Content-Length: counted while reading
    assert_error(post(client, messages=USER * 9), 400, "messages", "too_many_messages")
    assert_error(post(client, messages=USER, max_tokens=65), 400, "max_tokens", "max_tokens_too_large")
    assert_error(post(client, messages=USER, max_completion_tokens=100), 400, "max_tokens")
    assert_error(post(client, messages=[]), 400, "messages")
    assert_error(post(client, messages=[{"role": "robot", "content": "x"}]), 400, "messages.0.role")
    assert_error(post(client, messages=USER, temperature=5), 400, "temperature")
    assert_error(post(client, messages=USER, repetition_penalty=0.9), 400, "repetition_penalty")
    assert_error(post(client, messages=USER, n=2), 400, "n")
    assert_error(post(client, messages=USER, stop=["\n"]), 400, "stop", "unsupported_parameter")
    assert_error(post(client, messages=USER, model="gpt-4"), 404, "model", "model_not_found")
    assert_error(client.post("/v1/chat/completions", content=b"{not json"), 400, code="invalid_json")
    assert_error(client.post("/v1/chat/completions", content=b"[1, 2]"), 400, code="invalid_json")
    long_prompt = [{"role": "user", "content": "word " * 1500}]  # fits the body limit, not the 1024-token context
    assert_error(post(client, messages=long_prompt), 400, "messages", "context_length_exceeded")


def test_the_repetition_penalty_is_the_runtimes_default_unless_the_request_sets_one(client, model, monkeypatch):
    from lwdpo_edge.decoding import REPETITION_PENALTY

    seen, chat = [], model.chat

    def recording_chat(*args, **kwargs):
        seen.append(kwargs["repetition_penalty"])
        return chat(*args, **kwargs)

    monkeypatch.setattr(model, "chat", recording_chat)
    assert post(client, messages=USER).status_code == 200
    assert post(client, messages=USER, repetition_penalty=1.0, stream=True).status_code == 200
    assert seen == [REPETITION_PENALTY, 1.0]


def test_content_parts_and_developer_role_are_accepted(client):
    parts = [{"role": "developer", "content": "Be brief."},
             {"role": "user", "content": [{"type": "text", "text": PROBE_PROMPTS[0]}]}]
    plain = [{"role": "system", "content": "Be brief."}, *USER]
    assert post(client, messages=parts).json()["usage"] == post(client, messages=plain).json()["usage"]


def load_requests() -> list[dict]:
    """32 different requests: prompts x lambdas x max_tokens, half of them streamed."""
    lambdas = [None, {"conciseness": 1}, {"helpfulness": 1}, [0.2, 0.3, 0.5]]
    requests = []
    for i in range(32):
        body = {"messages": [{"role": "user", "content": PROBE_PROMPTS[i % 3] + (" Please." if i % 5 == 0 else "")}],
                "max_tokens": 3 + i % 13, "stream": i % 2 == 1}
        if lambdas[i % 4] is not None:
            body["lwdpo"] = {"lambda": lambdas[i % 4]}
        requests.append(body)
    return requests


async def answer(client: httpx.AsyncClient, body: dict) -> str:
    response = await client.post("/v1/chat/completions", json={"temperature": 0, **body})
    assert response.status_code == 200, response.text
    if body["stream"]:
        chunks = sse_chunks(response)
        assert chunks[-1] == "[DONE]"
        return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    return response.json()["choices"][0]["message"]["content"]


def test_32_concurrent_requests_each_get_their_own_complete_answer(server):
    requests = load_requests()

    async def run(concurrent: bool) -> list[str]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            if concurrent:
                return list(await asyncio.gather(*(answer(client, body) for body in requests)))
            return [await answer(client, body) for body in requests]

    alone = asyncio.run(run(concurrent=False))
    together = asyncio.run(run(concurrent=True))
    assert together == alone
    assert len(set(alone)) >= 12  # the requests really differ, so mixed-up answers would show


class SlowModel(ChatModel):
    """A fake backend that writes 'a a a ...' at 20 tokens/s and counts the tokens it was asked for."""

    def __init__(self):
        super().__init__("slow", None, 4096, None, None)
        self.sampled = 0

    def render(self, messages):
        return messages[-1]["content"]

    def encode(self, text):
        return [0] * len(text.split())

    def decode(self, ids):
        return " a" * len(ids)

    def is_stop(self, token):
        return False

    def sample(self, prompt_ids, sampling, max_new):
        while True:
            time.sleep(0.05)
            self.sampled += 1
            yield 1


def test_a_client_leaving_mid_stream_stops_generation_and_frees_the_model():
    slow = SlowModel()
    running = Server(create_app(slow, LIMITS, model_id="slow"))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            body = {"messages": USER, "stream": True, "max_tokens": 64}  # 64 tokens would take 3.2 s
            with c.stream("POST", "/v1/chat/completions", json=body) as response:
                lines = response.iter_lines()
                assert next(lines).startswith("data: ") and next(lines) == "" and next(lines).startswith("data: ")
            # the connection is closed here, after the first token
            deadline = time.time() + 10
            while slow.lock.locked() and time.time() < deadline:
                time.sleep(0.05)
            assert not slow.lock.locked() and slow.sampled < 20
            slow.sampled = 0
            done = c.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 5}).json()
            assert done["choices"][0]["message"]["content"] == " a" * 5 and slow.sampled == 5
    finally:
        running.stop()


def test_api_key_is_required_when_set(model):
    running = Server(create_app(model, LIMITS, model_id="tiny", api_key="sesame"))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            assert_error(c.get("/v1/models"), 401, code="invalid_api_key")
            ok = c.get("/v1/models", headers={"Authorization": "Bearer sesame"})
            assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "tiny"
    finally:
        running.stop()


def test_openai_client_with_per_request_lambda(server, model):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    [listed] = client.models.list().data
    lam = {"helpfulness": 1}
    reply = client.chat.completions.create(model=listed.id, messages=USER, temperature=0, max_tokens=32,
                                           extra_body={"lwdpo": {"lambda": lam}})
    assert reply.choices[0].message.content == model.chat(USER, lam, max_tokens=32) == ANSWERS[0]
    stream = client.chat.completions.create(model=listed.id, messages=USER, temperature=0, max_tokens=32, stream=True,
                                            extra_body={"lwdpo": {"lambda": lam}})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWERS[0]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=listed.id, messages=USER,
                                       extra_body={"lwdpo": {"lambda": {"kindness": 1}}})
    assert err.value.code == "invalid_lambda" and "kindness" in err.value.message


def test_plain_gguf_serves_plain_chat_and_refuses_lambda(smollm2_gguf):
    plain = load_model(smollm2_gguf, threads=1)
    running = Server(create_app(plain, LIMITS))
    try:
        with httpx.Client(base_url=running.url, timeout=60) as c:
            assert c.get("/v1/models").json()["data"][0]["lwdpo"]["objectives"] == []
            messages = [{"role": "user", "content": "What is the capital of France?"}]
            body = post(c, messages=messages, model=None, max_tokens=12).json()
            assert body["choices"][0]["message"]["content"] == plain.chat(messages, max_tokens=12)
            assert body["lwdpo"]["lambda"] is None and body["usage"]["completion_tokens"] > 3
            assert_error(post(c, messages=messages, model=None, lwdpo={"lambda": {"helpfulness": 1}}), 400,
                         "lwdpo.lambda", "invalid_lambda", "no lambda contract")
    finally:
        running.stop()
        plain.close()


def test_serve_command_wires_its_options_and_fails_cleanly(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lwdpo_edge.apps import serve as serve_module
    from lwdpo_edge.cli import app

    calls = []
    monkeypatch.setattr(serve_module, "run_server", lambda *args: calls.append(args))
    result = CliRunner().invoke(app, ["serve", "m.gguf", "--port", "9000", "--threads", "1", "--max-tokens", "100",
                                      "--default-max-tokens", "500", "--max-messages", "4", "--api-key", "k"])
    assert result.exit_code == 0, result.output
    model, host, port, threads, n_ctx, limits, model_id, api_key, _log = calls[0]
    assert (model, host, port, threads, n_ctx, api_key) == ("m.gguf", "127.0.0.1", 9000, 1, 2048, "k")
    assert limits == Limits(max_body_bytes=1_000_000, max_messages=4, max_tokens=100, default_max_tokens=100)
    monkeypatch.undo()
    missing = CliRunner().invoke(app, ["serve", str(tmp_path / "missing.gguf")])
    assert missing.exit_code == 2 and "model path does not exist" in missing.output
