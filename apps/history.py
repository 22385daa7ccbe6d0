"""Conversations on disk: one JSON file per conversation, written atomically after every turn.

    {"id": "20250101-120000-a1b2c3", "created": "...", "updated": "...", "title": "first user words",
     "model": {...model.info...},
     "messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "...", "system": "[lambda] ...", "lambda": {...},
                   "settings": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 256}, "stopped": false}]}

Each assistant message keeps the system message (lambda header included) it was generated under,
so a saved chat says exactly what the model was asked. The file is the export format too.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

from lwdpo_edge.contract import atomic_write_text

_ID_RE = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")  # what new_conversation makes; nothing else is read


class HistoryError(ValueError):
    """A conversation id or file that is not one of ours."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ChatHistory:
    def __init__(self, folder: Path):
        self.folder = Path(folder).expanduser()

    def new_conversation(self, model_info: dict) -> dict:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return {"id": f"{stamp}-{secrets.token_hex(3)}", "created": _now(), "updated": _now(), "title": "",
                "model": dict(model_info), "messages": []}

    def path(self, conversation_id: str) -> Path:
        if not _ID_RE.fullmatch(conversation_id or ""):  # ids come from the browser: never a path
            raise HistoryError(f"not a conversation id: {conversation_id!r}")
        return self.folder / f"{conversation_id}.json"

    def save(self, conversation: dict) -> Path:
        conversation["updated"] = _now()
        first_user = next((m["content"] for m in conversation["messages"] if m["role"] == "user"), "")
        conversation["title"] = " ".join(first_user.split())[:60]
        path = self.path(conversation["id"])
        atomic_write_text(path, json.dumps(conversation, indent=2, ensure_ascii=False) + "\n")
        return path

    def load(self, conversation_id: str) -> dict:
        path = self.path(conversation_id)
        try:
            conversation = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise HistoryError(f"{path}: cannot read conversation ({err})") from None
        if not isinstance(conversation.get("messages"), list):
            raise HistoryError(f"{path}: field 'messages' is missing or not a list")
        return conversation

    def list(self) -> list[tuple[str, str]]:
        """(label, id) of every saved conversation, newest first."""
        items = []
        for path in sorted(self.folder.glob("*.json"), reverse=True):  # ids start with the time
            if not _ID_RE.fullmatch(path.stem):
                continue
            try:
                title = json.loads(path.read_text(encoding="utf-8")).get("title", "")
            except (OSError, json.JSONDecodeError):
                continue  # a foreign or damaged file: leave it alone, do not list it
            items.append((f"{path.stem[:15]}  {title}", path.stem))
        return items
