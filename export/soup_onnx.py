"""`export_run` for adapter-soup runs to ONNX: lambda stays a run-time input (export/onnx_lora.py).

    NAME.onnx-int4/                  onnxruntime-genai folder of the untouched base (fuse_qkv=false) with
      model.onnx                       one LoRA branch per adapted projection: A fixed, B an input whose
                                       default is the mix at the default lambda; lwdpo.* metadata_props
      lwdpo_lora_blocks.safetensors    each objective's B block, to build B(lambda) for any lambda
      lwdpo.json                       conditioning "soup", lora_blocks, soup_strength
      chat_template.jinja              the base's own template (no header: the weights carry lambda)

Stages: read run -> reference (the HF mix at a vertex, the centre and the default) -> build the base
ONNX -> add the LoRA branches -> verify (onnxruntime-genai with a `.onnx_adapter` per lambda, the same
checks and floors as every export) -> publish. A failed verification keeps NAME.failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from lwdpo_edge.contract import Conditioning
from lwdpo_edge.export.architectures import ExportInputError
from lwdpo_edge.export.atomic import keep_failed, publish, staging, workdir
from lwdpo_edge.export.onnx import build_onnx
from lwdpo_edge.export.onnx_lora import BUILDER_OPTIONS, add_lora_branches
from lwdpo_edge.export.progress import Stages
from lwdpo_edge.export.result import EXACT_VARIANTS, ExportResult, VerificationFailed
from lwdpo_edge.export.runtimes import OrtGenaiRuntime
from lwdpo_edge.export.soup_export import _reference, read_soup_run, reference_lambdas
from lwdpo_edge.export.verify import VerificationReport, verify
from lwdpo_edge.export_contract import SIDECAR_FILE, ExportContract
from lwdpo_edge.models import load_tokenizer
from lwdpo_edge.onnx_adapter import BLOCKS_FILE, read_blocks, write_onnx_adapter
from lwdpo_edge.soup import soup_scales


def export_soup_onnx(run_dir: Path, variant: str, final: Path, verify: bool = True, threads: int = 1,
                     console=None, show_progress: bool = True):
    """Export a soup run as one steerable ONNX folder (module docstring). -> result.ExportResult."""
    manifest, base_dir, dirs = read_soup_run(Path(run_dir), "onnx")
    contract = dataclasses.replace(ExportContract.from_manifest(manifest), conditioning=Conditioning.SOUP,
                                   lora_blocks=BLOCKS_FILE)
    result = ExportResult("onnx", variant, final)
    start = time.perf_counter()
    with Stages(console, show_progress) as stage, workdir(final) as work, staging(final, is_dir=True) as staged:
        expected, stop = _reference(run_dir, contract, threads, stage) if verify else (None, None)
        folder = _base_folder(run_dir, base_dir, manifest, contract, variant, work)
        build_onnx(folder, staged, variant, work, stage, BUILDER_OPTIONS)
        with stage(f"add {len(dirs)} adapters as one LoRA branch (B = graph input)"):
            scales = soup_scales(contract.lambda_default, contract.objectives, contract.soup_strength)
            add_lora_branches(staged / "model.onnx", list(dirs.values()), contract.objectives, scales)
        if verify:
            with stage("verify in onnxruntime-genai (an adapter per lambda)"):
                result.report = _verify(staged, contract, expected, stop, variant, reference_lambdas(contract), work,
                                        threads)
            if not result.report.passed:
                raise VerificationFailed(result.report, keep_failed(staged, final))
        publish(staged, final)
    result.stage_seconds, result.seconds = stage.seconds, time.perf_counter() - start
    return result


def _base_folder(run_dir, base_dir: Path, manifest, contract, variant, work: Path) -> Path:
    """The base's files linked into a folder with the contract sidecar and its own chat template."""
    folder = work / "base"
    folder.mkdir()
    for path in base_dir.iterdir():
        if path.is_file() and path.name != SIDECAR_FILE:
            os.symlink(path.resolve(), folder / path.name)
    if not (folder / "chat_template.jinja").is_file():
        template = load_tokenizer(base_dir).chat_template
        if not template:
            raise ExportInputError(f"{base_dir}: the base tokenizer has no chat template")
        (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    provenance = {"format": f"onnx {variant}", "exported_from": {"run": str(Path(run_dir).resolve()),
                                                                  "base_model": manifest["base_model"]}}
    (folder / SIDECAR_FILE).write_text(json.dumps(contract.to_json(**provenance), indent=2) + "\n", encoding="utf-8")
    return folder


def _verify(staged: Path, contract, expected, stop, variant: str, lambdas, work: Path, threads: int):
    """onnxruntime-genai with the mix at each lambda as an .onnx_adapter, against the HF mix (verify.py checks)."""
    template = (staged / "chat_template.jinja").read_text(encoding="utf-8")
    report = VerificationReport(f"ONNX {variant} + LoRA inputs", exact=variant in EXACT_VARIANTS)
    runtime = OrtGenaiRuntime(staged, n_threads=threads)
    blocks = read_blocks(staged / contract.lora_blocks, contract.objectives)
    for i, lam in enumerate(lambdas):
        adapter = write_onnx_adapter(work / f"mix{i}.onnx_adapter", blocks,
                                     soup_scales(lam, contract.objectives, contract.soup_strength))
        runtime.set_adapter(adapter)
        probes = [e for e in expected if e.lam == lam]
        report.checks += verify(runtime, template, probes, report.target, report.exact, stop).checks
    return report
