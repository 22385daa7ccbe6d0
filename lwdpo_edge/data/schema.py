"""The one internal record every stage trains and evaluates on (docs/design.md; formats: docs/training.md).

A record is a prompt (chat messages) with N >= 2 candidate responses, each scored on named
objectives (higher is better, None = missing). Its JSONL form, one record per line:

    {"prompt": "Why is the sky blue?",
     "responses": [{"text": "Rayleigh scattering ...", "scores": {"helpfulness": 0.8, "conciseness": null}},
                   {"text": "Because.",                "scores": {"helpfulness": 0.1, "conciseness": 0.9}}]}

`prompt` may also be a list of chat messages ending with a user turn. Extra keys of a row ("id",
"split", ...) are kept in `ListwiseRecord.meta`, extra keys of a response in `Response.meta`; they
round-trip through to_json but never affect equality or training, except the row key
"split": "heldout", which keeps a record out of training (held out for evaluation).

The check_* functions below are the single place where a field is judged; every loader (native
JSONL, UltraFeedback, OpenAssistant, datasets folders) and the validator call them, passing the
field's name as it appears in the user's file, so an error always reads
"FILE:LINE: field: problem".
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant")
# Objective names end up in the lambda header ("[lambda] name=0.50"); lambdas.py parses names with
# this pattern, so a name it cannot read is rejected here, at load time, not deep inside training.
OBJECTIVE_NAME_RE = re.compile(r"[A-Za-z_][\w-]*")


class DataError(ValueError):
    """A bad row or file. str(err) is "SOURCE: field: problem", e.g.
    "data.jsonl:7: responses[2].scores.helpfulness: score is NaN"; empty parts are left out."""

    def __init__(self, problem: str, *, source: str = "", field: str = ""):
        self.problem, self.source, self.field = problem, source, field
        super().__init__(": ".join(part for part in (source, field, problem) if part))

    def at(self, source: str) -> DataError:
        """The same error, located in `source` (kept if the error already has one)."""
        return self if self.source else DataError(self.problem, source=source, field=self.field)


@dataclass
class Response:
    text: str
    scores: dict[str, float | None]  # objective -> score, higher is better; None = missing
    meta: dict = field(default_factory=dict, compare=False)  # extra keys, e.g. {"style": "brief"}


@dataclass
class ListwiseRecord:
    prompt: list[dict[str, str]]  # chat messages, ending with a user turn
    responses: list[Response]  # N >= 2, N may differ between records
    # Where the record came from ("FILE:LINE"), for messages only: two records with the same
    # content are equal wherever they were read from.
    source: str = field(default="", compare=False)
    meta: dict = field(default_factory=dict, compare=False)  # extra row keys, e.g. {"id": 3, "split": "heldout"}

    def to_json(self) -> dict:
        """The JSONL form; the prompt is always written as a list of messages."""
        return {
            **self.meta,
            "prompt": [dict(message) for message in self.prompt],
            "responses": [{**r.meta, "text": r.text, "scores": dict(r.scores)} for r in self.responses],
        }

    @classmethod
    def from_json(cls, obj, source: str = "") -> ListwiseRecord:
        """Check one native row and build the record; raises DataError naming the bad field."""
        try:
            if not isinstance(obj, dict):
                raise DataError(f"not a JSON object (got {type_name(obj)})", field="row")
            if "prompt" not in obj:
                raise DataError("missing", field="prompt")
            prompt = check_prompt(obj["prompt"], "prompt")
            if "responses" not in obj:
                raise DataError("missing", field="responses")
            responses = check_responses(obj["responses"], "responses")
            check_has_score(responses)
        except DataError as err:
            raise err.at(source) from None
        meta = {key: value for key, value in obj.items() if key not in ("prompt", "responses")}
        return cls(prompt, responses, source, meta)


def objectives_of(records: Iterable[ListwiseRecord]) -> list[str]:
    """Union of score names over all responses, in first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        for response in record.responses:
            seen.update(dict.fromkeys(response.scores))
    return list(seen)


# ----------------------------------------------------------------------------- field checks


def type_name(value) -> str:
    """JSON's name for a value's type, for messages ("got list", "got null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, numbers.Number):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def check_prompt(value, name: str) -> list[dict[str, str]]:
    """A non-empty string or a list of chat messages ending with a user turn -> messages."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError("prompt is empty", field=name)
        return [{"role": "user", "content": value}]
    if not isinstance(value, (list, tuple)):
        raise DataError(f"must be a string or a list of messages, got {type_name(value)}", field=name)
    if not value:
        raise DataError("prompt is empty", field=name)
    messages = [check_message(message, f"{name}[{i}]", i) for i, message in enumerate(value)]
    last = messages[-1]["role"]
    if last != "user":
        raise DataError(f"prompt must end with a user turn, got {last}", field=f"{name}[{len(messages) - 1}].role")
    return messages


def check_message(value, name: str, index: int) -> dict[str, str]:
    if not isinstance(value, dict):
        raise DataError(f"message must be an object with role and content, got {type_name(value)}", field=name)
    role = value.get("role")
    if role not in ROLES:
        raise DataError(f"unknown role {role!r} (expected system, user or assistant)", field=f"{name}.role")
    # Chat templates put the system message first (and the lambda header goes at its start).
    if role == "system" and index != 0:
        raise DataError("a system message must come first", field=f"{name}.role")
    content = value.get("content")
    if not isinstance(content, str):
        raise DataError(f"content must be a string, got {type_name(content)}", field=f"{name}.content")
    # An empty system prompt is harmless; an empty user or assistant turn is a broken conversation.
    if role != "system" and not content.strip():
        raise DataError("content is empty", field=f"{name}.content")
    return {"role": role, "content": content}


def check_count(value, name: str, what: str = "responses") -> list:
    """A list with at least two items (a ranking needs two candidates)."""
    if not isinstance(value, (list, tuple)):
        raise DataError(f"must be a list of {what}, got {type_name(value)}", field=name)
    if len(value) < 2:
        raise DataError(f"need at least 2 {what}, got {len(value)}", field=name)
    return list(value)


def check_responses(value, name: str) -> list[Response]:
    items = check_count(value, name)
    responses = []
    for i, item in enumerate(items):
        here = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise DataError(f"must be an object with text and scores, got {type_name(item)}", field=here)
        if "text" not in item:
            raise DataError("missing", field=f"{here}.text")
        text = check_text(item["text"], f"{here}.text")
        if "scores" not in item:
            raise DataError("missing", field=f"{here}.scores")
        meta = {key: v for key, v in item.items() if key not in ("text", "scores")}
        responses.append(Response(text, check_scores(item["scores"], f"{here}.scores"), meta))
    return responses


def check_text(value, name: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"text must be a string, got {type_name(value)}", field=name)
    if not value.strip():
        raise DataError("text is empty", field=name)
    return value


def check_scores(value, name: str) -> dict[str, float | None]:
    if not isinstance(value, dict):
        raise DataError(f"scores must be an object {{objective: number | null}}, got {type_name(value)}", field=name)
    return {
        check_objective_name(key, f"{name}.{key}"): check_score(score, f"{name}.{key}") for key, score in value.items()
    }


def check_objective_name(value, name: str) -> str:
    if not isinstance(value, str) or not OBJECTIVE_NAME_RE.fullmatch(value):
        raise DataError(
            f"objective name {value!r} must be a letter or _ followed by letters, digits, _ or - "
            "(it is written into the lambda header)",
            field=name,
        )
    return value


def check_score(value, name: str) -> float | None:
    """A finite number or None. Bools are rejected: True is a number to Python, never a score."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DataError(f"score must be a number or null, got {type_name(value)}", field=name)
    try:
        value = float(value)
    except OverflowError:  # an integer too big for a float (JSON allows any number of digits)
        raise DataError("score is too large for a float", field=name) from None
    if math.isnan(value):
        raise DataError("score is NaN", field=name)
    if math.isinf(value):
        raise DataError(f"score is {'+' if value > 0 else '-'}inf", field=name)
    return value


def check_has_score(responses: list[Response], objectives: Iterable[str] | None = None) -> None:
    """At least one (wanted) objective has a real score somewhere in the list."""
    wanted = None if objectives is None else list(objectives)
    for response in responses:
        for objective, score in response.scores.items():
            if score is not None and (wanted is None or objective in wanted):
                return
    if wanted is None:
        raise DataError("no response has a score (all missing or null)", field="scores")
    raise DataError(f"no response has a score for any of the objectives {', '.join(wanted)}", field="scores")
