"""Row formats other than the native one, converted into ListwiseRecords.

Each converter takes one parsed row (a dict) and returns records, raising DataError with the
field named as it is in the user's file ("completions[2].annotations.honesty.Rating"), so a
user can find and fix the row. All field judgements go through the check_* functions in schema.py.

UltraFeedback (openbmb/UltraFeedback and look-alikes), one prompt per row:

    {"instruction": str | [messages],
     "completions": [{"response": str,
                      "annotations": {aspect: {"Rating": "4", ...} | [{"Rating": "4", ...}, ...]},
                      "fine-grained_score": 4.25, "overall_score": 7.5}, ...]}

  - every annotation aspect becomes an objective named after it, lower-cased with runs of other
    characters turned into "_" ("instruction_following", "Helpfulness" -> "helpfulness");
    a Rating is a number or a numeric string; "N/A" (or null) -> None (missing);
    a list of annotations (several raters, or the HF export's one-element lists) -> their mean;
  - "fine-grained_score" and "overall_score", when present, become the objectives
    "fine_grained_score" and "overall_score";
  - anything else in the row ("models", "critique", "custom_system_prompt") is ignored.

OpenAssistant message trees (the official export, one tree per line: {"message_tree_id",
"prompt": node}; node = {"role": "prompter" | "assistant", "text", "rank", "labels", "replies"}):

  - every prompter message with >= 2 ranked assistant replies becomes one record; its prompt is
    the conversation from the root down to that message (prompter -> user);
  - objective "human_preference" = -rank (rank 0, the best reply, gets the highest score 0.0);
  - the quality-direction labels quality, helpfulness, humor, creativity ({"value": v, "count": n},
    v in [0, 1]) become objectives of the same name; moderation flags (spam, toxicity, ...) are
    not preferences and are ignored;
  - replies without a rank are not candidates; deleted messages and messages that failed review
    (review_result false) are left out with their whole subtree. These are normal parts of a tree,
    not bad rows.
"""

from __future__ import annotations

import re

from lwdpo_edge.data.schema import (
    DataError,
    ListwiseRecord,
    Response,
    check_count,
    check_objective_name,
    check_prompt,
    check_score,
    check_text,
    type_name,
)

UF_EXTRA_SCORES = {"fine-grained_score": "fine_grained_score", "overall_score": "overall_score"}
OASST_RANK_OBJECTIVE = "human_preference"
OASST_LABEL_OBJECTIVES = ("quality", "helpfulness", "humor", "creativity")
_OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


def detect_format(row: dict) -> str:
    """'native', 'ultrafeedback', 'oasst' or 'unknown' from a row's keys. A row with a plain
    "prompt" is native, so a broken native row gets a native message ("responses: missing")."""
    if "responses" in row:
        return "native"
    if "completions" in row or "instruction" in row:
        return "ultrafeedback"
    if "message_tree_id" in row or isinstance(row.get("prompt"), dict):
        return "oasst"
    return "native" if "prompt" in row else "unknown"


def unknown_format_error(row: dict) -> DataError:
    keys = ", ".join(list(map(str, row))[:8]) or "none"
    return DataError(
        f"unknown row format (keys: {keys}; expected prompt+responses, "
        "instruction+completions or an OpenAssistant tree)",
        field="row",
    )


def objective_name(aspect: str) -> str:
    """'Instruction Following' / 'fine-grained_score' -> 'instruction_following' / 'fine_grained_score'."""
    return re.sub(r"\W+", "_", aspect.strip().lower()).strip("_")


# ----------------------------------------------------------------------------- UltraFeedback


def from_ultrafeedback(row: dict) -> ListwiseRecord:
    if "instruction" not in row:
        raise DataError("missing", field="instruction")
    prompt = check_prompt(row["instruction"], "instruction")
    if "completions" not in row:
        raise DataError("missing", field="completions")
    completions = check_count(row["completions"], "completions", what="completions")
    responses = [_uf_response(c, f"completions[{i}]") for i, c in enumerate(completions)]
    return ListwiseRecord(prompt, responses)


def _uf_response(completion, name: str) -> Response:
    if not isinstance(completion, dict):
        raise DataError(f"must be an object with a response, got {type_name(completion)}", field=name)
    if "response" not in completion:
        raise DataError("missing", field=f"{name}.response")
    text = check_text(completion["response"], f"{name}.response")
    scores: dict[str, float | None] = {}
    annotations = completion.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict):
            problem = f"must be an object {{aspect: rating}}, got {type_name(annotations)}"
            raise DataError(problem, field=f"{name}.annotations")
        for aspect, annotation in annotations.items():
            here = f"{name}.annotations.{aspect}"
            scores[check_objective_name(objective_name(aspect), here)] = _uf_rating(annotation, here)
    for key, objective in UF_EXTRA_SCORES.items():
        if key in completion:
            scores[objective] = check_score(completion[key], f"{name}.{key}")
    return Response(text, scores)


def _uf_rating(annotation, name: str) -> float | None:
    """One aspect's rating; several annotations (a list) average their known ratings."""
    if annotation is None:  # a datasets struct fills absent aspects with null
        return None
    items = annotation if isinstance(annotation, list) else [annotation]
    ratings = []
    for j, item in enumerate(items):
        here = f"{name}[{j}]" if isinstance(annotation, list) else name
        if not isinstance(item, dict):
            raise DataError(f"must be an object with a Rating, got {type_name(item)}", field=here)
        if "Rating" not in item:
            raise DataError("missing", field=f"{here}.Rating")
        rating = _parse_rating(item["Rating"], f"{here}.Rating")
        if rating is not None:
            ratings.append(rating)
    return sum(ratings) / len(ratings) if ratings else None


def _parse_rating(value, name: str) -> float | None:
    if isinstance(value, str):
        if value.strip().upper() in ("N/A", "NA", ""):
            return None
        try:
            value = float(value)
        except ValueError:
            raise DataError(f"rating {value!r} is not a number or N/A", field=name) from None
    return check_score(value, name)


# ----------------------------------------------------------------------------- OpenAssistant


def from_oasst_tree(row: dict) -> list[ListwiseRecord]:
    if "prompt" not in row:
        raise DataError("missing", field="prompt")
    root = row["prompt"]
    if not isinstance(root, dict):
        raise DataError(f"must be a message node object, got {type_name(root)}", field="prompt")
    records: list[ListwiseRecord] = []
    _walk(root, "prompt", [], records)
    return records


def _walk(node: dict, name: str, history: list[dict[str, str]], records: list[ListwiseRecord]) -> None:
    """Depth-first over the tree; `history` is the conversation above `node`."""
    role = _oasst_role(node, name)
    replies = _kept_replies(node, name)
    if not replies:
        return  # a leaf: its text is never used, so it is not judged either
    messages = history + [{"role": role, "content": check_text(node.get("text"), f"{name}.text")}]
    if role == "user":
        ranked = [(i, r) for i, r in replies if _oasst_rank(r, f"{name}.replies[{i}]") is not None]
        if len(ranked) >= 2:
            responses = [_oasst_response(r, f"{name}.replies[{i}]") for i, r in ranked]
            records.append(ListwiseRecord(messages, responses))
    for i, reply in replies:
        _walk(reply, f"{name}.replies[{i}]", messages, records)


def _oasst_role(node, name: str) -> str:
    if not isinstance(node, dict):
        raise DataError(f"must be a message node object, got {type_name(node)}", field=name)
    role = node.get("role")
    if role not in _OASST_ROLES:
        raise DataError(f"unknown role {role!r} (expected prompter or assistant)", field=f"{name}.role")
    return _OASST_ROLES[role]


def _kept_replies(node: dict, name: str) -> list[tuple[int, dict]]:
    """(index in the file, reply) for the replies that are neither deleted nor rejected in review."""
    replies = node.get("replies") or []
    if not isinstance(replies, list):
        raise DataError(f"must be a list of message nodes, got {type_name(replies)}", field=f"{name}.replies")
    kept = []
    for i, reply in enumerate(replies):
        _oasst_role(reply, f"{name}.replies[{i}]")
        if reply.get("deleted") is True or reply.get("review_result") is False:
            continue
        kept.append((i, reply))
    return kept


def _oasst_rank(node: dict, name: str) -> int | None:
    rank = node.get("rank")
    if rank is None:
        return None
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise DataError(f"rank must be a non-negative integer or null, got {rank!r}", field=f"{name}.rank")
    return rank


def _oasst_response(node: dict, name: str) -> Response:
    if node["role"] != "assistant":
        raise DataError("a ranked reply to a prompter message must be an assistant message", field=f"{name}.role")
    text = check_text(node.get("text"), f"{name}.text")
    scores: dict[str, float | None] = {OASST_RANK_OBJECTIVE: float(-_oasst_rank(node, name))}  # not -0.0
    labels = node.get("labels") or {}
    if not isinstance(labels, dict):
        problem = f"must be an object {{label: {{value, count}}}}, got {type_name(labels)}"
        raise DataError(problem, field=f"{name}.labels")
    for label in OASST_LABEL_OBJECTIVES:
        if label in labels:
            scores[label] = _oasst_label_value(labels[label], f"{name}.labels.{label}")
    return Response(text, scores)


def _oasst_label_value(label, name: str) -> float | None:
    if label is None:
        return None
    if not isinstance(label, dict):
        raise DataError(f"must be an object {{value, count}}, got {type_name(label)}", field=name)
    return check_score(label.get("value"), f"{name}.value")
