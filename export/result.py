"""What every export path returns, and what it raises when its output fails verification.

pipeline.py (header runs, `export_run`), soup_export.py (soup GGUF), soup_onnx.py (soup ONNX) and
preset.py (merged presets) share these; pipeline.py dispatches to the soup paths, so they live here,
below all four, rather than in pipeline.py (which still exports the names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

EXACT_VARIANTS = {"f16", "fp32"}  # greedy tokens must agree with the fp32 reference


class VerificationFailed(RuntimeError):
    def __init__(self, report, kept_at: Path):
        super().__init__(f"{report.summary()}; kept as {kept_at}")
        self.report, self.kept_at = report, kept_at


@dataclass
class ExportResult:
    format: str
    variant: str  # q8_0, int4, fp32 ...
    output: Path
    extra_files: list[Path] = field(default_factory=list)  # the Ollama Modelfile
    preset: str | None = None  # merged presets (export/preset.py): the preset's name
    report: object = None  # VerificationReport, or None with verify=False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def size_bytes(self) -> int:
        paths = self.output.rglob("*") if self.output.is_dir() else [self.output]
        return sum(p.stat().st_size for p in paths if p.is_file())
