"""GGUF backend: llama-cpp-python, prompt rendered from the file's own chat template.

The prompt is rendered with Jinja2 exactly as transformers renders it (`render_chat_template`), from
`tokenizer.chat_template` in the file, then tokenised with special tokens parsed. For our exports the
template's prelude keeps the header that `conditioned_messages` already wrote, so the text equals
`prompt_text(tokenizer, conditioned_messages(...))`. A GGUF without a chat template gets a plain
"role: content" transcript.

A soup export (lwdpo.conditioning = "soup") is the plain base: its template is the base's own, no
header is written, and the LoRA files named in lwdpo.soup_adapters (beside the base) are applied at
scales = the quantised lambda of each request (runtime/lora.py), under the model's lock.
"""

from __future__ import annotations

import atexit
import random
import weakref
from pathlib import Path

import numpy as np

from lwdpo_edge.chat_template import render_chat_template
from lwdpo_edge.contract import Conditioning
from lwdpo_edge.decoding import REPETITION_WINDOW
from lwdpo_edge.export_contract import ExportContract
from lwdpo_edge.gguf_keys import read_gguf_keys, read_lwdpo_metadata
from lwdpo_edge.llama_load import load_llama, quiet_llama_cpp
from lwdpo_edge.runtime.base import ChatModel, ModelLoadError, Sampling
from lwdpo_edge.runtime.lora import LoraSet
from lwdpo_edge.soup import soup_scales

# llama_ftype values (llama.h) of the file types one meets on small models
FILE_TYPES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k", 12: "q3_k_m",
              15: "q4_k_m", 17: "q5_k_m", 18: "q6_k", 32: "bf16"}


class GGUFModel(ChatModel):
    format = "gguf"

    def __init__(self, path: Path, threads: int | None = None, n_ctx: int = 2048):
        try:
            contract = ExportContract.from_json(read_lwdpo_metadata(path))
        except ValueError:
            contract = None  # a GGUF not made by lwdpo-edge: plain chat
        trained = read_gguf_keys(path, lambda key: key.endswith(".context_length") or key == "general.type")
        if trained.pop("general.type", None) == "adapter":
            raise ModelLoadError(f"{path}: a LoRA adapter, not a model; "
                                 "load the base GGUF that lists it in lwdpo.soup_adapters")
        n_ctx = min([n_ctx, *map(int, trained.values())])  # beyond it llama.cpp warns and quality drops
        try:
            with quiet_llama_cpp():
                self.llm = load_llama(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                 last_n_tokens_size=REPETITION_WINDOW, verbose=False)  # the penalty's window
        except ValueError as err:  # llama-cpp-python: "Failed to load model from file"
            raise ModelLoadError(f"{path}: llama.cpp cannot load this GGUF ({err})") from None
        meta = self.llm.metadata
        file_type = meta.get("general.file_type")
        quant = FILE_TYPES.get(int(file_type), f"ftype{file_type}") if file_type is not None else None
        super().__init__(path, contract, n_ctx, meta.get("general.architecture"), quant)
        self.template = meta.get("tokenizer.chat_template")
        self._vocab = self.llm._model.vocab  # for llama_vocab_is_eog (eos, eot, <|im_end|> ...)
        self.loras = self._load_soup(path) if self.conditioning == Conditioning.SOUP else None
        _OPEN.add(self)

    def _load_soup(self, path: Path):
        """The LoRA files the base lists (lwdpo.soup_adapters), beside it; ModelLoadError if one is missing."""
        files = [Path(path).parent / name for name in self.contract.soup_adapters]
        try:
            with quiet_llama_cpp():
                return LoraSet(self.llm, files)
        except (OSError, ValueError) as err:
            with quiet_llama_cpp():
                self.llm.close()
            raise ModelLoadError(str(err)) from None

    def apply_mix(self, lam, strength):
        # New scales invalidate the KV cache (keys and values were computed with the old adapters), so
        # the prefix cache is dropped; the same lambda and strength again keep it.
        if self.loras.set_scales(soup_scales(lam, self.objectives, strength)):
            self.llm.reset()

    def _special(self, token_id: int) -> str:
        return self.llm.detokenize([token_id], special=True).decode("utf-8", errors="replace") if token_id >= 0 else ""

    def render(self, messages):
        if not self.template:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

        # transformers passes the special tokens to the template; llama.cpp's own formatter does too
        return render_chat_template(self.template, messages, bos_token=self._special(self.llm.token_bos()),
                                    eos_token=self._special(self.llm.token_eos()))

    def encode(self, text):
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def decode(self, ids):
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")

    def is_stop(self, token):
        import llama_cpp  # optional: llama extra

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def sample(self, prompt_ids, sampling: Sampling, max_new):
        # top_k 0 and min_p 0 switch those samplers off, so temperature / top_p mean what they say;
        # temperature 0 is llama.cpp's greedy sampler. The KV cache of a shared prompt prefix is reused.
        # llama.cpp's penalties sampler is lwdpo_edge/decoding.py's rule: it sees only sampled tokens.
        self.llm.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(32))
        return self.llm.generate(prompt_ids, top_k=0, top_p=sampling.top_p, min_p=0.0, temp=sampling.temperature,
                                 repeat_penalty=sampling.repetition_penalty)

    def logits_after(self, prompt_ids, continuation):
        # Built without logits_all (it costs n_ctx x V floats), llama.cpp computes the last row of each
        # batch only, and llama-cpp-python 0.3.x no longer copies it into Llama.scores: read it from the
        # context. The prompt in one batch, then the continuation one token at a time.
        self.llm.reset()
        rows = []
        for batch in [prompt_ids, *([t] for t in continuation)]:
            self.llm.eval(batch)
            rows.append(self._last_logits())
        return np.stack(rows)

    def _last_logits(self) -> np.ndarray:
        import llama_cpp  # optional: llama extra

        pointer = llama_cpp.llama_get_logits(self.llm.ctx)
        return np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),)).astype(np.float32)  # a copy

    def close(self):
        with self.lock, quiet_llama_cpp():
            if getattr(self, "loras", None) is not None:
                self.loras.close()  # before the model: llama.cpp frees loaded adapters with it
            self.llm.close()
        _OPEN.discard(self)


# A Llama still open at interpreter exit raises in its __del__ (its C library is already unloaded):
# close every open model while the interpreter is still whole.
_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for model in list(_OPEN):
        model.close()
