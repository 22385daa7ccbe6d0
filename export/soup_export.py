"""`export_run` for adapter-soup runs: the plain base GGUF plus one LoRA GGUF per objective.

    NAME.q8_0.gguf                        the base, converted / quantised like a header export, with the
                                          lwdpo.* keys, lwdpo.conditioning = "soup" and lwdpo.soup_adapters
                                          (the file names below); its chat template is the base's own
    NAME.q8_0.helpfulness.lora.gguf       one LoRA per objective, f16 (f32 when f16 fails verification)
    NAME.q8_0.conciseness.lora.gguf       ...
    NAME.q8_0.default-mix.lora.gguf       the mix at the default lambda as ONE LoRA at scale 1 (rank sum r_k,
                                          exact; soup_gguf.write_mix_lora_gguf), for apps that apply one
                                          adapter at a fixed scale
    NAME.q8_0.Modelfile                   Ollama: FROM the base, ADAPTER the default mix (export/modelfile.py)

An app applies lambda by loading every listed file (llama_adapter_lora_init) and setting the scales to
the quantised lambda (llama_set_adapters_lora): base + sum_k lambda_k * delta_k, no header. The LoRA
names carry the base's name so two exports in one folder never share (and overwrite) adapter files.

Stages: read run -> reference (lwdpo_edge.soup's HF mix at a vertex and the centre) -> convert the base
-> write the LoRA files -> verify (llama.cpp with the adapters at those lambdas, same checks and floors
as header exports) -> publish. Everything is staged in one temporary folder beside the output; publish
renames each LoRA into place first and the base GGUF last, so the base (the file apps open, which lists
the adapters) appears only once every adapter it names is complete. A failed verification keeps the
whole set as the folder NAME.q8_0.gguf.failed/.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from lwdpo_edge.conditioning import prompt_text, stop_tokens
from lwdpo_edge.contract import Conditioning, RunFolderError, read_run_manifest, soup_adapter_dirs
from lwdpo_edge.export.architectures import ExportInputError, check_architecture
from lwdpo_edge.export.atomic import keep_failed, staging, workdir
from lwdpo_edge.export.gguf import build_gguf
from lwdpo_edge.export.modelfile import write_modelfile
from lwdpo_edge.export.progress import Stages
from lwdpo_edge.export.result import EXACT_VARIANTS, ExportResult, VerificationFailed
from lwdpo_edge.export.runtimes import HFRuntime, LlamaCppRuntime
from lwdpo_edge.export.verify import PROBE_PROMPTS, VerificationReport, expected_probe, verify
from lwdpo_edge.export_contract import SIDECAR_FILE, ExportContract
from lwdpo_edge.gguf_keys import CHAT_TEMPLATE, read_gguf_keys
from lwdpo_edge.lambdas import quantize_lambda
from lwdpo_edge.models import quiet_transformers
from lwdpo_edge.runtime.lora import LoraSet
from lwdpo_edge.soup import load_soup, soup_scales

LORA_DTYPES = ("f16", "f32")  # tried in order: f16 halves the files; f32 is exact


def lora_names(final: Path, objectives) -> list[str]:
    """LoRA file names for the base GGUF `final`: NAME.q8_0.gguf -> NAME.q8_0.<objective>.lora.gguf."""
    return [f"{final.stem}.{name}.lora.gguf" for name in objectives]


def mix_name(final: Path) -> str:
    """The default-mix LoRA beside the base GGUF `final` (not in lwdpo.soup_adapters: apps that mix
    per request never load it)."""
    return f"{final.stem}.default-mix.lora.gguf"


def read_soup_run(run_dir: Path, fmt: str):
    """(manifest, base folder, {objective: adapter folder}) or ExportInputError."""
    if fmt not in ("gguf", "onnx"):
        raise ExportInputError(f"{run_dir}: a soup run's steerable export is GGUF (base + one LoRA GGUF per objective, "
                               f"scaled per request) or ONNX (the adapters' B matrices as inputs); {fmt} takes a "
                               f"merged preset at one lambda instead: `lwdpo-edge export --format {fmt} --preset NAME`")
    try:
        manifest = read_run_manifest(run_dir)
        dirs = soup_adapter_dirs(run_dir, manifest)
    except RunFolderError as err:
        raise ExportInputError(str(err)) from err
    base_dir = Path(manifest["base_model"].get("path", ""))
    if not (base_dir / "config.json").is_file():
        raise ExportInputError(f"{run_dir}: base model folder {base_dir} (lwdpo.json base_model.path) "
                               "has no config.json")
    check_architecture(base_dir)
    return manifest, base_dir, dirs


def probe_lambdas(contract: ExportContract) -> list[dict[str, float]]:
    """A vertex (all weight on the first objective) and the centre (uniform, quantised)."""
    objectives = contract.objectives
    return [quantize_lambda({objectives[0]: 1.0}, objectives),
            quantize_lambda(dict.fromkeys(objectives, 1.0), objectives)]


def reference_lambdas(contract: ExportContract) -> list[dict[str, float]]:
    """probe_lambdas plus the default lambda (what the default-mix LoRA is checked at), without repeats."""
    lambdas = probe_lambdas(contract)
    return lambdas + ([contract.lambda_default] if contract.lambda_default not in lambdas else [])


def export_soup_run(run_dir: Path, fmt: str, variant: str, final: Path, verify: bool = True, threads: int = 1,
                    console=None, show_progress: bool = True):
    """Export a soup run (module docstring); returns result.ExportResult with the LoRA files in extra_files."""
    manifest, base_dir, dirs = read_soup_run(Path(run_dir), fmt)
    names = lora_names(final, manifest["objectives"])
    contract = dataclasses.replace(ExportContract.from_manifest(manifest), conditioning=Conditioning.SOUP,
                                   soup_adapters=tuple(names))
    result = ExportResult(fmt, variant, final)
    start = time.perf_counter()
    with Stages(console, show_progress) as stage, workdir(final) as work, staging(final, is_dir=True) as staged:
        expected, stop = _reference(run_dir, contract, threads, stage) if verify else (None, None)
        base_out = staged / final.name
        _build_base(run_dir, base_dir, manifest, contract, variant, work, base_out, stage)
        for dtype in LORA_DTYPES:
            with stage(f"write {len(names)} LoRA GGUFs ({dtype})"):
                _write_loras(base_dir, dirs, names, staged, dtype)
            if not verify:
                break
            with stage(f"verify in llama.cpp (LoRA {dtype})"):
                result.report = _verify(base_out, [staged / n for n in names], contract, expected, stop, variant,
                                        dtype, threads)
            if result.report.passed:
                break
        if verify and not result.report.passed:
            raise VerificationFailed(result.report, keep_failed(staged, final))
        _default_mix(base_dir, dirs, contract, staged / mix_name(final), staged / final.name, expected, stop, variant,
                     verify, threads, stage, result)
        result.extra_files = publish_set(staged, final, [*names, mix_name(final)])
        result.extra_files.append(_modelfile(run_dir, final, contract))
    result.stage_seconds, result.seconds = stage.seconds, time.perf_counter() - start
    return result


def _reference(run_dir, contract, threads, stage):
    """Greedy tokens and top-1 of lwdpo_edge.soup's HF mix at the probe lambdas. -> (expected, stop)."""
    with stage("load base (fp32) + adapters"), quiet_transformers():
        model, tokenizer, _ = load_soup(Path(run_dir))
    stop = stop_tokens(model, tokenizer)
    runtime = HFRuntime(model, tokenizer, threads)
    expected = []
    with stage("reference probes (HF adapter mix)"):
        for lam in reference_lambdas(contract):
            lam = model.soup_mixer.set_lambda(lam)
            for prompt in PROBE_PROMPTS:
                text = prompt_text(tokenizer, [{"role": "user", "content": prompt}])  # no header: soup
                expected.append(expected_probe(runtime, prompt, lam, "", text, stop))
    return expected, stop


def _build_base(run_dir, base_dir: Path, manifest, contract, variant, work: Path, out: Path, stage) -> None:
    """Convert (+ quantise) the untouched base: its files linked into a folder with the contract sidecar."""
    folder = work / "base"
    folder.mkdir()
    for path in base_dir.iterdir():
        if path.is_file() and path.name != SIDECAR_FILE:
            os.symlink(path.resolve(), folder / path.name)
    provenance = {"format": f"gguf {variant}", "exported_from": {"run": str(Path(run_dir).resolve()),
                                                                  "base_model": manifest["base_model"]}}
    (folder / SIDECAR_FILE).write_text(json.dumps(contract.to_json(**provenance), indent=2) + "\n", encoding="utf-8")
    build_gguf(folder, out, variant, work, stage)


def _write_loras(base_dir: Path, dirs: dict[str, Path], names: list[str], staged: Path, dtype: str) -> None:
    from lwdpo_edge.export.soup_gguf import write_lora_gguf  # imports torch at its top

    for (objective, adapter_dir), name in zip(dirs.items(), names):
        write_lora_gguf(base_dir, adapter_dir, staged / name, dtype)


def _default_mix(base_dir, dirs, contract, out: Path, base: Path, expected, stop, variant, verify, threads, stage,
                 result):
    """Write the default-mix LoRA (f16, else f32 if f16 fails) and check base + it at scale 1 against the HF
    mix at the default lambda; a failure fails the export like any other verification."""
    from lwdpo_edge.export.soup_gguf import write_mix_lora_gguf  # imports torch at its top

    scales = soup_scales(contract.lambda_default, contract.objectives, contract.soup_strength)
    for dtype in LORA_DTYPES:
        with stage(f"write the default-mix LoRA ({dtype})"):
            write_mix_lora_gguf(base_dir, list(dirs.values()), scales, out, dtype)
        if not verify:
            return
        with stage(f"verify the default mix in llama.cpp ({dtype})"):
            report = _verify(base, [out], contract, expected, stop, variant, dtype, threads,
                             lambdas=[contract.lambda_default], scales=lambda lam: [1.0])
        if report.passed:
            result.report.checks += report.checks
            return
    final = out.parent.parent / base.name  # the staged folder sits beside the final name
    raise VerificationFailed(report, keep_failed(out.parent, final))


def _modelfile(run_dir, final: Path, contract) -> Path:
    template = read_gguf_keys(final, lambda key: key == CHAT_TEMPLATE).get(CHAT_TEMPLATE, "")
    return write_modelfile(final, contract, template, adapter_name=mix_name(final))


def _verify(base: Path, loras: list[Path], contract, expected, stop, variant: str, dtype: str, threads: int,
            lambdas=None, scales=None):
    """llama.cpp with the staged adapters at each probe lambda against the HF mix (export/verify.py checks).
    `scales(lam)`: the adapter scales at lam (default: lam itself, one LoRA per objective)."""
    template = read_gguf_keys(base, lambda key: key == CHAT_TEMPLATE).get(CHAT_TEMPLATE, "")
    report = VerificationReport(f"GGUF {variant} + LoRA {dtype}", exact=variant in EXACT_VARIANTS)
    runtime = LlamaCppRuntime(base, n_threads=threads)
    adapters = LoraSet(runtime.llm, loras)
    try:
        for lam in lambdas or probe_lambdas(contract):
            adapters.set_scales(scales(lam) if scales
                                else soup_scales(lam, contract.objectives, contract.soup_strength))
            probes = [e for e in expected if e.lam == lam]
            report.checks += verify(runtime, template, probes, report.target, report.exact, stop).checks
    finally:
        adapters.close()
        runtime.close()
    return report


def publish_set(staged: Path, final: Path, names: list[str]) -> list[Path]:
    """Rename each LoRA into place, then the base last (it lists the adapters): see module docstring."""
    placed = []
    for name in names:
        os.replace(staged / name, final.parent / name)
        placed.append(final.parent / name)
    os.replace(staged / final.name, final)
    return placed
