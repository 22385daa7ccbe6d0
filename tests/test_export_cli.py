"""`lwdpo-edge export` as a command: exit status 0 / 1 / 2, one clear line for bad input, .failed files; a run
trained without lambda exports as a plain model."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from export_helpers import gguf_keys, read_json, tiny_run
from lwdpo_edge.apps.chat_logic import model_info_markdown, presets, slider_lambda
from lwdpo_edge.apps.serve import applied_lambda, model_card
from lwdpo_edge.apps.serve_schema import ApiError
from lwdpo_edge.export import merge
from lwdpo_edge.export.cli import export
from lwdpo_edge.export_contract import LAMBDA_TEMPLATE_VARIABLE
from lwdpo_edge.lambdas import HEADER_MARKER, LambdaError
from lwdpo_edge.runtime import load_model

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("export")(export)
app.command("noop")(lambda: None)  # a second command keeps "export" a subcommand, as in lwdpo_edge.cli


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, smollm2_tokenizer):
    return tiny_run("llama", tmp_path_factory, smollm2_tokenizer)


def invoke(*args):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def gpt2_run(tmp_path, llama_run):
    base = tmp_path / "gpt2-base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    (tmp_path / "run").mkdir()
    manifest = json.loads((llama_run / "lwdpo.json").read_text())
    manifest["base_model"]["path"] = str(base)
    (tmp_path / "run" / "lwdpo.json").write_text(json.dumps(manifest))
    (tmp_path / "run" / "adapter").symlink_to(llama_run / "adapter")
    return tmp_path / "run"


def unconditioned_run(tmp_path, llama_run, conditioning="none"):
    """The tiny run as `train --no-condition-on-lambda` writes it: conditioning "none" (or another word)."""
    run = tmp_path / f"run-{conditioning}"
    run.mkdir()
    manifest = json.loads((llama_run / "lwdpo.json").read_text())
    (run / "lwdpo.json").write_text(json.dumps({**manifest, "conditioning": conditioning}))
    (run / "adapter").symlink_to(llama_run / "adapter")
    return run


@pytest.mark.parametrize("case, expected", [
    ("not a run", "not a lwdpo-edge run folder"),
    ("bad quant", "unknown quant 'q3'; choose one of f16, q8_0, q4_k_m"),
    ("bad format", "unknown format 'safetensors'; choose one of gguf, onnx, hf"),
    ("precision for gguf", "--precision applies to --format onnx"),
    ("gpt2", "unsupported architecture GPT2LMHeadModel"),
    ("preset of a plain run", "trained with --no-condition-on-lambda: it takes no lambda, so it has no presets"),
    ("unknown conditioning", "lwdpo.json: conditioning 'mixture'; expected one of header, soup, merged, none"),
])
def test_bad_input_exits_2_with_one_line(case, expected, llama_run, tmp_path):
    args = {
        "not a run": [tmp_path],
        "bad quant": [llama_run, "--quant", "q3"],
        "bad format": [llama_run, "--format", "safetensors"],
        "precision for gguf": [llama_run, "--precision", "int4"],
        "gpt2": [gpt2_run(tmp_path, llama_run), "--output", tmp_path / "out"],
        "preset of a plain run": [unconditioned_run(tmp_path, llama_run), "--preset", "balanced", "--output",
                                  tmp_path / "out"],
        "unknown conditioning": [unconditioned_run(tmp_path, llama_run, "mixture"), "--output", tmp_path / "out"],
    }[case]
    result = invoke(*args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


USER = [{"role": "user", "content": "What is the capital of France?"}]


def plain_export_contract(fmt, output):
    """The lwdpo.* facts an export carries: GGUF metadata keys, or the hf folder's sidecar less its provenance."""
    if fmt == "gguf":
        return {key: value for key, value in gguf_keys(output).items() if key.startswith("lwdpo.")}
    sidecar = read_json(output / "lwdpo.json")
    return {key: value for key, value in sidecar.items() if key not in ("format", "exported_from")}


@pytest.mark.parametrize("fmt, name, verified, contract", [
    ("gguf", "plain.f16.gguf", "GGUF f16: verification passed",
     {"lwdpo.version": 1, "lwdpo.conditioning": "none"}),
    ("hf", "plain.hf", "HF safetensors fp32: verification passed", {"lwdpo_version": 1, "conditioning": "none"}),
], ids=["gguf", "hf"])
def test_an_unconditioned_run_exports_as_a_plain_model(fmt, name, verified, contract, llama_run, tmp_path):
    run = unconditioned_run(tmp_path, llama_run)
    quant = ["--quant", "f16"] if fmt == "gguf" else []
    result = invoke(run, "--format", fmt, *quant, "--output", tmp_path / name)
    assert result.exit_code == 0, result.output
    assert verified in " ".join(result.output.split())
    output = tmp_path / name
    assert plain_export_contract(fmt, output) == contract  # no objectives, default lambda or template variable
    with load_model(output, threads=1) as model:
        template = model.template if fmt == "gguf" else model.tokenizer.chat_template
        assert LAMBDA_TEMPLATE_VARIABLE not in template and HEADER_MARKER not in template  # the base's own
        assert model.conditioning == "none" and model.objectives == [] and model.default_lambda is None
        assert not model.steerable and model.prompt_messages(USER) == USER  # no header
        assert isinstance(model.chat(USER, max_tokens=8), str)
        with pytest.raises(LambdaError, match="trained without lambda conditioning .* it takes no lambda"):
            model.chat(USER, {"helpfulness": 1.0})
        assert slider_lambda(model, []) == (None, "") and presets(model) == {}  # the app shows no sliders
        assert "trained without lambda conditioning" in model_info_markdown(model.info)
        with pytest.raises(ApiError, match="trained without lambda conditioning") as refused:
            applied_lambda(model, USER, {"helpfulness": 1.0})  # `serve` answers a request with lwdpo.lambda
        assert refused.value.status == 400 and refused.value.param == "lwdpo.lambda"
        assert model_card(model, "plain")["lwdpo"]["conditioning"] == "none"
    if fmt == "gguf":
        modelfile = output.with_suffix(".Modelfile").read_text()
        assert "it takes no lambda" in modelfile and HEADER_MARKER not in modelfile


def test_success_prints_files_and_verification(llama_run, tmp_path):
    result = invoke(llama_run, "--format", "hf", "--output", tmp_path / "merged")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert ("HF safetensors fp32: verification passed - top-1 agreement 100.0% "
            "(0 flips where the reference margin >= 0.5") in text
    assert (tmp_path / "merged" / "model.safetensors").is_file() and (tmp_path / "merged" / "lwdpo.json").is_file()


def test_failed_verification_exits_1_and_keeps_the_file_as_failed(llama_run, tmp_path, monkeypatch):
    # A template without the lambda prelude: the prompt an app would render lacks the header.
    monkeypatch.setattr(merge, "lwdpo_chat_template", lambda base_template, contract: base_template)
    result = invoke(llama_run, "--format", "hf", "--output", tmp_path / "merged")
    assert result.exit_code == 1
    assert "embedded chat template does not render the lambda header" in " ".join(result.output.split())
    assert not (tmp_path / "merged").exists()
    assert (tmp_path / "merged.failed" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.failed"]


def test_no_verify_says_so(llama_run, tmp_path):
    result = invoke(llama_run, "--format", "hf", "--no-verify", "--output", tmp_path / "merged")
    assert result.exit_code == 0 and "not verified" in result.output


def test_help_names_every_option():
    result = invoke("--help")
    assert result.exit_code == 0
    for option in ("--format", "--quant", "--precision", "--output", "--no-verify", "--threads"):
        assert option in result.output
