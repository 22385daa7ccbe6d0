"""Greedy answers from a trained run folder (base + adapter), under a chosen lambda.

The transformers path used by the demo, `lwdpo-edge generate` and evaluation; GGUF and ONNX files run
through lwdpo_edge.runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from lwdpo_edge.conditioning import conditioned_messages, prompt_text
from lwdpo_edge.contract import ADAPTER_DIR, read_run_manifest
from lwdpo_edge.decoding import REPETITION_PENALTY, transformers_processors
from lwdpo_edge.models import load_tokenizer
from lwdpo_edge.soup import load_soup


def load_run(run_dir: Path):
    """(model, tokenizer, manifest): the fp32 base with the run's adapter applied, in eval mode.
    A soup run's model holds every objective's adapter and a `soup_mixer` (lwdpo_edge.soup)."""
    from peft import PeftModel  # peft: heavy, only when a run is loaded
    from transformers import AutoModelForCausalLM  # transformers: heavy, only when a run is loaded

    manifest = read_run_manifest(run_dir)
    if manifest.get("conditioning") == "soup":
        return load_soup(run_dir)
    base_dir = Path(manifest["base_model"]["path"])
    tokenizer = load_tokenizer(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)  # never merge into 4-bit weights
    model = PeftModel.from_pretrained(base, Path(run_dir) / ADAPTER_DIR)
    return model.eval(), tokenizer, manifest


@torch.no_grad()
def generate_answer(
    model,
    tokenizer,
    messages: Sequence[Mapping[str, str]],
    lam: Mapping[str, float] | None,
    objectives: Sequence[str],
    max_new_tokens: int = 128,
    strength: float | None = None,
    repetition_penalty: float = REPETITION_PENALTY,
) -> str:
    """Greedy answer to `messages` with the lambda header (lam=None: no header). On a soup run
    lambda (at `strength`, None = the run's default) sets the adapter mix instead, and the prompt
    carries no header. `repetition_penalty`: lwdpo_edge/decoding.py's rule (1 = plain greedy)."""
    mixer = getattr(model, "soup_mixer", None)
    if mixer is not None and lam is not None:
        mixer.set_lambda(lam, strength)
        lam = None
    text = prompt_text(tokenizer, conditioned_messages(messages, lam, objectives))
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id,
                            logits_processor=transformers_processors(repetition_penalty, inputs["input_ids"].shape[1]))
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
