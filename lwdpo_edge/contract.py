"""The run folder contract (docs/design.md, sections 6-7): later stages read only this.

    RUN_DIR/
      adapter/           PEFT adapter (adapter_config.json + adapter_model.safetensors)
      lwdpo.json         objectives, header format, base model, default lambda, training summary
      checkpoints/       HF Trainer checkpoints (resume)
      metrics.jsonl      one JSON object per logged step

A soup run (`--conditioning soup`, lwdpo_edge/soup.py) has one adapter per objective instead:
    adapters/<objective>/, checkpoints/<objective>/, metrics/<objective>.jsonl, and lwdpo.json with
    conditioning "soup" and "adapters": {objective: "adapters/<objective>"} (paths relative to RUN_DIR).

`write_run_manifest` and `read_run_manifest` are the only writer and reader of lwdpo.json;
`is_soup_run` only peeks at its conditioning, without checking the rest.
"""

from __future__ import annotations

import json
import os
import tempfile
from enum import Enum
from pathlib import Path
from typing import Any

from lwdpo_edge.lambdas import HEADER_FORMAT, LambdaError, normalize_lambda

CONTRACT_VERSION = 1
MANIFEST_FILE = "lwdpo.json"
ADAPTER_DIR = "adapter"
ADAPTERS_DIR = "adapters"  # soup runs: one sub-folder per objective
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"


class Conditioning(str, Enum):
    """How lambda reaches a model (docs/design.md section 5); the value is what lwdpo.json and the
    exported files say (`lwdpo.conditioning`)."""

    SOUP = "soup"  # one LoRA adapter per objective, mixed with scales from lambda at inference
    HEADER = "header"  # one adapter; lambda written as a header at the start of the system message
    MERGED = "merged"  # an export with one lambda's mix folded into the weights (a preset)
    NONE = "none"  # lambda never reaches the model (--no-condition-on-lambda); its export is a plain model

    def __str__(self) -> str:
        return self.value


TRAINED_CONDITIONINGS = (Conditioning.SOUP, Conditioning.HEADER)  # what `train --conditioning` takes
RUN_CONDITIONINGS = (Conditioning.SOUP, Conditioning.HEADER, Conditioning.NONE)  # what a run folder may hold
# what an export may hold; "none" marks a plain model (no objectives, takes no lambda)
EXPORTED_CONDITIONINGS = (Conditioning.HEADER, Conditioning.SOUP, Conditioning.MERGED, Conditioning.NONE)

# The steering strength of a soup (lwdpo_edge/soup.py), as lwdpo.json and the exports carry it.
MAX_STRENGTH = 8.0  # far past where answers degenerate (~3-4 on the demo run); beyond it is a typo


def check_strength(strength: float) -> float:
    """The steering strength as a float in [0, MAX_STRENGTH]; LambdaError otherwise."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise LambdaError(f"steering strength must be a number, got {strength!r}") from None
    if not 0.0 <= value <= MAX_STRENGTH:  # also rejects NaN
        raise LambdaError(f"steering strength must be in [0, {MAX_STRENGTH:g}], got {strength!r}")
    return value


class RunFolderError(ValueError):
    """A run folder that is missing, incomplete or from an incompatible version."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_run_manifest(
    run_dir: Path,
    objectives: list[str],
    base_model: dict[str, Any],
    training: dict[str, Any],
    lambda_default: dict[str, float] | None = None,
    conditioning: str = Conditioning.HEADER,
    adapters: dict[str, str] | None = None,
    soup_strength: float | None = None,
) -> dict[str, Any]:
    """Write RUN_DIR/lwdpo.json; the default lambda is uniform unless given. Soup runs only:
    `adapters` {objective: adapter folder relative to RUN_DIR} and `soup_strength`, the default
    steering strength (lwdpo_edge/soup.py; absent means 1, the plain soup)."""
    lambda_default = normalize_lambda(lambda_default or dict.fromkeys(objectives, 1.0), objectives)
    manifest = {
        "lwdpo_version": CONTRACT_VERSION,
        "objectives": list(objectives),
        "header_format": HEADER_FORMAT,
        "lambda_default": lambda_default,
        "conditioning": conditioning,
        "base_model": base_model,
        "training": training,
    }
    if adapters is not None:
        manifest["adapters"] = dict(adapters)
    if soup_strength is not None:
        manifest["soup_strength"] = float(soup_strength)
    atomic_write_text(Path(run_dir) / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def update_run_manifest(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Set top-level `fields` of RUN_DIR/lwdpo.json (checked first, replaced atomically); returns the new manifest."""
    manifest = {**read_run_manifest(run_dir), **fields}
    atomic_write_text(Path(run_dir) / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_run_manifest(run_dir: Path) -> dict[str, Any]:
    """Read and check RUN_DIR/lwdpo.json."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: not a lwdpo-edge run folder (no {MANIFEST_FILE})")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    version = manifest.get("lwdpo_version")
    if version != CONTRACT_VERSION:
        raise RunFolderError(f"{path}: lwdpo_version {version!r}, this lwdpo-edge reads version {CONTRACT_VERSION}")
    for key in ("objectives", "lambda_default", "base_model"):
        if key not in manifest:
            raise RunFolderError(f"{path}: missing field {key!r}")
    if manifest.get("conditioning") == "soup" and set(manifest.get("adapters") or {}) != set(manifest["objectives"]):
        raise RunFolderError(f"{path}: a soup run needs field 'adapters' with one folder per objective "
                             f"{manifest['objectives']}")
    return manifest


def is_soup_run(run_dir: Path) -> bool:
    """True for a run folder whose lwdpo.json says conditioning "soup" (any read error: False, the
    header path then reports it)."""
    try:
        return json.loads((Path(run_dir) / MANIFEST_FILE).read_text(encoding="utf-8")).get("conditioning") == "soup"
    except (OSError, ValueError, AttributeError):
        return False


def soup_adapter_dirs(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Path]:
    """{objective: adapter folder} of a soup run, in objective order; each must hold an adapter."""
    dirs = {name: Path(run_dir) / manifest["adapters"][name] for name in manifest["objectives"]}
    for name, folder in dirs.items():
        if not (folder / "adapter_config.json").is_file():
            raise RunFolderError(f"{run_dir}: soup adapter for {name!r} missing ({folder}/adapter_config.json)")
    return dirs
