"""`lwdpo-edge export` as a command: exit status 0 / 1 / 2, one clear line for bad input, .failed files."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from export_helpers import tiny_run
from lwdpo_edge.export import merge
from lwdpo_edge.export.cli import export

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


def unconditioned_run(tmp_path, llama_run):
    """The tiny run as `train --no-condition-on-lambda` writes it: conditioning "none"."""
    (tmp_path / "plain").mkdir()
    manifest = json.loads((llama_run / "lwdpo.json").read_text())
    (tmp_path / "plain" / "lwdpo.json").write_text(json.dumps({**manifest, "conditioning": "none"}))
    (tmp_path / "plain" / "adapter").symlink_to(llama_run / "adapter")
    return tmp_path / "plain"


@pytest.mark.parametrize("case, expected", [
    ("not a run", "not a lwdpo-edge run folder"),
    ("bad quant", "unknown quant 'q3'; choose one of f16, q8_0, q4_k_m"),
    ("bad format", "unknown format 'safetensors'; choose one of gguf, onnx, hf"),
    ("precision for gguf", "--precision applies to --format onnx"),
    ("gpt2", "unsupported architecture GPT2LMHeadModel"),
    ("no lambda", "was trained with --no-condition-on-lambda: lambda never reaches it"),
])
def test_bad_input_exits_2_with_one_line(case, expected, llama_run, tmp_path):
    args = {
        "not a run": [tmp_path],
        "bad quant": [llama_run, "--quant", "q3"],
        "bad format": [llama_run, "--format", "safetensors"],
        "precision for gguf": [llama_run, "--precision", "int4"],
        "gpt2": [gpt2_run(tmp_path, llama_run), "--output", tmp_path / "out"],
        "no lambda": [unconditioned_run(tmp_path, llama_run), "--output", tmp_path / "out"],
    }[case]
    result = invoke(*args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


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
