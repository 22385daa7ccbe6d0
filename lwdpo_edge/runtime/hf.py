"""HF backend: a transformers safetensors folder (e.g. `lwdpo-edge export RUN --format hf`), fp32 on CPU.

The prompt is `prompt_text(tokenizer, messages)`, the same function training and evaluation use.
Decoding is a short explicit loop over the KV cache (argmax, or temperature + top-p sampling) rather
than `generate()`, so that a stream can yield each token and stop the moment it is closed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lwdpo_edge.conditioning import prompt_text, stop_tokens
from lwdpo_edge.contract import RunFolderError
from lwdpo_edge.decoding import penalize_recent
from lwdpo_edge.export_contract import SIDECAR_FILE, ExportContract
from lwdpo_edge.models import quiet_transformers
from lwdpo_edge.runtime.base import ChatModel, ModelLoadError, Sampling
from lwdpo_edge.soup import load_soup


class HFModel(ChatModel):
    format = "hf"

    def __init__(self, path: Path, threads: int | None = None, n_ctx: int = 2048):
        import torch  # torch: heavy, only for HF models
        from transformers import AutoModelForCausalLM, AutoTokenizer  # transformers: heavy, only for HF models

        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has no per-model thread pool
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"{path}: transformers cannot load this folder ({err})") from None
        config = self.model.config
        limit = getattr(config, "max_position_embeddings", None) or n_ctx
        super().__init__(path, sidecar_contract(path), min(n_ctx, limit), config.model_type, None)
        self._stop = stop_tokens(self.model, self.tokenizer)

    def render(self, messages):
        if not self.tokenizer.chat_template:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return prompt_text(self.tokenizer, messages)

    def encode(self, text):
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def is_stop(self, token):
        return token in self._stop

    def sample(self, prompt_ids, sampling: Sampling, max_new):
        import torch  # torch: heavy, only for HF models

        seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
        generator = torch.Generator().manual_seed(seed)
        out, generated = self._forward(prompt_ids, None), []
        while True:
            logits = penalize_recent(out.logits[0, -1].float(), generated, sampling.repetition_penalty)
            token = pick_token(logits, sampling, generator)
            generated.append(token)
            yield token
            out = self._forward([token], out.past_key_values)

    def _forward(self, ids, past):
        import torch  # torch: heavy, only for HF models

        # inference_mode per step, not around the loop: grad mode is per thread, and a server may
        # resume this generator on a different thread for every token.
        with torch.inference_mode():
            return self.model(torch.tensor([ids]), past_key_values=past, use_cache=True)

    def logits_after(self, prompt_ids, continuation):
        import torch  # torch: heavy, only for HF models

        with torch.inference_mode():
            logits = self.model(torch.tensor([prompt_ids + continuation])).logits[0]  # (T, V)
        return logits[len(prompt_ids) - 1:].float().numpy()

    def close(self):
        with self.lock:
            self.model = None


class HFSoupModel(HFModel):
    """A soup run folder (lwdpo.json conditioning "soup"): the fp32 base with every objective's adapter,
    mixed per request by lwdpo_edge.soup (base + sum_k lambda_k * delta_k); no header, no export needed."""

    def __init__(self, path: Path, threads: int | None = None, n_ctx: int = 2048):
        import torch  # torch: heavy, only for HF models

        if threads:
            torch.set_num_threads(threads)
        try:
            with quiet_transformers():
                self.model, self.tokenizer, manifest = load_soup(Path(path))
        except (RunFolderError, OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"{path}: cannot load this soup run ({err})") from None
        config = self.model.config
        limit = getattr(config, "max_position_embeddings", None) or n_ctx
        ChatModel.__init__(self, path, ExportContract.from_manifest(manifest), min(n_ctx, limit), config.model_type,
                           None)
        self._stop = stop_tokens(self.model, self.tokenizer)

    def apply_mix(self, lam, strength):
        self.model.soup_mixer.set_lambda(lam, strength)  # a no-op when lambda and strength are unchanged


def pick_token(logits, sampling: Sampling, generator) -> int:
    """argmax at temperature 0; otherwise sample from the top-p nucleus of softmax(logits / T)."""
    import torch  # torch: heavy, only for HF models

    if sampling.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > sampling.top_p  # keep the token that crosses top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def sidecar_contract(folder: Path):
    """The ExportContract in FOLDER/lwdpo.json, or None for a folder not exported by lwdpo-edge."""
    sidecar = Path(folder) / SIDECAR_FILE
    if not sidecar.is_file():
        return None
    try:
        return ExportContract.from_json(json.loads(sidecar.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{sidecar}: not a valid lwdpo contract ({err})") from None
