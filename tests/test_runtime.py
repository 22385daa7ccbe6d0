"""Runtime API: one `load_model` over GGUF / ONNX / HF, the lambda contract read from the file.

The tiny exports (runtime_helpers) memorise one answer per probe prompt under both probe lambdas, so
greedy answers are confident and a wrong prompt, template or backend shows up as a different answer.
"""

from __future__ import annotations

import math

import pytest

from agreement_helpers import answer_margins, assert_backends_agree, confident_answer
from lwdpo_edge import load_model
from lwdpo_edge.agreement import MIN_MARGIN, backend_agreement, compare_logits
from lwdpo_edge.conditioning import conditioned_messages, prompt_text
from lwdpo_edge.export.verify import PROBE_PROMPTS
from lwdpo_edge.lambdas import LambdaError
from lwdpo_edge.runtime import ContextLengthError, MessageError, ModelLoadError, Usage
from lwdpo_edge.runtime.base import ChatModel, Sampling
from runtime_helpers import ANSWERS, LAMBDA_DEFAULT, OBJECTIVES, tiny_export

USER = [{"role": "user", "content": PROBE_PROMPTS[0]}]
MESSAGE_SETS = [
    USER,
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi [lambda] helpfulness=1 there"}],
    [{"role": "system", "content": "A"}, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
     {"role": "user", "content": "q2"}],
]
LAMBDAS = [None, {"conciseness": 1}, {"helpfulness": 1, "conciseness": 1, "readability": 1}, [0.2, 0.3, 0.5]]


@pytest.fixture(scope="module")
def models(tmp_path_factory, smollm2_tokenizer):
    loaded = {fmt: load_model(tiny_export(fmt, tmp_path_factory, smollm2_tokenizer), threads=1)
              for fmt in ("gguf", "hf", "onnx")}
    yield loaded
    for model in loaded.values():
        model.close()


@pytest.fixture(scope="module")
def plain(smollm2_gguf):
    model = load_model(smollm2_gguf, threads=1)
    yield model
    model.close()


def test_contract_and_info_are_read_from_each_format(models):
    for fmt, model in models.items():
        assert model.objectives == OBJECTIVES
        assert model.default_lambda == LAMBDA_DEFAULT
        info = model.info
        assert info["format"] == fmt and info["architecture"] == "llama" and info["contract_version"] == 1
        assert info["objectives"] == OBJECTIVES and info["default_lambda"] == LAMBDA_DEFAULT
    assert models["gguf"].info["quantization"] == "f16" and models["onnx"].info["quantization"] == "fp32"
    assert models["hf"].info["quantization"] is None


@pytest.mark.parametrize("messages", MESSAGE_SETS)
@pytest.mark.parametrize("lam", LAMBDAS)
def test_prompt_is_the_canonical_conditioned_prompt_in_every_format(models, smollm2_tokenizer, messages, lam):
    """GGUF renders its embedded lambda template, ONNX its chat_template.jinja, HF its tokenizer: all
    equal prompt_text(base tokenizer, conditioned_messages(...)) with the default lambda for None."""
    expected = prompt_text(smollm2_tokenizer, conditioned_messages(messages, lam or LAMBDA_DEFAULT, OBJECTIVES))
    for model in models.values():
        assert model.prompt(messages, lam) == expected
    assert "[lambda] helpfulness=1" not in expected  # the user's marker was defused


def test_a_header_already_in_the_system_message_is_honoured(models, smollm2_tokenizer):
    with_header = [{"role": "system",
                    "content": "[lambda] helpfulness=0.00 conciseness=1.00 readability=0.00\nBe brief."},
                   *USER]
    plain_system = [{"role": "system", "content": "Be brief."}, *USER]
    expected = prompt_text(smollm2_tokenizer, conditioned_messages(plain_system, {"conciseness": 1}, OBJECTIVES))
    for model in models.values():
        assert model.prompt(with_header) == expected
        assert model.prompt(with_header) == model.prompt(plain_system, {"conciseness": 1})
        # an explicit lambda wins over the header in the message
        assert model.prompt(with_header, {"readability": 1}).count("[lambda]") == 1
        assert "readability=1.00" in model.prompt(with_header, {"readability": 1})


@pytest.mark.parametrize("lam", [None, {"helpfulness": 1}])
def test_memorised_answers_win_by_a_clear_margin_so_every_backend_gives_them(models, lam):
    """The tiny exports' answers are compared as text here and in the chat, serve and example tests: that
    is sound only because each token of them wins by >= MIN_MARGIN logits, which this test shows."""
    for prompt, answer in zip(PROBE_PROMPTS, ANSWERS):
        messages = [{"role": "user", "content": prompt}]
        assert confident_answer(models["hf"], messages, lam) == answer
        for fmt in ("gguf", "onnx"):
            assert models[fmt].chat(messages, lam, max_tokens=24) == answer
            agreement = assert_backends_agree(models["hf"], models[fmt], messages, lam)
            assert agreement.top1 == 1.0 and agreement.max_margin_shift < 0.05  # f16 / fp32 vs fp32: 1e-3 to 1e-2
            print(f"{fmt} lam={lam}: {agreement.summary()}")


def test_agreement_fails_for_a_wrong_model(models, plain):
    """The same rule rejects a model that is not the reference: the plain base (same vocabulary) for
    the tiny export, and the tiny export under another lambda (a wrong header)."""
    messages = [{"role": "user", "content": PROBE_PROMPTS[0]}]
    wrong_model = backend_agreement(models["hf"], plain, messages)
    assert not wrong_model.ok, wrong_model.summary()
    answer = models["hf"].encode(models["hf"].chat(messages, max_tokens=24))
    reference = models["hf"].next_token_logits(messages, answer)
    for fmt in ("gguf", "onnx"):
        other_lambda = compare_logits(reference, models[fmt].next_token_logits(messages, answer, {"conciseness": 1}))
        same_lambda = compare_logits(reference, models[fmt].next_token_logits(messages, answer))
        assert same_lambda.ok and other_lambda.max_margin_shift > 20 * same_lambda.max_margin_shift


def test_stream_pieces_join_to_the_full_answer_and_usage_is_counted(models):
    for model in models.values():
        usage_full, usage_stream = Usage(), Usage()
        full = model.chat(USER, max_tokens=24, usage=usage_full)
        pieces = list(model.chat(USER, stream=True, max_tokens=24, usage=usage_stream))
        assert len(pieces) > 3 and "".join(pieces) == full == ANSWERS[0]
        assert usage_full == usage_stream and usage_full.finish_reason == "stop"
        assert len(usage_full.completion_ids) == usage_full.completion_tokens > 0
        assert model.decode(usage_full.completion_ids) == full  # the ids the answer was decoded from
        assert usage_full.prompt_tokens == len(model.encode(model.prompt(USER)))
        short = Usage()
        assert ANSWERS[0].startswith(model.chat(USER, max_tokens=3, usage=short))
        assert short.completion_tokens == 3 and short.finish_reason == "length"


def test_closing_a_stream_stops_generation_and_frees_the_model(models):
    model = models["gguf"]
    usage = Usage()
    stream = model.chat(USER, stream=True, max_tokens=24, usage=usage)
    first = next(stream)
    assert model.lock.locked()  # held while a generation is live
    stream.close()
    assert not model.lock.locked() and usage.completion_tokens == 1 and first == "The"
    assert model.chat(USER, max_tokens=24) == ANSWERS[0]  # the next request is unaffected


def test_sampling_is_seeded_and_temperature_changes_the_answer(plain):
    messages = [{"role": "user", "content": "Write a sentence about the sea."}]
    a = plain.chat(messages, temperature=1.0, seed=1, max_tokens=20)
    assert a == plain.chat(messages, temperature=1.0, seed=1, max_tokens=20)
    others = {plain.chat(messages, temperature=1.0, seed=s, max_tokens=20) for s in (2, 3, 4)}
    assert len(others | {a}) >= 3


def test_sampling_is_seeded_in_every_backend(models):
    messages = [{"role": "user", "content": "Tell me something."}]  # not a memorised prompt: a flat distribution
    for model in models.values():
        a = model.chat(messages, temperature=1.0, seed=7, max_tokens=8)
        assert a == model.chat(messages, temperature=1.0, seed=7, max_tokens=8)
        assert a != model.chat(messages, temperature=1.0, seed=8, max_tokens=8, top_p=0.9)


def test_plain_gguf_has_no_objectives_and_chats_unchanged(plain, smollm2_tokenizer):
    assert plain.objectives == [] and plain.default_lambda is None and plain.info["contract_version"] is None
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the capital of France?"}]
    assert plain.prompt_messages(messages) == messages
    assert plain.prompt(messages) == prompt_text(smollm2_tokenizer, messages)
    with pytest.raises(LambdaError, match="no lambda contract"):
        plain.chat(messages, lam={"helpfulness": 1})
    # The content check uses a probe whose answer has no near tie (docs/testing.md: under "Be brief." the first
    # token is 'The' vs 'La' by 0.04 to 0.2 logits, decided by the CPU's kernels). Measured: every
    # token up to "Paris" wins by >= 1.0 (smallest 1.07, at the final '.').
    probe = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    answer, margins = answer_margins(plain, probe)
    assert "Paris" in answer
    upto_paris = len(plain.encode(answer[: answer.index("Paris") + len("Paris")]))
    assert min(margins[:upto_paris]) >= 2 * MIN_MARGIN, (answer, margins)


@pytest.mark.parametrize("lam, message", [
    ({"kindness": 1}, r"unknown objective\(s\) \['kindness'\]"),
    ({"helpfulness": -0.5, "conciseness": 1}, r"lambda\[helpfulness\] = -0.5 is negative"),
    ({"helpfulness": math.nan}, r"lambda\[helpfulness\] = nan is not finite"),
    ({"helpfulness": 0, "conciseness": 0}, "sums to 0"),
    ({"helpfulness": "lots"}, "is not a number"),
    ([0.5, 0.5], "lambda has 2 values but there are 3 objectives"),
])
def test_invalid_lambda_is_refused_with_a_message_naming_it(models, lam, message):
    model = models["gguf"]
    with pytest.raises(LambdaError, match=message):
        model.chat(USER, lam)
    with pytest.raises(LambdaError, match=message):
        model.validate_lambda(lam)
    assert not model.lock.locked()


def test_validate_lambda_normalises_and_quantises(models):
    model = models["hf"]
    assert model.validate_lambda({"helpfulness": 1, "conciseness": 1, "readability": 1}) == {
        "helpfulness": 0.34, "conciseness": 0.33, "readability": 0.33}
    assert model.validate_lambda({"conciseness": 3}) == {"helpfulness": 0.0, "conciseness": 1.0, "readability": 0.0}
    bad_header = [{"role": "system", "content": "[lambda] kindness=1.00"}, *USER]
    with pytest.raises(LambdaError, match="kindness"):
        model.prompt(bad_header)
    malformed = [{"role": "system", "content": "[lambda] helpfulness=lots\nBe brief."}, *USER]
    with pytest.raises(LambdaError, match="malformed lambda header item 'helpfulness=lots'"):
        model.prompt(malformed)  # an error, never silently the default lambda


@pytest.mark.parametrize("kwargs, message", [
    ({"max_tokens": 0}, "max_tokens"), ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"),
    ({"seed": -3}, "seed"),
])
def test_bad_sampling_settings_are_refused(models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        models["gguf"].chat(USER, **kwargs)


@pytest.mark.parametrize("messages, message", [
    ([], "non-empty list"), ("hello", "non-empty list"), ([{"role": "robot", "content": "x"}], r"messages\[0\].role"),
    ([{"role": "user", "content": "x"}, {"role": "user"}], r"messages\[1\].content"),
])
def test_malformed_messages_are_refused(models, messages, message):
    with pytest.raises(MessageError, match=message):
        models["gguf"].chat(messages)


def test_context_window_is_enforced(tmp_path_factory, smollm2_tokenizer):
    model = load_model(tiny_export("gguf", tmp_path_factory, smollm2_tokenizer), threads=1, n_ctx=64)
    try:
        with pytest.raises(ContextLengthError, match="context window is 64"):
            model.chat([{"role": "user", "content": "word " * 80}])
        usage = Usage()
        model.chat(USER, max_tokens=500, usage=usage)  # max_tokens is cut to the room left
        assert usage.prompt_tokens + usage.completion_tokens <= 64
    finally:
        model.close()


def test_unloadable_paths_raise_model_load_error(tmp_path, tmp_path_factory, smollm2_tokenizer):
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "empty").mkdir()
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "lwdpo.json").write_text("{}")
    cases = {tmp_path / "missing.gguf": "does not exist", tmp_path / "notes.txt": "not a GGUF file",
             tmp_path / "empty": "neither genai_config.json", run: "export it first"}
    for path, message in cases.items():
        with pytest.raises(ModelLoadError, match=message):
            load_model(path)
    assert issubclass(ModelLoadError, ValueError)


class BytesModel(ChatModel):
    """A fake backend whose tokens are single UTF-8 bytes: characters span several tokens."""

    def __init__(self, answer: str):
        super().__init__("bytes", None, 4096, None, None)
        self.answer = list(answer.encode()) + [-1]

    def render(self, messages):
        return messages[-1]["content"]

    def encode(self, text):
        return list(text.encode())

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")

    def is_stop(self, token):
        return token == -1

    def sample(self, prompt_ids, sampling: Sampling, max_new):
        yield from self.answer


def test_streaming_never_splits_a_multibyte_character():
    text = "héllo wörld 😀 ok ∑"
    pieces = list(BytesModel(text).chat(USER, stream=True))
    assert pieces == list(text)  # each character once complete, never a replacement character
    cut = BytesModel(text).chat(USER, max_tokens=len("héllo wörld ".encode()) + 2)  # half the emoji's bytes
    assert cut == "héllo wörld "
