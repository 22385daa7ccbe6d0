"""Soup runs along the user path: export (base GGUF + LoRA GGUFs, verified) -> load_model -> chat / serve.

The tiny run: a random llama base (SmolLM2 tokenizer) with two adapters trained, without any header,
to memorise different answers to the probe prompts (helpfulness: ANSWERS, conciseness: SHORT), so a
vertex has a confident greedy answer and the two vertices answer differently.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agreement_helpers import assert_applies_repetition_rule, assert_backends_agree, confident_answer
from export_helpers import ANSWERS, SHORT, tiny_soup_run
from lwdpo_edge.export.verify import PROBE_PROMPTS
from lwdpo_edge.lambdas import LambdaError

OBJECTIVES = ["helpfulness", "conciseness"]
VERTICES = [{"helpfulness": 1.0}, {"conciseness": 1.0}]


@pytest.fixture(scope="module")
def soup_run(tmp_path_factory, smollm2_tokenizer) -> Path:
    return tiny_soup_run(tmp_path_factory, smollm2_tokenizer)


@pytest.fixture(scope="module")
def exported(soup_run, tmp_path_factory):
    from lwdpo_edge.export.pipeline import export_run

    return export_run(soup_run, "gguf", quant="f16", output=tmp_path_factory.mktemp("soup-out"), show_progress=False)


@pytest.fixture(scope="module")
def models(exported, soup_run):
    from lwdpo_edge import load_model

    loaded = {"gguf": load_model(exported.output, threads=1), "hf": load_model(soup_run, threads=1)}
    yield loaded
    for model in loaded.values():
        model.close()


def ask(model, k: int, lam, **kwargs) -> str:
    return model.chat([{"role": "user", "content": PROBE_PROMPTS[k]}], lam, max_tokens=24, **kwargs)


def test_export_writes_a_verified_base_and_one_lora_per_objective(exported, soup_run):
    from lwdpo_edge.gguf_keys import CHAT_TEMPLATE, read_gguf_keys, read_lwdpo_metadata

    base = exported.output
    names = [f"{base.stem}.{n}.lora.gguf" for n in OBJECTIVES]
    mix, modelfile = f"{base.stem}.default-mix.lora.gguf", f"{base.stem}.Modelfile"
    assert exported.report is not None and exported.report.passed, exported.report.summary()
    # a vertex and the centre with the K adapters, then the default (here the centre) with the one-file mix
    assert len(exported.report.checks) == 3 * len(PROBE_PROMPTS)
    assert sorted(p.name for p in base.parent.iterdir()) == sorted(
        [base.name, *names, mix, modelfile])  # nothing staged left
    assert exported.extra_files == [base.parent / n for n in [*names, mix, modelfile]]
    metadata = read_lwdpo_metadata(base)
    assert metadata["conditioning"] == "soup" and metadata["soup_adapters"] == names
    assert metadata["objectives"] == OBJECTIVES
    for name in names:
        assert read_gguf_keys(base.parent / name, lambda k: k == "general.type") == {"general.type": "adapter"}
    template = read_gguf_keys(base, lambda k: k == CHAT_TEMPLATE)[CHAT_TEMPLATE]
    assert "lwdpo" not in template and "<|im_start|>" in template  # the base's own template, no lambda prelude


def test_a_steerable_soup_export_is_gguf_or_onnx_not_hf(soup_run, tmp_path):
    from lwdpo_edge.export.architectures import ExportInputError
    from lwdpo_edge.export.pipeline import export_run

    with pytest.raises(ExportInputError, match="steerable export is GGUF .* or ONNX .*--format hf --preset NAME"):
        export_run(soup_run, "hf", output=tmp_path, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_vertices_answer_like_the_hf_soup_mix_and_differ(models):
    gguf, hf = models["gguf"], models["hf"]
    assert gguf.conditioning == hf.conditioning == "soup" and gguf.info["conditioning"] == "soup"
    assert gguf.objectives == OBJECTIVES and gguf.default_lambda == {"helpfulness": 0.5, "conciseness": 0.5}
    for k in range(len(PROBE_PROMPTS)):
        messages = [{"role": "user", "content": PROBE_PROMPTS[k]}]
        # each vertex is its adapter alone; the memorised answers win every token by >= MIN_MARGIN
        assert [confident_answer(hf, messages, lam) for lam in VERTICES] == [ANSWERS[k], SHORT[k]]
        assert [ask(gguf, k, lam) for lam in VERTICES] == [ANSWERS[k], SHORT[k]]
        for lam in [*VERTICES, None]:  # None: the default lambda (the centre) mixes both, not memorised
            assert_backends_agree(hf, gguf, messages, lam)


def test_agreement_fails_for_the_wrong_mix(models):
    """The agreement rule the soup tests use rejects llama.cpp at one vertex against the HF mix at the other."""
    from lwdpo_edge.agreement import compare_logits

    gguf, hf = models["gguf"], models["hf"]
    messages = [{"role": "user", "content": PROBE_PROMPTS[0]}]
    answer = hf.encode(ask(hf, 0, VERTICES[0]))
    reference = hf.next_token_logits(messages, answer, VERTICES[0])
    assert compare_logits(reference, gguf.next_token_logits(messages, answer, VERTICES[0])).ok
    wrong = compare_logits(reference, gguf.next_token_logits(messages, answer, VERTICES[1]))
    assert not wrong.ok, wrong.summary()


def test_soup_prompt_has_no_header_and_a_system_header_is_honoured_then_removed(models, smollm2_tokenizer):
    from lwdpo_edge.conditioning import prompt_text

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROBE_PROMPTS[0]}]
    with_header = [{"role": "system", "content": "[lambda] helpfulness=0.00 conciseness=1.00\nBe brief."}, messages[1]]
    for model in models.values():
        assert model.prompt_messages(messages, {"conciseness": 1}) == messages
        assert model.prompt(messages) == prompt_text(smollm2_tokenizer, messages)  # no header anywhere
        assert model.resolve(with_header) == (messages, {"helpfulness": 0.0, "conciseness": 1.0})
        assert model.resolve(with_header, {"helpfulness": 3})[1] == {"helpfulness": 1.0, "conciseness": 0.0}
        assert model.chat(with_header, max_tokens=24) == model.chat(messages, {"conciseness": 1}, max_tokens=24)


@pytest.mark.parametrize("lam, message", [
    ({"kindness": 1}, r"unknown objective\(s\) \['kindness'\]"),
    ({"helpfulness": 0, "conciseness": 0}, "sums to 0"),
    ([1.0, 0.0, 0.0], "lambda has 3 values but there are 2 objectives"),
])
def test_bad_lambda_is_refused_before_anything_runs(models, lam, message):
    for model in models.values():
        with pytest.raises(LambdaError, match=message):
            ask(model, 0, lam)
        assert not model.lock.locked()


def test_concurrent_requests_at_different_lambdas_each_get_their_own_mix(models):
    """8 streams at 4 lambdas, interleaved token by token across threads: each equals the request alone."""
    model = models["gguf"]
    lambdas = [VERTICES[0], VERTICES[1], {"helpfulness": 0.7, "conciseness": 0.3},
               {"helpfulness": 0.2, "conciseness": 0.8}] * 2
    alone = [ask(model, i % 3, lam) for i, lam in enumerate(lambdas)]
    results = [None] * len(lambdas)

    def run(i):
        pieces = model.chat([{"role": "user", "content": PROBE_PROMPTS[i % 3]}], lambdas[i], stream=True, max_tokens=24)
        results[i] = "".join(pieces)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(lambdas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == alone
    assert len(set(alone[:4])) >= 3  # the lambdas really answer differently


def test_a_missing_lora_file_or_loading_a_lora_alone_fails_clearly(exported, tmp_path):
    import shutil

    from lwdpo_edge import load_model
    from lwdpo_edge.runtime import ModelLoadError

    lora = exported.extra_files[0]
    with pytest.raises(ModelLoadError, match="a LoRA adapter, not a model"):
        load_model(lora)
    copy = tmp_path / exported.output.name
    shutil.copy(exported.output, copy)
    with pytest.raises(ModelLoadError, match=f"{exported.extra_files[0].name}: LoRA adapter file missing"):
        load_model(copy)


def test_serve_8_concurrent_requests_at_different_lambdas_equal_each_request_alone(models):
    """Through `lwdpo-edge serve`'s app: lambda per request, half streamed, all at once vs one by one."""
    import asyncio
    import json

    import httpx

    from lwdpo_edge.apps.serve import create_app
    from runtime_helpers import Server

    lambdas = [VERTICES[0], VERTICES[1], {"helpfulness": 0.7, "conciseness": 0.3}, None] * 2
    bodies = [{"messages": [{"role": "user", "content": PROBE_PROMPTS[i % 3]}], "max_tokens": 24, "temperature": 0,
               "stream": i % 2 == 1, **({"lwdpo": {"lambda": lam}} if lam else {})} for i, lam in enumerate(lambdas)]

    async def answer(client, body):
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        if not body["stream"]:
            data = response.json()
            assert data["lwdpo"]["lambda"] == models["gguf"].validate_lambda(
                body.get("lwdpo", {}).get("lambda") or {"helpfulness": 1, "conciseness": 1})
            return data["choices"][0]["message"]["content"]
        events = [line[6:] for line in response.text.split("\n\n")
                  if line.startswith("data: ") and line != "data: [DONE]"]
        return "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events)

    async def run(concurrent: bool):
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            if concurrent:
                return list(await asyncio.gather(*(answer(client, b) for b in bodies)))
            return [await answer(client, b) for b in bodies]

    server = Server(create_app(models["gguf"]))
    try:
        alone = asyncio.run(run(False))
        together = asyncio.run(run(True))
    finally:
        server.stop()
    assert together == alone
    assert alone[:2] == [ANSWERS[0], SHORT[1]]
    assert len(set(alone[:4])) >= 3


def test_chat_app_shows_the_adapter_mix_instead_of_a_header(models):
    from lwdpo_edge.apps.chat import _receives

    model = models["gguf"]
    assert _receives(model, {"helpfulness": 0.5, "conciseness": 0.5}, "") == \
        "adapter mix: helpfulness 0.50, conciseness 0.50 (no header)"
    assert _receives(model, {"helpfulness": 3, "conciseness": 1}, "Be brief.") == \
        "adapter mix: helpfulness 0.75, conciseness 0.25 (no header)\nBe brief."
    assert _receives(model, {"helpfulness": 1}, "", strength=2.5) == \
        "adapter mix: helpfulness 1.00, conciseness 0.00, strength 2.5 (no header)"


def test_steering_strength_mixes_alike_in_llama_cpp_and_transformers(models):
    gguf, hf = models["gguf"], models["hf"]
    assert gguf.info["soup_strength"] == hf.info["soup_strength"] == 1.0  # the manifest has none: the plain soup
    for k in range(len(PROBE_PROMPTS)):
        # strength 2 at a vertex: coefficients 1.5 and -0.5 (a negative LoRA scale in llama.cpp). An
        # extrapolated mix is not memorised: near ties are expected, so compare teacher-forced.
        messages = [{"role": "user", "content": PROBE_PROMPTS[k]}]
        for lam in VERTICES:
            assert_backends_agree(hf, gguf, messages, lam, strength=2.0)
    # strength 0: every lambda is the centre mix (the same backend: exact)
    assert ask(gguf, 0, VERTICES[1], strength=0.0) == ask(gguf, 0, None)
    assert_backends_agree(hf, gguf, [{"role": "user", "content": PROBE_PROMPTS[0]}], VERTICES[0], strength=0.0)
    from lwdpo_edge.lambdas import LambdaError

    with pytest.raises(LambdaError, match="steering strength"):
        ask(gguf, 0, None, strength=-1)


def test_serve_takes_a_strength_per_request(models):
    import httpx

    from lwdpo_edge.apps.serve import create_app
    from runtime_helpers import Server

    model = models["gguf"]
    server = Server(create_app(model))
    try:
        body = {"messages": [{"role": "user", "content": PROBE_PROMPTS[1]}], "max_tokens": 24, "temperature": 0,
                "lwdpo": {"lambda": VERTICES[1], "strength": 2.0}}
        data = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120).json()
        assert data["lwdpo"] == {"lambda": {"helpfulness": 0.0, "conciseness": 1.0}, "strength": 2.0}
        assert data["choices"][0]["message"]["content"] == ask(model, 1, VERTICES[1], strength=2.0)
        bad = httpx.post(f"{server.url}/v1/chat/completions", timeout=120,
                         json={**body, "lwdpo": {"lambda": VERTICES[1], "strength": 99}})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "lwdpo.strength"
        card = httpx.get(f"{server.url}/v1/models", timeout=30).json()["data"][0]["lwdpo"]
        assert card["conditioning"] == "soup" and card["soup_strength"] == 1.0
    finally:
        server.stop()


# Off the probe prompts, the helpfulness vertex at strength 3 loops on "....": a repetition penalty must act.
LOOPING = ([{"role": "user", "content": "hello"}], {"helpfulness": 1, "conciseness": 0})


@pytest.mark.parametrize("fmt", ("hf", "gguf"))
def test_the_one_repetition_rule_is_applied(models, fmt):
    """lwdpo_edge/decoding.py's penalty (the runtime default's rule), checked token by token in each backend."""
    messages, lam = LOOPING
    assert_applies_repetition_rule(models[fmt], messages, lam, strength=3.0)
