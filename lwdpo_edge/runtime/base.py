"""What every runtime backend shares: the lambda contract, prompt building, one lock, the decode loop.

A backend (gguf.py, onnx.py, hf.py) supplies five small hooks (and `apply_mix(lam, strength)` for soup models):

    render(messages) -> str          the model's own chat template, generation prompt included
    encode(text) -> ids              special tokens in the text parsed, no BOS added (the template writes it)
    decode(ids) -> str               special tokens dropped
    is_stop(token) -> bool           end of turn
    sample(prompt_ids, sampling, max_new) -> Iterator[int]   sampled tokens, one at a time
    logits_after(prompt_ids, continuation) -> (len(continuation) + 1, V)   teacher-forced logits

Everything else lives here once: lambda validation, the header (always through
`lwdpo_edge.conditioning.conditioned_messages`), the context budget, incremental detokenisation that
never splits a UTF-8 character, usage counts and the per-model lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lwdpo_edge.conditioning import conditioned_messages
from lwdpo_edge.contract import Conditioning
from lwdpo_edge.decoding import REPETITION_PENALTY, check_repetition_penalty
from lwdpo_edge.lambdas import HEADER_MARKER, LambdaError, parse_lambda_header, quantize_lambda, split_lambda_header
from lwdpo_edge.soup import strength_for

ROLES = ("system", "user", "assistant")


class ModelLoadError(ValueError):
    """A path that is not a loadable model (the message names the path and what was expected)."""


class MessageError(ValueError):
    """Chat messages of the wrong shape (the message names the index and the field)."""


class ContextLengthError(ValueError):
    """A prompt that does not fit the model's context window."""


@dataclass
class Sampling:
    temperature: float = 0.0  # 0: greedy (argmax)
    top_p: float = 1.0
    seed: int | None = None
    repetition_penalty: float = REPETITION_PENALTY  # lwdpo_edge/decoding.py: on the last 64 generated tokens


@dataclass
class Usage:
    """Filled in by `chat(..., usage=Usage())` as generation goes (for the server's `usage` field)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None  # "stop" (end of turn) or "length" (max_tokens or context full)
    completion_ids: list[int] = field(default_factory=list)  # the generated token ids (end of turn excluded)


class ChatModel:
    """A loaded model; use `lwdpo_edge.runtime.load_model` to get one."""

    format: str = ""

    def __init__(self, path: Path, contract, n_ctx: int, architecture: str | None, quantization: str | None):
        self.path, self.contract, self.n_ctx = Path(path), contract, int(n_ctx)
        self.architecture, self.quantization = architecture, quantization
        # One generation at a time per model: llama.cpp contexts and KV caches are not shareable.
        # A plain Lock (not RLock) so a stream started on one thread may be closed from another.
        self.lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()  # HF fast tokenizers raise "Already borrowed" when shared

    # ---- the lambda contract ----------------------------------------------------------------------

    @property
    def takes_lambda(self) -> bool:
        """False for a plain model: one without a contract, or the export of a run trained without lambda."""
        return self.contract is not None and self.contract.takes_lambda

    @property
    def objectives(self) -> list[str]:
        return list(self.contract.objectives) if self.takes_lambda else []

    @property
    def default_lambda(self) -> dict[str, float] | None:
        return dict(self.contract.lambda_default) if self.takes_lambda else None

    @property
    def conditioning(self) -> str | None:
        """"header" (lambda header in the system message), "soup" (lambda scales one LoRA adapter per
        objective, no header), "merged" (a soup's mix at one lambda folded into the weights: no header,
        lambda fixed), "none" (a run trained without lambda: a plain model) or None (a plain model not
        exported by lwdpo-edge)."""
        return self.contract.conditioning if self.contract else None

    @property
    def lambda_merged(self) -> dict[str, float] | None:
        """The lambda a merged preset was folded at (the only one it runs at); None for any other model."""
        return dict(self.contract.lambda_merged) if self.conditioning == Conditioning.MERGED else None

    @property
    def steerable(self) -> bool:
        """True when lambda can change per request (header and soup models)."""
        return self.conditioning in (Conditioning.HEADER, Conditioning.SOUP)

    @property
    def info(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "quantization": self.quantization,
            "objectives": self.objectives,
            "default_lambda": self.default_lambda,
            "architecture": self.architecture,
            "contract_version": self.contract.version if self.contract else None,
            "conditioning": self.conditioning,
            "soup_strength": (self.contract.soup_strength
                              if self.conditioning in (Conditioning.SOUP, Conditioning.MERGED) else None),
            "lambda_merged": self.lambda_merged,
        }

    def validate_lambda(self, lam: Mapping[str, float] | Sequence[float]) -> dict[str, float]:
        """lambda normalised and quantised to hundredths (what the header will show); LambdaError if invalid."""
        if self.contract is None:
            raise LambdaError(f"{self.path.name} has no lambda contract (no lwdpo objectives): it takes no lambda")
        if not self.takes_lambda:
            raise LambdaError(f"{self.path.name} was trained without lambda conditioning (--no-condition-on-lambda): "
                              "a plain model, it takes no lambda")
        lam = quantize_lambda(lam, self.objectives)
        if self.conditioning == Conditioning.MERGED and lam != self.contract.lambda_merged:
            fixed = ", ".join(f"{name}={value:.2f}" for name, value in self.contract.lambda_merged.items())
            raise LambdaError(f"{self.path.name} is a merged preset: lambda is fixed at {fixed}; load the steerable "
                              f"export (base + LoRA files) or the run folder to change it")
        return lam

    def prompt_messages(self, messages: Sequence[Mapping[str, str]], lam=None) -> list[dict[str, str]]:
        """The final messages, header included. lam=None: a header already at the start of the system
        message is honoured (and validated), else the default lambda. A plain model: unchanged. A soup
        model: no header is added; a header at the start of the system message is removed (and honoured
        as lambda when lam is None)."""
        return self.resolve(messages, lam)[0]

    def resolve(self, messages: Sequence[Mapping[str, str]], lam=None) -> tuple[list[dict[str, str]], dict | None]:
        """(final messages, the validated lambda the model is conditioned on; None for a plain model)."""
        if self.conditioning in (Conditioning.SOUP, Conditioning.MERGED):  # no header: the weights carry lambda
            return self._soup_messages(check_messages(messages), lam)
        final = self._header_messages(messages, lam)
        return final, (parse_lambda_header(final[0]["content"], self.objectives) if self.takes_lambda else None)

    def _header_messages(self, messages, lam) -> list[dict[str, str]]:
        messages = check_messages(messages)
        if not self.takes_lambda:
            if lam is not None:
                self.validate_lambda(lam)  # raises: a plain model takes no lambda
            return messages
        if lam is not None:
            return conditioned_messages(messages, self.validate_lambda(lam), self.objectives)
        system = " ".join(m["content"] for m in messages if m["role"] == "system")
        if not system.lstrip().startswith(HEADER_MARKER):
            return conditioned_messages(messages, self.default_lambda, self.objectives)
        parse_lambda_header(system)  # a malformed header is an error, not silently the default
        given, rest = split_lambda_header(system)
        others = [m for m in messages if m["role"] != "system"]
        kept = ([{"role": "system", "content": rest}] if rest.strip() else []) + others
        return conditioned_messages(kept, self.validate_lambda(given), self.objectives)

    def _soup_messages(self, messages, lam) -> tuple[list[dict[str, str]], dict[str, float]]:
        # (Merged presets too: there validate_lambda accepts only the merged lambda.)
        # The adapters, not the text, carry lambda: the messages go through unchanged, except that a
        # header an OpenAI client wrote at the start of the system message is taken out (the soup
        # model never saw one in training) and, without an explicit lam, used as lambda.
        system = " ".join(m["content"] for m in messages if m["role"] == "system")
        if system.lstrip().startswith(HEADER_MARKER):
            parse_lambda_header(system)  # a malformed header is an error, not silently the default
            given, rest = split_lambda_header(system)
            others = [m for m in messages if m["role"] != "system"]
            messages = ([{"role": "system", "content": rest}] if rest.strip() else []) + others
            lam = given if lam is None else lam
        return messages, self.validate_lambda(lam if lam is not None else self.default_lambda)

    def prompt(self, messages: Sequence[Mapping[str, str]], lam=None) -> str:
        """The exact prompt text the model sees."""
        return self.render(self.prompt_messages(messages, lam))

    # ---- generation -------------------------------------------------------------------------------

    def steering_strength(self, strength=None) -> float | None:
        """The soup mix's steering strength (lwdpo_edge/soup.py): `strength` checked, or the model's
        default when None; None for a header or plain model, which take no strength (LambdaError if given)."""
        # a plain model has no contract
        return strength_for(self.conditioning, strength, getattr(self.contract, "soup_strength", None))

    def chat(self, messages, lam=None, *, stream: bool = False, temperature: float = 0.0, top_p: float = 1.0,
             max_tokens: int = 256, seed: int | None = None, usage: Usage | None = None, strength: float | None = None,
             repetition_penalty: float = REPETITION_PENALTY):
        """The assistant's answer: a string, or with stream=True an iterator of text pieces.

        strength: soup models only, the steering strength of the adapter mix (None: the model's default).
        repetition_penalty: lwdpo_edge/decoding.py's rule on the last 64 generated tokens (1 = off), the
        default shared with eval, the app and the server.

        Validation (messages, lambda, sampling, context) happens here, before anything is generated,
        so a stream never starts for a bad request. Closing the stream stops generation.
        """
        sampling = check_sampling(temperature, top_p, max_tokens, seed, repetition_penalty)
        strength = self.steering_strength(strength)
        final, applied = self.resolve(messages, lam)
        text = self.render(final)
        with self._tokenizer_lock:
            prompt_ids = self.encode(text)
        room = self.n_ctx - len(prompt_ids)
        if room < 1:
            raise ContextLengthError(f"prompt is {len(prompt_ids)} tokens; the context window is {self.n_ctx}")
        mix = (applied, strength) if self.conditioning == Conditioning.SOUP else None
        pieces = self._generate(prompt_ids, sampling, min(int(max_tokens), room), usage or Usage(), mix)
        return pieces if stream else "".join(pieces)

    def _generate(self, prompt_ids: list[int], sampling: Sampling, max_new: int, usage: Usage,
                  mix: tuple[dict[str, float], float] | None = None) -> Iterator[str]:
        # Windowed incremental decoding (as in text-generation-inference): decode a short window of
        # tokens and emit only what grew past the previous window, so a multi-byte character split
        # across tokens is emitted once complete and SentencePiece spaces survive.
        with self.lock:  # covers the adapter scales too: a concurrent request cannot change them mid-answer
            if mix is not None:
                self.apply_mix(*mix)
            usage.prompt_tokens, usage.completion_tokens, usage.finish_reason = len(prompt_ids), 0, "length"
            ids: list[int] = usage.completion_ids
            ids.clear()
            prefix, read = 0, 0
            tokens = self.sample(prompt_ids, sampling, max_new)
            try:
                for token in tokens:
                    if self.is_stop(token):
                        usage.finish_reason = "stop"
                        break
                    ids.append(token)
                    usage.completion_tokens = len(ids)
                    with self._tokenizer_lock:
                        before, after = self.decode(ids[prefix:read]), self.decode(ids[prefix:])
                    if len(after) > len(before) and not after.endswith("\ufffd"):
                        prefix, read = read, len(ids)
                        yield after[len(before):]
                    if len(ids) >= max_new:
                        break
            finally:
                tokens.close()
            if read < len(ids):  # the tail that never became printable; a cut character is dropped
                with self._tokenizer_lock:
                    before, after = self.decode(ids[prefix:read]), self.decode(ids[prefix:])
                tail = after[len(before):].rstrip("\ufffd")
                if tail:
                    yield tail

    def next_token_logits(self, messages, continuation: Sequence[int] = (), lam=None, *,
                          strength: float | None = None):
        """Teacher-forced next-token logits, (len(continuation) + 1, V) float32: after the prompt, then
        after each token of `continuation`. For comparing backends on one fixed token sequence instead of
        by free-running greedy text, whose knife-edge tokens depend on the CPU (lwdpo_edge/agreement.py)."""
        strength = self.steering_strength(strength)
        final, applied = self.resolve(messages, lam)
        with self._tokenizer_lock:
            prompt_ids = self.encode(self.render(final))
        if len(prompt_ids) + len(continuation) > self.n_ctx:
            raise ContextLengthError(f"prompt + continuation is {len(prompt_ids) + len(continuation)} tokens; "
                                     f"the context window is {self.n_ctx}")
        with self.lock:
            if self.conditioning == Conditioning.SOUP:
                self.apply_mix(applied, strength)
            return self.logits_after(prompt_ids, [int(t) for t in continuation])

    def close(self) -> None:
        """Free the model's memory now (the model is unusable afterwards)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} objectives={self.objectives}>"

    # ---- backend hooks ----------------------------------------------------------------------------

    def render(self, messages: list[dict[str, str]]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def is_stop(self, token: int) -> bool:
        raise NotImplementedError

    def sample(self, prompt_ids: list[int], sampling: Sampling, max_new: int) -> Iterator[int]:
        raise NotImplementedError

    def logits_after(self, prompt_ids: list[int], continuation: list[int]):
        """(len(continuation) + 1, V) float32 next-token logits at the prompt's last position and after each
        continuation token (teacher forcing; the lock is held)."""
        raise NotImplementedError

    def apply_mix(self, lam: dict[str, float], strength: float) -> None:
        """Soup models only: set the adapters' scales to soup_scales(lam, strength) (under the lock, before
        sampling)."""
        raise NotImplementedError


def mix_text(lam: Mapping[str, float], strength: float | None = None) -> str:
    """What a soup model receives, in words:
    'adapter mix: helpfulness 0.50, conciseness 0.50, strength 2 (no header)'."""
    weights = ", ".join(f"{name} {value:.2f}" for name, value in lam.items())
    return f"adapter mix: {weights}" + (f", strength {strength:g}" if strength is not None else "") + " (no header)"


def check_messages(messages) -> list[dict[str, str]]:
    """Plain {'role', 'content'} dicts; MessageError naming the first bad one."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise MessageError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise MessageError(f"messages[{i}] is not an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise MessageError(f"messages[{i}].role = {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise MessageError(f"messages[{i}].content must be a string")
        checked.append({"role": role, "content": content})
    return checked


def check_sampling(temperature, top_p, max_tokens, seed, repetition_penalty=REPETITION_PENALTY) -> Sampling:
    """Sampling settings, or ValueError naming the bad one."""
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError(f"max_tokens = {max_tokens!r}; expected an integer >= 1")
    if not 0.0 <= float(temperature) <= 10.0:
        raise ValueError(f"temperature = {temperature!r}; expected 0 (greedy) to 10")
    if not 0.0 < float(top_p) <= 1.0:
        raise ValueError(f"top_p = {top_p!r}; expected a number in (0, 1]")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32):
        raise ValueError(f"seed = {seed!r}; expected an integer in [0, 2**32)")
    return Sampling(float(temperature), float(top_p), seed, check_repetition_penalty(repetition_penalty))
