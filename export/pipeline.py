"""`export_run`: one run folder -> one verified GGUF file, ONNX folder or merged HF folder.

    read run     lwdpo.json, adapter, base folder, supported architecture (bad input fails here, fast)
    load         fp32 base + adapter, unmerged: the reference the export is verified against
    reference    greedy tokens and top-1 on the probe prompts at two lambdas (verify.py)
    merge        merge_and_unload() into the fp32 base
    write        merged HF folder with the lambda chat template and the lwdpo.json sidecar
    build        GGUF convert (+ quantize) / ONNX build / nothing for hf
    verify       load the output in its runtime and compare (verify.py)
    publish      rename into place (atomic.py); a failed verification publishes NAME.failed instead

Adapter-soup runs (lwdpo.json conditioning "soup") take their own path: soup_export.py. A run trained with
--no-condition-on-lambda (conditioning "none") goes the same way as a header run, as a plain model: the
base's own chat template, a contract that says only "none" (lwdpo_edge/export_contract.py), probes without
a header, as for a merged preset.
"""

from __future__ import annotations

import time
from pathlib import Path

from lwdpo_edge.conditioning import stop_tokens
from lwdpo_edge.contract import MANIFEST_FILE, is_soup_run
from lwdpo_edge.export import runtimes
from lwdpo_edge.export.architectures import ExportInputError
from lwdpo_edge.export.atomic import keep_failed, publish, staging, workdir
from lwdpo_edge.export.gguf import DEFAULT_QUANT, QUANTS, build_gguf
from lwdpo_edge.export.merge import load_run_model, merge_adapter, read_run, save_merged
from lwdpo_edge.export.modelfile import write_modelfile
from lwdpo_edge.export.onnx import DEFAULT_PRECISION, PRECISIONS, build_onnx
from lwdpo_edge.export.progress import Stages
from lwdpo_edge.export.result import EXACT_VARIANTS, ExportResult, VerificationFailed
from lwdpo_edge.export.runtimes import HFRuntime
from lwdpo_edge.export.soup_export import export_soup_run
from lwdpo_edge.export.soup_onnx import export_soup_onnx
from lwdpo_edge.export.verify import plain_probes, reference_probes, verify
from lwdpo_edge.export_contract import SIDECAR_FILE, ExportContract
from lwdpo_edge.gguf_keys import CHAT_TEMPLATE, read_gguf_keys
from lwdpo_edge.models import quiet_transformers

FORMATS = ("gguf", "onnx", "hf")
EXPORT_DIR = "export"  # default output folder inside the run folder


def check_options(fmt: str, quant: str | None, precision: str | None) -> tuple[str, str]:
    """(format, variant) or ExportInputError naming the bad option and the accepted values."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ExportInputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if quant is not None and fmt != "gguf":
        raise ExportInputError(f"--quant applies to --format gguf, not {fmt} (use --precision for onnx)")
    if precision is not None and fmt != "onnx":
        raise ExportInputError(f"--precision applies to --format onnx, not {fmt} (use --quant for gguf)")
    if fmt == "gguf":
        variant = (quant or DEFAULT_QUANT).lower()
        if variant not in QUANTS:
            raise ExportInputError(f"unknown quant {quant!r}; choose one of {', '.join(QUANTS)}")
    elif fmt == "onnx":
        variant = (precision or DEFAULT_PRECISION).lower()
        if variant not in PRECISIONS:
            raise ExportInputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    else:
        variant = "fp32"
    return fmt, variant


def output_path(run_dir: Path, fmt: str, variant: str, output: Path | None) -> Path:
    """Where the export goes: RUN_DIR/export/NAME by default; --output as given when it names a GGUF file
    or an earlier export folder (replaced); NAME inside --output otherwise (an existing folder is
    never replaced by an export)."""
    name = Path(run_dir).resolve().name
    default_name = {"gguf": f"{name}.{variant}.gguf", "onnx": f"{name}.onnx-{variant}", "hf": f"{name}.hf"}[fmt]
    if output is None:
        return Path(run_dir) / EXPORT_DIR / default_name
    output = Path(output)
    if fmt == "gguf" and output.suffix.lower() != ".gguf":  # a folder to put NAME.gguf in
        return output / default_name
    if fmt != "gguf" and output.is_dir() and not (output / SIDECAR_FILE).is_file():
        # an existing folder that is not an earlier export: put the export inside, never replace it
        return output / default_name
    return output


def export_run(run_dir: Path, fmt: str = "gguf", quant: str | None = None, precision: str | None = None,
               output: Path | None = None, verify: bool = True, threads: int = 1, console=None,
               show_progress: bool = True, lambda_default: dict[str, float] | None = None) -> ExportResult:
    """Export a run folder (see module docstring). Raises ExportInputError, ConversionError, VerificationFailed.
    lambda_default: header runs, the default lambda the export carries instead of the run's (a preset)."""
    fmt, variant = check_options(fmt, quant, precision)
    if is_soup_run(run_dir) and fmt == "onnx":  # the base + LoRA branches with B as inputs (soup_onnx.py)
        return export_soup_onnx(run_dir, variant, output_path(run_dir, fmt, variant, output), verify, threads, console,
                                show_progress)
    if is_soup_run(run_dir):  # base GGUF + one LoRA GGUF per objective (soup_export.py)
        return export_soup_run(run_dir, fmt, variant, output_path(run_dir, fmt, variant, output), verify, threads,
                               console, show_progress)
    manifest, base_dir, _arch = read_run(Path(run_dir))
    contract = run_contract(run_dir, manifest, lambda_default)
    final = output_path(run_dir, fmt, variant, output)
    result = ExportResult(fmt, variant, final)
    start = time.perf_counter()
    with (Stages(console, show_progress) as stage, workdir(final) as work,
          staging(final, is_dir=fmt != "gguf") as staged):
        merged_dir, expected, stop = _merge(run_dir, base_dir, manifest, contract, fmt, variant, staged, work, verify,
                                            threads, stage)
        build_verify_publish(result, merged_dir, contract, staged, work, expected, stop, threads, stage)
    result.stage_seconds, result.seconds = stage.seconds, time.perf_counter() - start
    return result


def run_contract(run_dir: Path, manifest: dict, lambda_default: dict[str, float] | None) -> ExportContract:
    """The contract the export carries; ExportInputError (one line, not a traceback) for a lwdpo.json it cannot
    export, such as an unknown conditioning."""
    preset = {"lambda_default": lambda_default} if lambda_default else {}
    try:
        return ExportContract.from_manifest({**manifest, **preset})
    except ValueError as err:
        raise ExportInputError(f"{Path(run_dir) / MANIFEST_FILE}: {err}") from None


def build_verify_publish(result: ExportResult, merged_dir: Path, contract: ExportContract, staged: Path, work: Path,
                         expected, stop, threads: int, stage) -> None:
    """The merged folder -> the format (build), checked in its runtime against `expected` (None: not
    verified), renamed to result.output (publish), plus the Modelfile beside a GGUF."""
    fmt, variant, final = result.format, result.variant, result.output
    template = (merged_dir / "chat_template.jinja").read_text(encoding="utf-8")
    _build(fmt, variant, merged_dir, staged, work, stage)
    if expected is not None:
        with stage("verify in " + {"gguf": "llama.cpp", "onnx": "onnxruntime-genai", "hf": "transformers"}[fmt]):
            result.report = _verify(fmt, variant, staged, expected, stop, threads)
        if not result.report.passed:
            raise VerificationFailed(result.report, keep_failed(staged, final))
    publish(staged, final)
    if fmt == "gguf":
        result.extra_files.append(_modelfile(final, contract, template))


def _merge(run_dir, base_dir, manifest, contract, fmt, variant, staged, work, verify, threads, stage):
    """Load the run, record the reference probes, merge, write the merged folder. -> (folder, expected, stop)."""
    with stage("load base (fp32) + adapter"):
        model, tokenizer = load_run_model(run_dir, base_dir)
    stop = stop_tokens(model, tokenizer)
    expected = None
    if verify:
        with stage("reference probes (unmerged model)"):
            runtime = HFRuntime(model, tokenizer, threads)
            expected = (reference_probes(runtime, tokenizer, contract, stop) if contract.takes_lambda
                        else plain_probes(runtime, tokenizer, stop))  # no header: the prompt as the user wrote it
    with stage("merge adapter"):
        merged = merge_adapter(model)
    with stage("write merged HF folder"):
        target = staged if fmt == "hf" else work / "merged"
        provenance = {"format": f"{fmt} {variant}", "exported_from": {"run": str(Path(run_dir).resolve()),
                                                                      "base_model": manifest["base_model"]}}
        save_merged(merged, tokenizer, contract, target, **provenance)
    return target, expected, stop


def _build(fmt, variant, merged_dir, staged, work, stage) -> None:
    if fmt == "gguf":
        build_gguf(merged_dir, staged, variant, work, stage)
    elif fmt == "onnx":
        build_onnx(merged_dir, staged, variant, work, stage)


def _verify(fmt, variant, staged, expected, stop, threads):
    """Load the staged output in its runtime, check it against the reference, free it."""
    runtime, template = _open_output(fmt, staged, threads)
    target = {"gguf": "GGUF", "onnx": "ONNX", "hf": "HF safetensors"}[fmt] + f" {variant}"
    try:
        return verify(runtime, template, expected, target, exact=variant in EXACT_VARIANTS, stop=stop)
    finally:
        if hasattr(runtime, "close"):
            runtime.close()


def _open_output(fmt, staged: Path, threads: int):
    """(runtime, chat template) of an export, read the way an app would read it."""
    if fmt == "gguf":
        template = read_gguf_keys(staged, lambda key: key == CHAT_TEMPLATE).get(CHAT_TEMPLATE, "")
        return runtimes.LlamaCppRuntime(staged, n_threads=threads), template
    template = (staged / "chat_template.jinja").read_text(encoding="utf-8")
    if fmt == "onnx":
        return runtimes.OrtGenaiRuntime(staged, n_threads=threads), template
    from transformers import AutoModelForCausalLM, AutoTokenizer  # transformers: heavy, only to verify an hf export

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(staged)
    return runtimes.HFRuntime(model, AutoTokenizer.from_pretrained(staged), n_threads=threads), template


def _modelfile(final: Path, contract: ExportContract, template: str) -> Path:
    return write_modelfile(final, contract, template)
