"""The OpenAI chat-completions wire format the server speaks: request model, limits, responses, errors.

Only what a chat client needs: `messages`, `max_tokens` / `max_completion_tokens`, `temperature`,
`top_p`, `seed`, `stream` (+ `stream_options.include_usage`), `repetition_penalty` (as vLLM names it;
default lwdpo_edge/decoding.py's, the same as eval and the app), and one extension field:

    "lwdpo": {"lambda": {"conciseness": 0.7, "helpfulness": 0.3}}     (or a list in objective order)
    "lwdpo": {"lambda": ..., "strength": 2.5}                         (adapter-soup models: steering strength)

Fields a client may send but that this server cannot honour (`n` > 1, `stop`, `tools`, `logprobs`,
`response_format`) are refused with a 400 naming them rather than silently ignored; other unknown
fields are ignored, as OpenAI does.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lwdpo_edge.decoding import MAX_REPETITION_PENALTY, REPETITION_PENALTY


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_000_000  # a request body larger than this gets 413
    max_messages: int = 256
    max_tokens: int = 2048  # per request; more gets 400
    default_max_tokens: int = 512  # when the request gives none


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]

    def plain(self) -> dict[str, str]:
        """{'role', 'content'} as the runtime takes it ('developer' is OpenAI's newer name for system)."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class LwdpoOptions(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    lambda_: Optional[Union[dict[str, Any], list[Any]]] = Field(None, alias="lambda")
    strength: Optional[float] = None  # soup models only: steering strength of the adapter mix


class StreamOptions(BaseModel):
    include_usage: bool = False


UNSUPPORTED = ("stop", "tools", "functions", "logprobs", "response_format")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)  # OpenAI's default
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # vLLM's name and rule scope; the default is the runtime's (lwdpo_edge/decoding.py), 1 = off
    repetition_penalty: float = Field(REPETITION_PENALTY, ge=1.0, le=MAX_REPETITION_PENALTY)
    seed: Optional[int] = Field(None, ge=0, lt=2**32)
    n: int = 1
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    lwdpo: Optional[LwdpoOptions] = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported")
        return n

    def check(self, limits: Limits) -> None:
        """Limits and fields this server refuses (ApiError 400)."""
        for name in UNSUPPORTED:
            if (self.model_extra or {}).get(name) not in (None, False, [], {}):
                raise ApiError(400, f"'{name}' is not supported by lwdpo-edge serve", name, "unsupported_parameter")
        if len(self.messages) > limits.max_messages:
            raise ApiError(400, f"{len(self.messages)} messages; this server takes at most {limits.max_messages}",
                           "messages", "too_many_messages")
        if self.token_budget(limits) > limits.max_tokens:
            raise ApiError(400, (f"max_tokens = {self.token_budget(limits)}; "
                                 f"this server allows at most {limits.max_tokens}"),
                           "max_tokens", "max_tokens_too_large")

    def token_budget(self, limits: Limits) -> int:
        return self.max_completion_tokens or self.max_tokens or min(limits.default_max_tokens, limits.max_tokens)

    def lam(self):
        return self.lwdpo.lambda_ if self.lwdpo else None

    def strength(self):
        return self.lwdpo.strength if self.lwdpo else None


def validation_error(err) -> ApiError:
    """The first pydantic error as a 400 naming the field, e.g. param 'messages.0.role'."""
    first = err.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    return ApiError(400, f"{param}: {first['msg']}" if param else first["msg"], param, "invalid_value")


# ---- responses ------------------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_json(usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def completion(cid: str, model_id: str, text: str, usage, applied_lambda,
               strength: float | None = None) -> dict[str, Any]:
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": usage.finish_reason, "logprobs": None}],
        "usage": usage_json(usage),
        "lwdpo": {"lambda": applied_lambda, **({"strength": strength} if strength is not None else {})},
    }


def chunk(cid: str, model_id: str, delta: dict[str, Any], finish_reason: str | None = None,
          usage=None) -> dict[str, Any]:
    """One `chat.completion.chunk`; with `usage` the final usage-only chunk (empty choices)."""
    body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": model_id}
    if usage is not None:
        body.update(choices=[], usage=usage_json(usage))
    else:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    return body
