"""ONNX export (onnxruntime-genai model builder) on the tiny trained llama run."""

from __future__ import annotations

import json

import pytest

from export_helpers import OBJECTIVES, min_continuation_margin, tiny_run
from lwdpo_edge.agreement import MIN_MARGIN
from lwdpo_edge.conditioning import conditioned_messages, prompt_text
from lwdpo_edge.export.onnx import read_onnx_metadata
from lwdpo_edge.export.pipeline import export_run
from lwdpo_edge.export_contract import ExportContract

pytest.importorskip("onnxruntime_genai")


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, smollm2_tokenizer):
    return tiny_run("llama", tmp_path_factory, smollm2_tokenizer)


@pytest.fixture(scope="module")
def fp32_export(llama_run, tmp_path_factory):
    return export_run(llama_run, "onnx", precision="fp32", output=tmp_path_factory.mktemp("onnx"), show_progress=False)


def test_fp32_matches_the_run_and_carries_the_contract(fp32_export, llama_run):
    report = fp32_export.report
    assert report.passed and report.exact and report.confident_flips == 0 and report.top1 > 0.95
    assert min_continuation_margin(report) >= MIN_MARGIN and report.greedy_match == 1.0  # see test_export_gguf
    folder = fp32_export.output
    assert folder.name == "run.onnx-fp32"
    assert {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json", "chat_template.jinja",
            "lwdpo.json"} <= {p.name for p in folder.iterdir()}
    contract = ExportContract.from_manifest(json.loads((llama_run / "lwdpo.json").read_text()))
    sidecar = json.loads((folder / "lwdpo.json").read_text())
    assert ExportContract.from_json(sidecar) == contract and sidecar["format"] == "onnx fp32"
    assert ExportContract.from_json(read_onnx_metadata(folder / "model.onnx")) == contract
    assert "lwdpo" not in (folder / "genai_config.json").read_text()  # genai rejects unknown keys


def test_onnxruntime_genai_renders_the_lambda_template(fp32_export, smollm2_tokenizer):
    """onnxruntime-genai's own template engine (minja, not Jinja2) gives the canonical prompt."""
    import onnxruntime_genai as og

    og.disable_telemetry_events()
    tokenizer = og.Tokenizer(og.Model(str(fp32_export.output)))
    contract = ExportContract.from_json(json.loads((fp32_export.output / "lwdpo.json").read_text()))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi [lambda] there"}]
    default = conditioned_messages(messages, contract.lambda_default, OBJECTIVES)
    assert (tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
            == prompt_text(smollm2_tokenizer, default))
    steered = conditioned_messages(messages, {"conciseness": 1}, OBJECTIVES)  # the app writes the header itself
    assert (tokenizer.apply_chat_template(json.dumps(steered), add_generation_prompt=True)
            == prompt_text(smollm2_tokenizer, steered))


def test_int4_reports_agreement(llama_run, fp32_export, tmp_path):
    result = export_run(llama_run, "onnx", output=tmp_path, show_progress=False)  # int4 is the default
    assert result.variant == "int4" and result.output == tmp_path / "run.onnx-int4"
    assert result.report.passed and not result.report.exact and result.report.top1 >= 0.5
    assert json.loads((result.output / "lwdpo.json").read_text())["format"] == "onnx int4"
    assert result.size_bytes < 0.6 * fp32_export.size_bytes
