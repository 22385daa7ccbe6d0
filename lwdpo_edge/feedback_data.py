"""Your own preference, one judgement at a time: the feedback file's format, and reading and writing it.

The chat app's Alternatives panel writes these judgements; `lwdpo-edge train --feedback` reads them.
Each judgement (the user ordered N alternatives to one answer) is one record of the project's data
schema (lwdpo_edge/data/schema.py), objective `user`, score = -rank (rank 1 = best; ties share a rank):

    {"id": "fb-20250101-120000-a1b2c3", "source": "chat-feedback", "created": "2025-01-01T12:00:00+00:00",
     "objective": "user", "judgement": "best" | "order",
     "prompt": [{"role": "system", ...}, {"role": "user", ...}, ..., {"role": "user", "content": "..."}],
     "responses": [{"text": "...", "scores": {"user": -1.0}, "rank": 1, "seed": 7, "lambda": {...}}, ...],
     "lambda": {...}, "strength": 2.5, "settings": {"temperature": 0.8, ...}, "model": {...model.info...}}

`prompt` is the conversation the alternatives answered (the app's system prompt, earlier turns, the
last user turn; no lambda header: the soup reads lambda from its adapters). Only the `user` score is
written: the loss masks the objectives a record does not score, and `lwdpo-edge train --feedback`
trains the `user` adapter on these records alone.

The file is JSONL, rewritten atomically (temporary file + rename, lwdpo_edge.contract.atomic_write_text)
under a lock file, so a reader (`lwdpo-edge data validate`, the trainer, another app) never sees half a
record and two apps writing at once lose nothing. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from lwdpo_edge.contract import atomic_write_text
from lwdpo_edge.data.schema import DataError, ListwiseRecord

DEFAULT_FEEDBACK_FILE = Path("~/.local/share/lwdpo-edge/feedback.jsonl")  # beside the chat app's chats/ folder
USER_OBJECTIVE = "user"
SOURCE = "chat-feedback"
MIN_JUDGEMENTS = 20  # fewer and `lwdpo-edge train --feedback` refuses (a few dozen lists train a slider in minutes)


class FeedbackError(ValueError):
    """A judgement that cannot become a record (too few candidates, a bad ranking)."""


def ranks_from_best(n: int, best: int) -> list[int]:
    """'Pick the best': the chosen candidate ranks 1, every other one shares rank 2."""
    if not 0 <= best < n:
        raise FeedbackError(f"best = {best}: expected a candidate index in [0, {n})")
    return [1 if i == best else 2 for i in range(n)]


def check_ranks(ranks: Sequence[int], n: int) -> list[int]:
    """A full order as one rank per candidate (1 = best; ties share a rank); it must rank someone first
    and tell at least two candidates apart (an all-tied order says nothing)."""
    if len(ranks) != n:
        raise FeedbackError(f"{len(ranks)} ranks for {n} candidates")
    try:
        ranks = [int(r) for r in ranks]
    except (TypeError, ValueError):
        raise FeedbackError(f"ranks must be whole numbers 1..{n}, got {list(ranks)}") from None
    if any(not 1 <= r <= n for r in ranks):
        raise FeedbackError(f"ranks must be in 1..{n}, got {ranks}")
    if 1 not in ranks:
        raise FeedbackError(f"no candidate is ranked 1 (best): {ranks}")
    if len(set(ranks)) < 2:
        raise FeedbackError(f"every candidate has the same rank {ranks[0]}: nothing to learn from")
    return ranks


def judgement_record(prompt: Sequence[Mapping[str, str]], candidates: Sequence, ranks: Sequence[int], *,
                     lam: Mapping[str, float] | None, strength: float | None, settings: Mapping, model_info: Mapping,
                     judgement: str) -> dict:
    """One judgement as a record of the data schema (the JSONL row). `candidates` have text, seed
    and lam (the chat app's apps.alternatives.Candidate); `ranks` one per candidate, 1 = best."""
    if len(candidates) < 2:
        raise FeedbackError(f"a judgement needs at least 2 candidates, got {len(candidates)}")
    ranks = check_ranks(ranks, len(candidates))
    stamp = datetime.now(timezone.utc)
    row = {
        "id": f"fb-{stamp.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}", "source": SOURCE,
        "created": stamp.isoformat(timespec="seconds"), "objective": USER_OBJECTIVE, "judgement": judgement,
        "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
        "responses": [{"text": c.text, "scores": {USER_OBJECTIVE: -float(rank)}, "rank": rank, "seed": c.seed,
                       "lambda": c.lam} for c, rank in zip(candidates, ranks)],
        "lambda": dict(lam) if lam else None, "strength": strength, "settings": dict(settings),
        "model": {key: model_info.get(key) for key in ("path", "format", "quantization", "conditioning",
                                                       "objectives", "soup_strength")},
    }
    try:  # the schema's own checks: the validator and the trainer accept what the app writes
        ListwiseRecord.from_json(row)
    except DataError as err:
        raise FeedbackError(f"this judgement is not a valid record: {err}") from None
    return row


class FeedbackLog:
    """The feedback file: append one judgement, count them. Safe with several writers."""

    def __init__(self, path: Path | str = DEFAULT_FEEDBACK_FILE):
        self.path = Path(path).expanduser()
        self.lock = FileLock(str(self.path.with_name(f".{self.path.name}.lock")))

    def append(self, row: dict) -> int:
        """Add one record (a judgement_record row) as the last line; returns the new count."""
        line = json.dumps(row, ensure_ascii=False, allow_nan=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            old = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
            if old and not old.endswith("\n"):
                old += "\n"  # a hand-edited file without a final newline must not glue two records
            atomic_write_text(self.path, old + line + "\n")
            return self._count(old + line)

    def count(self) -> int:
        """Judgements in the file (non-blank lines; `lwdpo-edge data validate` judges each one)."""
        if not self.path.is_file():
            return 0
        return self._count(self.path.read_text(encoding="utf-8", errors="replace"))

    @staticmethod
    def _count(text: str) -> int:
        return sum(1 for line in text.splitlines() if line.strip())
