"""Merged presets: a run at one lambda as a single plain model any app can load (LM Studio, Ollama, GPT4All).

    lwdpo-edge export RUN --preset conciseness --preset balanced        one file per preset
    lwdpo-edge export RUN --lambda helpfulness=0.2,conciseness=0.8     any point of the simplex

writes RUN/export/NAME.conciseness.q8_0.gguf, NAME.balanced.q8_0.gguf (+ one Ollama Modelfile each), or
the same as ONNX / HF folders. What "merged at lambda" means depends on how the run carries lambda:

    soup    the adapter mix at lambda, base + sum_k c_k * delta_k with c = soup_scales(lambda, strength),
            folded into the fp32 weights (peft merge_and_unload of the active adapters at their scales).
            The file has conditioning "merged" and lwdpo.lambda_merged = lambda: the runtime runs it at
            that lambda only and the app shows it, fixed. No header, the base's own chat template.
    header  a header model is one set of weights for every lambda: the preset is the ordinary export
            with lambda as its *default*, which the chat template writes when an app sends no header
            (what LM Studio and Ollama do). It stays steerable by header.

Each preset is verified like every export: the HF reference at that lambda (the soup mix, unmerged)
against the file in its runtime (export/verify.py); a failure keeps NAME.failed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from lwdpo_edge.conditioning import stop_tokens
from lwdpo_edge.contract import Conditioning, is_soup_run
from lwdpo_edge.export.architectures import ExportInputError
from lwdpo_edge.export.atomic import staging, workdir
from lwdpo_edge.export.merge import save_merged
from lwdpo_edge.export.pipeline import EXPORT_DIR, build_verify_publish, export_run
from lwdpo_edge.export.result import ExportResult
from lwdpo_edge.export.progress import Stages
from lwdpo_edge.export.runtimes import HFRuntime
from lwdpo_edge.export.soup_export import read_soup_run
from lwdpo_edge.export.verify import plain_probes
from lwdpo_edge.export_contract import ExportContract
from lwdpo_edge.lambdas import LambdaError, lambda_slug, parse_lambda_arg, preset_lambdas, quantize_lambda
from lwdpo_edge.models import quiet_transformers
from lwdpo_edge.soup import load_soup

ALL_PRESETS = "all"


def choose_presets(manifest: dict, presets: list[str], lambdas: list[str]) -> list[tuple[str, dict[str, float]]]:
    """[(name, quantised lambda)] for --preset NAME (or 'all') and --lambda SPEC; ExportInputError otherwise.
    A --lambda that equals a named preset keeps the preset's name; duplicates are dropped."""
    if manifest.get("conditioning") == Conditioning.NONE:
        raise ExportInputError("the run was trained with --no-condition-on-lambda: it takes no lambda, so it has no "
                               "presets; export it without --preset / --lambda (a plain model)")
    objectives = manifest["objectives"]
    table = preset_lambdas(objectives, manifest.get("lambda_default"))
    chosen: dict[str, dict[str, float]] = {}
    for name in presets:
        if name == ALL_PRESETS:
            chosen.update(table)
        elif name in table:
            chosen[name] = table[name]
        else:
            raise ExportInputError(f"--preset {name!r}: unknown preset; choose from {', '.join([*table, ALL_PRESETS])}")
    for text in lambdas:
        try:
            lam = quantize_lambda(parse_lambda_arg(text), objectives)
        except LambdaError as err:
            raise ExportInputError(f"--lambda {text!r}: {err} (objectives: {', '.join(objectives)})") from None
        named = [name for name, value in table.items() if value == lam]
        chosen.setdefault(named[0] if named else lambda_slug(lam, objectives), lam)
    unique: dict[str, dict[str, float]] = {}
    for name, lam in chosen.items():  # 'balanced' and 'default' coincide when the default is uniform
        if lam not in unique.values():
            unique[name] = lam
    return list(unique.items())


def preset_output(run_dir: Path, fmt: str, variant: str, output: Path | None, name: str, count: int) -> Path:
    """RUN/export/NAME.<preset>.<variant>.gguf (or .onnx-<variant> / .hf folder); --output is a folder to put
    it in, or with exactly one preset a .gguf file name."""
    run = Path(run_dir).resolve().name
    file_name = {"gguf": f"{run}.{name}.{variant}.gguf", "onnx": f"{run}.{name}.onnx-{variant}",
                 "hf": f"{run}.{name}.hf"}[fmt]
    if output is None:
        return Path(run_dir) / EXPORT_DIR / file_name
    output = Path(output)
    if fmt == "gguf" and output.suffix.lower() == ".gguf":
        if count > 1:
            raise ExportInputError(f"--output {output} names one file but {count} presets are exported; give a folder")
        return output
    return output / file_name


def export_presets(run_dir: Path, fmt: str, variant: str, presets: list[tuple[str, dict[str, float]]],
                   output: Path | None = None, verify: bool = True, threads: int = 1, console=None,
                   show_progress: bool = True) -> list:
    """Export every (name, lambda) in `presets` (module docstring). -> [result.ExportResult], one per preset."""
    results = []
    for name, lam in presets:
        final = preset_output(run_dir, fmt, variant, output, name, len(presets))
        if is_soup_run(run_dir):
            results.append(export_merged_soup(run_dir, fmt, variant, final, lam, verify, threads, console,
                                              show_progress))
        else:  # header: the same weights, lambda as the default the template writes
            quant, precision = (variant if fmt == "gguf" else None), (variant if fmt == "onnx" else None)
            results.append(export_run(run_dir, fmt, quant, precision, final, verify, threads, console, show_progress,
                                      lambda_default=lam))
        results[-1].preset = name
    return results


def export_merged_soup(run_dir: Path, fmt: str, variant: str, final: Path, lam: dict[str, float], verify: bool = True,
                       threads: int = 1, console=None, show_progress: bool = True):
    """A soup run's mix at `lam` folded into one model and exported as `fmt` to `final`, verified."""
    manifest = _soup_manifest(run_dir)
    result = ExportResult(fmt, variant, final)
    start = time.perf_counter()
    with (Stages(console, show_progress) as stage, workdir(final) as work,
          staging(final, is_dir=fmt != "gguf") as staged):
        merged_dir, contract, expected, stop = _merge_mix(run_dir, manifest, fmt, variant, lam, staged, work, verify,
                                                          threads, stage)
        build_verify_publish(result, merged_dir, contract, staged, work, expected, stop, threads, stage)
    result.stage_seconds, result.seconds = stage.seconds, time.perf_counter() - start
    return result


def _soup_manifest(run_dir: Path) -> dict:
    return read_soup_run(Path(run_dir), "gguf")[0]  # its checks (ExportInputError); any format merges the same way


def _merge_mix(run_dir, manifest, fmt, variant, lam, staged, work, verify, threads, stage):
    """Load the soup at `lam`, record the reference probes, merge, write the merged folder.
    -> (folder, contract, expected probes or None, stop tokens)."""
    with stage("load base (fp32) + adapters"), quiet_transformers():
        model, tokenizer, _ = load_soup(Path(run_dir))
    lam = model.soup_mixer.set_lambda(lam)  # the run's default strength
    strength = model.soup_mixer.default_strength
    contract = dataclasses.replace(ExportContract.from_manifest({**manifest, "conditioning": "header"}),
                                   conditioning=Conditioning.MERGED, lambda_default=lam, lambda_merged=lam,
                                   soup_strength=strength)
    stop = stop_tokens(model, tokenizer)
    expected = None
    if verify:
        with stage("reference probes (HF adapter mix)"):
            expected = plain_probes(HFRuntime(model, tokenizer, threads), tokenizer, stop)
    with stage("merge the mix into the weights"):
        merged = model.merge_and_unload().eval()  # the active adapters at their scales: c_k * alpha_k / r_k
    with stage("write merged HF folder"):
        target = staged if fmt == "hf" else work / "merged"
        provenance = {"format": f"{fmt} {variant}", "merged_from": {"run": str(Path(run_dir).resolve()),
                      "lambda": lam, "soup_strength": strength, "base_model": manifest["base_model"]}}
        save_merged(merged, tokenizer, contract, target, **provenance)
    return target, contract, expected, stop
