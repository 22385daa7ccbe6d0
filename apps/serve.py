"""`lwdpo-edge serve MODEL`: an OpenAI-compatible HTTP server over one model (GGUF / ONNX / HF).

    GET  /v1/models               the model, with its objectives and default lambda under "lwdpo"
    POST /v1/chat/completions     OpenAI chat completions, JSON or SSE stream; lambda per request as
                                  {"lwdpo": {"lambda": {...}}}, or a header already in the system message

Requests are served one at a time: an asyncio lock queues them before any thread is used, so a
crowd of waiting requests holds no worker thread (a threading lock would: with more waiters than
the thread pool has threads, the generating request could not get a thread back and all would hang).
Generation itself runs in the thread pool, one token per hop, shielded from cancellation so a client
that disconnects mid-stream ends the generation cleanly between two tokens and frees the model.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import anyio
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from lwdpo_edge.apps.serve_schema import (
    ApiError, ChatRequest, Limits, chunk, completion, completion_id, validation_error,
)
from lwdpo_edge.lambdas import LambdaError, parse_lambda_header
from lwdpo_edge.runtime import MessageError, load_model
from lwdpo_edge.runtime.base import ContextLengthError, Usage


def create_app(model, limits: Limits = Limits(), model_id: str | None = None, api_key: str | None = None):
    """The FastAPI app serving `model` (a lwdpo_edge.runtime ChatModel)."""
    model_id = model_id or model.path.stem

    async def authorise(request: Request):  # a dependency, not a middleware: middlewares wrap streams
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            raise ApiError(401, "missing or wrong API key (Authorization: Bearer ...)", code="invalid_api_key",
                           kind="authentication_error")

    app = FastAPI(title="lwdpo-edge", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(authorise)])
    queue = asyncio.Lock()

    @app.exception_handler(ApiError)
    async def api_error(_request, err: ApiError):
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(HTTPException)
    async def http_error(_request, err: HTTPException):  # unknown route, wrong method: same error shape
        return JSONResponse(ApiError(err.status_code, str(err.detail), code=str(err.status_code)).body(),
                            status_code=err.status_code)

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_card(model, model_id)]}

    @app.get("/v1/models/{name}")
    async def get_model(name: str):
        if name != model_id:
            raise ApiError(404, f"model {name!r} not found; this server serves {model_id!r}", "model",
                           "model_not_found")
        return model_card(model, model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = parse_request(await read_body(request, limits.max_body_bytes), limits)
        if req.model not in (None, model_id):
            raise ApiError(404, f"model {req.model!r} not found; this server serves {model_id!r}", "model",
                           "model_not_found")
        messages, lam = [m.plain() for m in req.messages], req.lam()
        applied = applied_lambda(model, messages, lam)  # validates lambda and messages: 400 before any work
        strength = steering_strength(model, req.strength())
        settings = dict(temperature=req.temperature, top_p=req.top_p, max_tokens=req.token_budget(limits),
                        seed=req.seed, strength=req.strength(), repetition_penalty=req.repetition_penalty)
        cid = completion_id()
        usage = Usage()
        if not req.stream:
            async with queue:
                text = await in_thread(start_chat, model, messages, lam, False, usage, settings)
            return completion(cid, model_id, text, usage, applied, strength)
        pieces = await in_thread(start_chat, model, messages, lam, True, usage, settings)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        events = sse_events(queue, pieces, cid, model_id, usage, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def start_chat(model, messages, lam, stream: bool, usage: Usage, settings: dict):
    """model.chat, a prompt too long for the context window answered as OpenAI does (400)."""
    try:
        return model.chat(messages, lam, stream=stream, usage=usage, **settings)
    except ContextLengthError as err:
        raise ApiError(400, str(err), "messages", "context_length_exceeded") from None


async def sse_events(queue: asyncio.Lock, pieces, cid: str, model_id: str, usage: Usage, include_usage: bool):
    """The SSE body: a role chunk, one chunk per text piece, a finish chunk, [usage], [DONE]."""
    async with queue:
        try:
            yield sse(chunk(cid, model_id, {"role": "assistant", "content": ""}))
            while True:
                # Every other await here is shielded; this one lets a disconnect (a cancellation) in.
                await anyio.lowlevel.checkpoint()
                if (piece := await in_thread(next, pieces, None)) is None:
                    break
                yield sse(chunk(cid, model_id, {"content": piece}))
            yield sse(chunk(cid, model_id, {}, usage.finish_reason))
            if include_usage:
                yield sse(chunk(cid, model_id, {}, usage=usage))
            yield "data: [DONE]\n\n"
        finally:
            await in_thread(pieces.close)  # stops generation and releases the model lock


def sse(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def in_thread(fn, *args):
    """Run `fn` in the thread pool to completion even if the request is cancelled meanwhile: a
    llama.cpp call cannot be interrupted, and the model must not be touched again until it returns."""
    with anyio.CancelScope(shield=True):
        return await run_in_threadpool(fn, *args)


async def read_body(request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `max_bytes` (Content-Length or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > max_bytes:
            raise too_large(max_bytes)
    return bytes(body)


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"request body larger than {max_bytes} bytes", code="request_too_large")


def parse_request(body: bytes, limits: Limits) -> ChatRequest:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"request body is not valid JSON ({err})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as err:
        raise validation_error(err) from None
    req.check(limits)
    return req


def applied_lambda(model, messages, lam):
    """The lambda the model will read (None for a plain model); ApiError 400 for a bad lambda / message."""
    try:
        final = model.prompt_messages(messages, lam)
        # no header to read back: the weights carry lambda
        if getattr(model, "conditioning", None) in ("soup", "merged"):
            return model.resolve(messages, lam)[1]
    except LambdaError as err:
        param = "lwdpo.lambda" if lam is not None else "messages"
        raise ApiError(400, str(err), param, "invalid_lambda") from None
    except MessageError as err:
        raise ApiError(400, str(err), "messages", "invalid_value") from None
    return parse_lambda_header(final[0]["content"], model.objectives) if model.objectives else None


def steering_strength(model, strength):
    """The soup mix's strength this request gets (None for a header model); ApiError 400 if invalid."""
    try:
        return model.steering_strength(strength)
    except LambdaError as err:
        raise ApiError(400, str(err), "lwdpo.strength", "invalid_value") from None


def model_card(model, model_id: str) -> dict:
    created = int(model.path.stat().st_mtime) if model.path.exists() else int(time.time())
    info = model.info
    return {"id": model_id, "object": "model", "created": created, "owned_by": "lwdpo-edge",
            "lwdpo": {k: info[k] for k in ("objectives", "default_lambda", "format", "quantization", "architecture",
                                           "conditioning", "soup_strength", "lambda_merged")}}


def run_server(model_path: Path | str, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
               n_ctx: int = 2048, limits: Limits = Limits(), model_id: str | None = None,
               api_key: str | None = None, log_level: str = "info") -> None:
    """Load the model and serve it until interrupted."""
    model = load_model(model_path, threads=threads, n_ctx=n_ctx)
    try:
        uvicorn.run(create_app(model, limits, model_id, api_key), host=host, port=port, log_level=log_level)
    finally:
        model.close()
