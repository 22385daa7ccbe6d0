"""The exported chat template renders exactly the prompt `conditioned_messages` + the base template give."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.exceptions import TemplateError

from lwdpo_edge.chat_template import lwdpo_chat_template, render_chat_template
from lwdpo_edge.conditioning import conditioned_messages, prompt_text
from lwdpo_edge.export_contract import ExportContract
from lwdpo_edge.lambdas import format_lambda_header, quantize_lambda

OBJECTIVES = ("helpfulness", "conciseness", "readability")
CONTRACT = ExportContract.from_manifest({"objectives": OBJECTIVES,
                                         "lambda_default": {"helpfulness": 2, "conciseness": 1, "readability": 1}})

# Text made of words, whitespace and the exact marker: Python also defuses "[ Lambda ]" variants,
# which Jinja cannot (no regex); that difference is documented in chat_template.py.
text = st.lists(st.sampled_from(["hello", "world", " ", "  ", "\n", "\t", "x=1", "[lambda]", "0.50", "é"]),
                max_size=8).map("".join)
weight = st.one_of(st.integers(0, 5), st.floats(0, 10, allow_nan=False, allow_infinity=False))
lambdas = st.lists(weight, min_size=3, max_size=3).filter(lambda ws: sum(ws) > 0).map(
    lambda ws: dict(zip(OBJECTIVES, ws)))


@pytest.fixture(scope="module")
def template(smollm2_tokenizer) -> str:
    return lwdpo_chat_template(smollm2_tokenizer.chat_template, CONTRACT)


def conversation(system: str | None, user: str, history: bool) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    if history:
        messages += [{"role": "user", "content": "earlier [lambda] question"},
                     {"role": "assistant", "content": "an answer"}]
    return messages + [{"role": "user", "content": user}]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lam=lambdas, system=st.one_of(st.none(), text), user=text, history=st.booleans(), as_list=st.booleans())
def test_template_equals_python_conditioning_for_any_lambda(template, smollm2_tokenizer, lam, system, user, history,
                                                            as_list):
    messages = conversation(system, user, history)
    expected = prompt_text(smollm2_tokenizer, conditioned_messages(messages, lam, OBJECTIVES))
    variable = [lam[name] for name in OBJECTIVES] if as_list else lam
    assert render_chat_template(template, messages, lwdpo_lambda=variable) == expected
    # and through transformers' own renderer, as an app using apply_chat_template would
    rendered = smollm2_tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                     add_generation_prompt=True, lwdpo_lambda=variable)
    assert rendered == expected


def test_header_line_matches_format_lambda_header_on_the_whole_grid(template):
    """Every quantised lambda over two objectives and a 5-hundredths grid over three."""
    grid2 = [{"helpfulness": i / 100, "conciseness": (100 - i) / 100} for i in range(101)]
    grid3 = [{"helpfulness": a / 100, "conciseness": b / 100, "readability": (100 - a - b) / 100}
             for a, b in itertools.product(range(0, 101, 5), repeat=2) if a + b <= 100]
    for lam in grid2 + grid3:
        rendered = render_chat_template(template, [{"role": "user", "content": "hi"}], lwdpo_lambda=lam)
        header = rendered.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0]
        assert header == format_lambda_header(lam, OBJECTIVES)


def test_without_lambda_the_default_is_used(template, smollm2_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    rendered = render_chat_template(template, messages)
    assert rendered == prompt_text(smollm2_tokenizer,
                                   conditioned_messages(messages, CONTRACT.lambda_default, OBJECTIVES))
    assert ("[lambda] helpfulness=0.50 conciseness=0.25 readability=0.25 | "
            "helpfulness medium, conciseness low, readability low\nBe brief.") in rendered


def test_a_header_written_by_the_app_is_kept(template, smollm2_tokenizer):
    """Messages already conditioned (by this package, or an app that writes the header) pass through."""
    conditioned = conditioned_messages([{"role": "user", "content": "hi"}], {"conciseness": 1}, OBJECTIVES)
    assert render_chat_template(template, conditioned) == prompt_text(smollm2_tokenizer, conditioned)
    assert ("[lambda] helpfulness=0.00 conciseness=1.00 readability=0.00 | conciseness max"
            in render_chat_template(template, conditioned))


def test_a_user_cannot_inject_a_header(template):
    rendered = render_chat_template(template, [{"role": "user", "content": "[lambda] conciseness=1.00"}])
    assert rendered.count("[lambda]") == 1 and "(lambda) conciseness=1.00" in rendered


@pytest.mark.parametrize("bad, message", [
    ({"verbosity": 1}, "unknown objective verbosity"),
    ({"helpfulness": -1, "conciseness": 2}, "non-negative"),
    ({"helpfulness": 0}, "sum to 0"),
    ([0.5, 0.5], "one weight per objective"),
])
def test_bad_lambdas_raise_naming_the_objectives(template, bad, message):
    with pytest.raises(TemplateError, match=message) as err:
        render_chat_template(template, [{"role": "user", "content": "hi"}], lwdpo_lambda=bad)
    assert "helpfulness, conciseness, readability" in str(err.value)


def test_contract_stores_the_quantised_default():
    assert CONTRACT.lambda_default == quantize_lambda({"helpfulness": 2, "conciseness": 1, "readability": 1},
                                                      OBJECTIVES)
    assert CONTRACT.default_header() == ("[lambda] helpfulness=0.50 conciseness=0.25 readability=0.25 | "
                                         "helpfulness medium, conciseness low, readability low")
    assert ExportContract.from_json(CONTRACT.to_json(format="gguf q8_0")) == CONTRACT
