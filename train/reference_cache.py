"""Reference log-probs computed once per distinct token sequence and kept with the run.

The reference policy is the base model with the adapter disabled; it never changes during a run,
so the reference log-prob of a (prompt, candidate) sequence depends only on the exact token ids
and on the base model: its weights and how they are loaded (NF4 4-bit or fp32, CPU or GPU).
The cache is keyed by a content hash of the token ids (`lwdpo_edge.batching.sequence_key`) and
belongs to one `base_model_identity`; a file written for another identity is not used.

    RUN_DIR/reference_logps.json   {"format": 1, "identity": {...}, "entries": {key: summed log-prob}}

A changed data row or header gives other tokens, hence another key (a miss, never a stale value).
Values are fp32 sums stored as JSON floats, which read back bit for bit. A hit equals what the
same sequence computes now up to float rounding from batch shape (a sequence padded or packed with
other sequences runs through other matrix shapes: ~1e-7 relative), the same noise any batch has.
Soup runs share one file: their K adapters see the same (header-free) sequences.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from lwdpo_edge.contract import atomic_write_text

REFERENCE_CACHE_FILE = "reference_logps.json"
CACHE_FORMAT = 1


def base_model_identity(model_dir: Path, *, qlora: bool, device_type: str = "cpu") -> dict:
    """What a reference log-prob depends on besides the tokens.

    config.json by content; weight files by name, size and mtime (as models._cache_key does for
    GGUF files: hashing hundreds of MB per run would cost more than the lookup saves).
    """
    model_dir = Path(model_dir).resolve()
    weights = sorted(p for pattern in ("*.safetensors", "*.bin") for p in model_dir.glob(pattern))
    return {
        "path": str(model_dir),
        "config_sha256": hashlib.sha256((model_dir / "config.json").read_bytes()).hexdigest(),
        "weights": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in weights},
        "qlora": bool(qlora),
        "device_type": device_type,
        "format": CACHE_FORMAT,
    }


class ReferenceCache:
    """sequence key -> summed reference log-prob, for one base-model identity; optionally backed by a file."""

    def __init__(self, identity: dict, path: Path | None = None, entries: dict[str, float] | None = None):
        self.identity = identity
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, float] = dict(entries or {})

    @classmethod
    def open(cls, path: Path, identity: dict) -> "ReferenceCache":
        """The cache saved at `path` if it was written for `identity`, else an empty one (a stale or
        unreadable file is replaced at the next save)."""
        path = Path(path)
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(identity, path)
        if saved.get("format") != CACHE_FORMAT or saved.get("identity") != identity:
            return cls(identity, path)
        return cls(identity, path, saved.get("entries", {}))

    @property
    def fingerprint(self) -> str:
        """A short hash of the identity (recorded in the run manifest)."""
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> float:
        return self.entries[key]

    def __len__(self) -> int:
        return len(self.entries)

    def update(self, items: Iterable[tuple[str, float]]) -> None:
        self.entries.update((key, float(value)) for key, value in items)

    def save(self) -> None:
        """Write the file atomically (no-op for an in-memory cache)."""
        if self.path is None:
            return
        payload = {"format": CACHE_FORMAT, "identity": self.identity, "entries": self.entries}
        atomic_write_text(self.path, json.dumps(payload))

    def summary(self) -> dict:
        """What the run manifest records about this cache."""
        return {"file": self.path.name if self.path else None, "fingerprint": self.fingerprint,
                "identity": self.identity, "entries": len(self)}
