"""Merged presets and Modelfiles (issue 16): one plain file per lambda, for apps that load one GGUF.

The tiny soup run of export_helpers (two adapters that memorise different answers) is copied with a
default lambda off the centre and a steering strength of 1.5, so "default", "balanced" and the
strength are all exercised: a preset must equal the HF mix at the same lambda *and strength*.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agreement_helpers import assert_backends_agree, confident_answer
from export_helpers import SHORT, SOUP_OBJECTIVES, tiny_run, tiny_soup_run
from go_template import render_go
from lwdpo_edge.contract import read_run_manifest, write_run_manifest
from lwdpo_edge.export.verify import PROBE_PROMPTS
from lwdpo_edge.lambdas import LambdaError

VERTICES = {"helpfulness": {"helpfulness": 1.0, "conciseness": 0.0},
            "conciseness": {"helpfulness": 0.0, "conciseness": 1.0}}
DEFAULT = {"helpfulness": 0.8, "conciseness": 0.2}
STRENGTH = 1.5


@pytest.fixture(scope="module")
def soup_run(tmp_path_factory, smollm2_tokenizer) -> Path:
    """The session's soup run, copied with DEFAULT and STRENGTH in its lwdpo.json."""
    source = tiny_soup_run(tmp_path_factory, smollm2_tokenizer)
    run = tmp_path_factory.mktemp("preset") / "run"
    shutil.copytree(source, run)
    manifest = read_run_manifest(run)
    write_run_manifest(run, SOUP_OBJECTIVES, manifest["base_model"], manifest["training"], lambda_default=DEFAULT,
                       conditioning="soup", adapters=manifest["adapters"], soup_strength=STRENGTH)
    return run


@pytest.fixture(scope="module")
def vertex_presets(soup_run, tmp_path_factory):
    from lwdpo_edge.export.preset import choose_presets, export_presets

    presets = choose_presets(read_run_manifest(soup_run), ["helpfulness"], ["helpfulness=0,conciseness=1"])
    out = tmp_path_factory.mktemp("preset-out")
    return export_presets(soup_run, "gguf", "f16", presets, out, show_progress=False)


@pytest.fixture(scope="module")
def hf_soup(soup_run):
    from lwdpo_edge import load_model

    with load_model(soup_run, threads=1) as model:
        yield model


def user(k: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": PROBE_PROMPTS[k]}]


def test_choose_presets_names_vertices_balanced_default_and_any_lambda(soup_run):
    from lwdpo_edge.export.architectures import ExportInputError
    from lwdpo_edge.export.preset import choose_presets

    manifest = read_run_manifest(soup_run)
    assert choose_presets(manifest, ["all"], []) == [
        ("helpfulness", VERTICES["helpfulness"]), ("conciseness", VERTICES["conciseness"]),
        ("balanced", {"helpfulness": 0.5, "conciseness": 0.5}), ("default", DEFAULT)]
    # a --lambda at a named preset takes its name; any other gets a file-safe slug; repeats are dropped
    assert choose_presets(manifest, ["default"],
                          ["helpfulness=4,conciseness=1", "helpfulness=0.3 conciseness=0.7"]) == [
        ("default", DEFAULT), ("helpfulness30-conciseness70", {"helpfulness": 0.3, "conciseness": 0.7})]
    with pytest.raises(ExportInputError, match="--preset 'kind': unknown preset; "
                                               "choose from helpfulness, conciseness, balanced, default, all"):
        choose_presets(manifest, ["kind"], [])
    with pytest.raises(ExportInputError,
                       match=r"--lambda 'kindness=1'.*unknown objective.*objectives: helpfulness, conciseness"):
        choose_presets(manifest, [], ["kindness=1"])


def test_each_preset_is_one_verified_gguf_with_its_lambda_in_the_metadata(vertex_presets):
    from lwdpo_edge.gguf_keys import CHAT_TEMPLATE, read_gguf_keys, read_lwdpo_metadata

    assert [r.preset for r in vertex_presets] == ["helpfulness", "conciseness"]
    for result, name in zip(vertex_presets, ["helpfulness", "conciseness"]):
        assert result.report.passed, result.report.summary()
        assert result.output.name == f"run.{name}.f16.gguf"
        assert [p.name for p in result.extra_files] == [f"run.{name}.f16.Modelfile"]
        metadata = read_lwdpo_metadata(result.output)
        assert metadata["conditioning"] == "merged" and metadata["lambda_merged"] == VERTICES[name]
        assert metadata["lambda_default"] == VERTICES[name] and metadata["soup_strength"] == STRENGTH
        template = read_gguf_keys(result.output, lambda k: k == CHAT_TEMPLATE)[CHAT_TEMPLATE]
        assert "lwdpo" not in template  # the base's own template: the weights carry lambda
    assert sorted(p.name for p in vertex_presets[0].output.parent.iterdir()) == sorted(
        p.name for r in vertex_presets for p in [r.output, *r.extra_files])  # nothing staged left behind


def test_a_preset_answers_like_the_hf_mix_at_its_lambda_and_strength_and_not_at_another(vertex_presets, hf_soup):
    from lwdpo_edge import load_model
    from lwdpo_edge.agreement import compare_logits

    for result, name in zip(vertex_presets, ["helpfulness", "conciseness"]):
        with load_model(result.output, threads=1) as merged:
            assert merged.conditioning == "merged" and merged.lambda_merged == VERTICES[name]
            for k in range(len(PROBE_PROMPTS)):
                assert_backends_agree(hf_soup, merged, user(k), VERTICES[name])  # the run's strength, 1.5
            if name == "conciseness":  # memorised, every token confident: text may be compared on any CPU
                # (the helpfulness vertex's free text has near ties on some CPUs: judged teacher-forced only)
                assert (confident_answer(merged, user(0)) == hf_soup.chat(user(0), VERTICES[name], max_tokens=24)
                        == SHORT[0])
            other = "conciseness" if name == "helpfulness" else "helpfulness"
            continuation = hf_soup.encode(hf_soup.chat(user(0), VERTICES[other], max_tokens=24))
            wrong = compare_logits(hf_soup.next_token_logits(user(0), continuation, VERTICES[other]),
                                   merged.next_token_logits(user(0), continuation))
            assert not wrong.ok  # the other vertex's mix is a different model: the two presets differ


def test_a_merged_preset_runs_at_its_lambda_only(vertex_presets):
    from apps.chat_logic import model_info_markdown, presets
    from lwdpo_edge import load_model

    with load_model(vertex_presets[1].output, threads=1) as merged:
        assert merged.validate_lambda({"conciseness": 1}) == VERTICES["conciseness"]
        assert merged.prompt_messages(user(0)) == user(0)  # no header
        with pytest.raises(LambdaError, match="merged preset: lambda is fixed at helpfulness=0.00, conciseness=1.00"):
            merged.chat(user(0), {"helpfulness": 1})
        with pytest.raises(LambdaError, match="merged preset's strength was fixed"):
            merged.chat(user(0), strength=2.0)
        assert merged.info["lambda_merged"] == VERTICES["conciseness"] and not merged.steerable
        assert presets(merged) == {}  # the app offers no preset buttons for a fixed lambda
        assert "merged at export, fixed: helpfulness=0.00, conciseness=1.00" in model_info_markdown(merged.info)


def test_a_preset_modelfile_points_at_its_file_and_renders_the_runtime_prompt(vertex_presets):
    from lwdpo_edge import load_model
    from lwdpo_edge.export.modelfile import read_modelfile

    result = vertex_presets[0]
    modelfile = read_modelfile(result.extra_files[0])
    assert modelfile["FROM"] == f"./{result.output.name}" and (result.output.parent / modelfile["FROM"]).is_file()
    assert modelfile["ADAPTER"] == [] and ("stop", "<|im_end|>") in modelfile["PARAMETER"]
    assert "lambda is fixed at helpfulness=1.00, conciseness=0.00" in result.extra_files[0].read_text()
    with load_model(result.output, threads=1) as merged:
        conversation = [*user(1), {"role": "assistant", "content": "Rest."}, {"role": "user", "content": "More?"}]
        assert_ollama_prompt_equals_runtime(modelfile, merged, conversation)


def assert_ollama_prompt_equals_runtime(modelfile: dict, model, conversation) -> None:
    """Ollama's rendering (SYSTEM prepended when the conversation has none, then TEMPLATE) == the runtime's."""
    system = [m["content"] for m in conversation if m["role"] == "system"] or [modelfile.get("SYSTEM", "")]
    messages = [{"Role": m["role"], "Content": m["content"]} for m in conversation]
    ollama = render_go(modelfile["TEMPLATE"], {"System": system[0], "Messages": messages})
    assert ollama == model.prompt(conversation)


def test_a_soup_export_gets_a_modelfile_with_its_default_mix_as_one_adapter(soup_run, tmp_path, hf_soup):
    """The steerable export: base + K LoRAs for llama.cpp, and for Ollama (one ADAPTER, scale 1) the mix at
    the default lambda and strength concatenated into one LoRA, checked in llama.cpp against the HF mix."""
    from lwdpo_edge.export.modelfile import read_modelfile
    from lwdpo_edge.export.pipeline import export_run
    from lwdpo_edge.export.runtimes import LlamaCppRuntime
    from lwdpo_edge.runtime.lora import LoraSet

    result = export_run(soup_run, "gguf", quant="f16", output=tmp_path, show_progress=False)
    assert result.report.passed, result.report.summary()
    modelfile_path = result.extra_files[-1]
    modelfile = read_modelfile(modelfile_path)
    assert modelfile["FROM"] == f"./{result.output.name}"
    assert modelfile["ADAPTER"] == [f"./{result.output.stem}.default-mix.lora.gguf"]
    assert all((tmp_path / name).is_file() for name in [modelfile["FROM"], *modelfile["ADAPTER"]])
    assert "Ollama\n# applies one ADAPTER at a fixed scale" in modelfile_path.read_text()
    from lwdpo_edge import load_model

    with load_model(result.output, threads=1) as steerable:
        assert_ollama_prompt_equals_runtime(modelfile, steerable, user(2))
    # the mix file at scale 1 in llama.cpp == the HF soup at the default lambda (strength 1.5)
    runtime = LlamaCppRuntime(result.output, n_threads=1)
    adapters = LoraSet(runtime.llm, [tmp_path / modelfile["ADAPTER"][0]])
    try:
        adapters.set_scales([1.0])
        answer = hf_soup.chat(user(0), DEFAULT, max_tokens=24)
        tokens = runtime.tokenize(hf_soup.prompt(user(0), DEFAULT)) + hf_soup.encode(answer)
        from lwdpo_edge.agreement import ReferenceChoices, compare

        reference = ReferenceChoices.from_logits(hf_soup.next_token_logits(user(0), hf_soup.encode(answer), DEFAULT))
        prompt_len = len(tokens) - len(hf_soup.encode(answer))
        mixed = runtime.logits(tokens)[prompt_len - 1:]
        assert compare(reference, mixed).ok
    finally:
        adapters.close()
        runtime.close()


def test_a_soup_run_in_hf_exports_the_default_preset_and_says_so(soup_run, tmp_path, hf_soup):
    from typer.testing import CliRunner

    from lwdpo_edge import load_model
    from lwdpo_edge.cli import app

    done = CliRunner().invoke(app, ["export", str(soup_run), "--format", "hf", "--output", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "cannot take: exporting the merged preset 'default'" in " ".join(done.output.split())
    with load_model(tmp_path / "run.default.hf", threads=1) as merged:
        assert merged.format == "hf" and merged.conditioning == "merged" and merged.lambda_merged == DEFAULT
        for k in range(len(PROBE_PROMPTS)):
            assert_backends_agree(hf_soup, merged, user(k), DEFAULT)


def test_an_onnx_preset_is_merged_with_its_lambda_in_the_metadata(soup_run, tmp_path, hf_soup):
    from lwdpo_edge import load_model
    from lwdpo_edge.export.onnx import read_onnx_metadata
    from lwdpo_edge.export.preset import export_presets

    (result,) = export_presets(soup_run, "onnx", "fp32", [("conciseness", VERTICES["conciseness"])], tmp_path,
                               show_progress=False)
    assert result.report.passed and result.output.name == "run.conciseness.onnx-fp32"
    metadata = read_onnx_metadata(result.output / "model.onnx")
    assert metadata["conditioning"] == "merged" and metadata["lambda_merged"] == VERTICES["conciseness"]
    with load_model(result.output, threads=1) as merged:
        assert merged.conditioning == "merged"
        assert_backends_agree(hf_soup, merged, user(0), VERTICES["conciseness"])


def test_a_header_run_preset_is_the_header_export_with_that_default(tmp_path_factory, smollm2_tokenizer, tmp_path):
    """A header model steers by its header at any lambda: a preset only changes the default its template writes."""
    from lwdpo_edge import load_model
    from lwdpo_edge.export.modelfile import read_modelfile
    from lwdpo_edge.export.preset import choose_presets, export_presets
    from lwdpo_edge.lambdas import format_lambda_header

    run = tiny_run("llama", tmp_path_factory, smollm2_tokenizer)
    manifest = read_run_manifest(run)
    presets = choose_presets(manifest, [manifest["objectives"][1]], [])
    (result,) = export_presets(run, "gguf", "f16", presets, tmp_path, show_progress=False)
    assert result.report.passed, result.report.summary()
    lam = presets[0][1]
    with load_model(result.output, threads=1) as model:
        assert model.conditioning == "header" and model.default_lambda == lam and model.steerable
        assert model.prompt_messages(user(0))[0]["content"] == format_lambda_header(lam, manifest["objectives"])
        modelfile = read_modelfile(result.extra_files[0])
        assert modelfile["SYSTEM"] == format_lambda_header(lam, manifest["objectives"])
        assert_ollama_prompt_equals_runtime(modelfile, model, user(2))


def test_the_chat_app_keeps_a_merged_preset_at_its_lambda_whatever_the_sliders_say(vertex_presets):
    from apps.chat_logic import MERGED_NOTE, slider_lambda
    from lwdpo_edge import load_model

    with load_model(vertex_presets[0].output, threads=1) as merged:
        assert slider_lambda(merged, [0.0, 1.0]) == (VERTICES["helpfulness"], MERGED_NOTE)
        # no LambdaError
        assert isinstance(merged.chat(user(0), slider_lambda(merged, [0.2, 0.9])[0], max_tokens=4), str)


def test_the_cli_refuses_an_unknown_preset_before_loading_anything(soup_run, tmp_path):
    from typer.testing import CliRunner

    from lwdpo_edge.cli import app

    done = CliRunner().invoke(app, ["export", str(soup_run), "--preset", "kindness", "--output", str(tmp_path)])
    assert done.exit_code == 2 and "--preset 'kindness': unknown preset" in " ".join(done.output.split())
    assert list(tmp_path.iterdir()) == []
