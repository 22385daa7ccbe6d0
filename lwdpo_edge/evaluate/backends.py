"""Greedy generation backends for evaluation: one small interface, so a faster engine can slot in.

    backend.generate_batch([messages, messages, ...], max_new_tokens) -> [answer, answer, ...]

`messages` are the final chat messages (lambda header already in the system turn); a backend only
renders them with the model's chat template and decodes greedily until end of turn. The
transformers backend runs one left-padded batch per call. A llama.cpp backend on an exported GGUF
would implement the same method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Protocol, runtime_checkable

import torch

from lwdpo_edge.conditioning import prompt_text
from lwdpo_edge.decoding import REPETITION_PENALTY, check_repetition_penalty, transformers_processors


@runtime_checkable
class GenerationBackend(Protocol):
    name: str

    def generate_batch(self, prompts: Sequence[Sequence[Mapping[str, str]]], max_new_tokens: int) -> list[str]: ...


def stop_token_ids(model, tokenizer) -> list[int]:
    """End of turn as the tokenizer names it plus whatever the model's generation config stops on."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [tokenizer.eos_token_id, *configured] if i is not None})


class TransformersBackend:
    """Greedy decoding with transformers on a (Peft)model; adapter=False runs the base model. The
    repetition penalty (lwdpo_edge/decoding.py, default REPETITION_PENALTY) is the runtime's.

    Left padding: every row's prompt ends at the same position, so the new tokens of all rows are
    generated in lock step and read off at output[:, T_prompt:]. Rows that reach end of turn early
    are padded until the longest one stops (or max_new_tokens).
    """

    def __init__(self, model, tokenizer, adapter: bool = True, repetition_penalty: float = REPETITION_PENALTY):
        self.model, self.tokenizer, self.adapter = model, tokenizer, adapter
        self.repetition_penalty = check_repetition_penalty(repetition_penalty)  # lwdpo_edge/decoding.py
        self.name = "transformers" + ("" if adapter else " (adapter disabled)")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = stop_token_ids(model, tokenizer)

    def _adapter_context(self):
        return nullcontext() if self.adapter else self.model.disable_adapter()

    @torch.inference_mode()
    def generate_batch(self, prompts, max_new_tokens: int) -> list[str]:
        texts = [prompt_text(self.tokenizer, messages) for messages in prompts]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side  # the tokenizer is shared with right-padded scoring
        inputs = inputs.to(self.model.device)
        with self._adapter_context():
            output = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad_id,
                eos_token_id=self.stop_ids, temperature=None, top_p=None, top_k=None,
                logits_processor=transformers_processors(self.repetition_penalty, inputs["input_ids"].shape[1]),
            )  # (B, T_prompt + T_new)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
