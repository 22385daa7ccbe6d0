"""A soup run exported to ONNX keeps lambda as a run-time input (export/onnx_lora.py, export/soup_onnx.py).

The tiny soup run of export_helpers (two adapters memorising different answers), default lambda the
centre: the fp32 export must match the HF mix at every lambda tried, through the runtime as a user
loads it; int4 must pass its verification floor and still answer differently at the two vertices.
"""

from __future__ import annotations

import pytest

from agreement_helpers import assert_applies_repetition_rule, assert_backends_agree, confident_answer
from export_helpers import ANSWERS, SHORT, tiny_soup_run
from lwdpo_edge.export.verify import PROBE_PROMPTS

VERTICES = [{"helpfulness": 1.0}, {"conciseness": 1.0}]


@pytest.fixture(scope="module")
def soup_run(tmp_path_factory, smollm2_tokenizer):
    return tiny_soup_run(tmp_path_factory, smollm2_tokenizer)


@pytest.fixture(scope="module")
def exports(soup_run, tmp_path_factory):
    from lwdpo_edge.export.pipeline import export_run

    out = tmp_path_factory.mktemp("soup-onnx")
    return {p: export_run(soup_run, "onnx", precision=p, output=out, show_progress=False) for p in ("fp32", "int4")}


@pytest.fixture(scope="module")
def models(exports, soup_run):
    from lwdpo_edge import load_model

    loaded = {"hf": load_model(soup_run, threads=1), **{p: load_model(r.output, threads=1) for p, r in exports.items()}}
    yield loaded
    for model in loaded.values():
        model.close()


def user(k: int):
    return [{"role": "user", "content": PROBE_PROMPTS[k]}]


def test_the_onnx_soup_export_is_verified_and_carries_the_blocks(exports):
    from lwdpo_edge.export.onnx import read_onnx_metadata
    from lwdpo_edge.onnx_adapter import BLOCKS_FILE, INPUT_PREFIX

    import onnx

    for precision, result in exports.items():
        assert result.report.passed, result.report.summary()
        assert len(result.report.checks) == 2 * len(PROBE_PROMPTS)  # a vertex and the centre (= the default)
        metadata = read_onnx_metadata(result.output / "model.onnx")
        assert metadata["conditioning"] == "soup" and metadata["lora_blocks"] == BLOCKS_FILE
        assert (result.output / BLOCKS_FILE).is_file() and not (result.output / "lwdpo.json.partial").exists()
        graph = onnx.load(str(result.output / "model.onnx"), load_external_data=False).graph
        inputs = [i.name for i in graph.input if i.name.startswith(INPUT_PREFIX)]
        assert len(inputs) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
        assert set(inputs) <= {init.name for init in graph.initializer}  # each defaults to the default mix


@pytest.mark.parametrize("lam", [VERTICES[0], VERTICES[1], {"helpfulness": 0.7, "conciseness": 0.3}])
def test_fp32_onnx_matches_the_hf_mix_at_any_lambda(models, lam):
    for k in range(len(PROBE_PROMPTS)):
        assert_backends_agree(models["hf"], models["fp32"], user(k), lam)


def test_lambda_changes_the_onnx_answer_per_request_and_back(models):
    for precision in ("fp32", "int4"):
        model = models[precision]
        first = [confident_answer(model, user(0), lam) for lam in VERTICES * 2]  # switch back and forth
        assert first[:2] == [ANSWERS[0], SHORT[0]] and first[2:] == first[:2], precision


def test_a_strength_reaches_the_onnx_mix(models):
    lam = {"helpfulness": 0.7, "conciseness": 0.3}
    assert_backends_agree(models["hf"], models["fp32"], user(1), lam, strength=2.0)


# Off the probe prompts, the helpfulness vertex at strength 3 loops on "....": a repetition penalty must act.
LOOPING = ([{"role": "user", "content": "hello"}], {"helpfulness": 1, "conciseness": 0})


@pytest.mark.parametrize("fmt", ("hf", "fp32"))
def test_the_one_repetition_rule_is_applied(models, fmt):
    """lwdpo_edge/decoding.py's penalty (the runtime default's rule), checked token by token in each backend."""
    messages, lam = LOOPING
    assert_applies_repetition_rule(models[fmt], messages, lam, strength=3.0)
