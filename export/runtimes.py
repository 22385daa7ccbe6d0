"""One small interface over the three runtimes an export is checked in: transformers, llama.cpp, onnxruntime-genai.

    tokenize(text) -> token ids (special tokens in the text are parsed, no BOS added)
    logits(tokens) -> [len(tokens), vocab] next-token logits at every position (teacher forcing)
    greedy(tokens, max_new, stop) -> argmax continuation, stopping before a token in `stop`

Greedy decoding is written out as argmax over `logits` in every runtime, rather than each library's
own generate(), so that no sampler default (repetition penalty, min length, eos handling) can make
two runtimes differ for reasons other than the weights.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lwdpo_edge.llama_load import load_llama, quiet_llama_cpp


class HFRuntime:
    """A transformers causal LM (fp32) and its tokenizer; torch runs on `n_threads` while it works."""

    def __init__(self, model, tokenizer, n_threads: int | None = None):
        self.model, self.tokenizer, self.n_threads = model.eval(), tokenizer, n_threads

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        import torch  # torch: heavy, only to verify in transformers

        with torch.no_grad(), torch_threads(self.n_threads):
            return self.model(torch.tensor([list(tokens)])).logits[0].float().numpy()

    def greedy(self, tokens: Sequence[int], max_new: int, stop: Collection[int]) -> list[int]:
        import torch  # torch: heavy, only to verify in transformers

        out: list[int] = []
        with torch.no_grad(), torch_threads(self.n_threads):
            result = self.model(torch.tensor([list(tokens)]), use_cache=True)
            for _ in range(max_new):
                token = int(result.logits[0, -1].argmax())
                if token in stop:
                    break
                out.append(token)
                result = self.model(torch.tensor([[token]]), past_key_values=result.past_key_values, use_cache=True)
        return out


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `n` for a block (None: unchanged). On a loaded 2-core machine
    one thread is several times faster than two (docs/export.md, "Benchmark")."""
    import torch  # torch: heavy, only to verify in transformers

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LlamaCppRuntime:
    """A GGUF file in llama-cpp-python (CPU; one thread by default: faster than two on a busy machine)."""

    def __init__(self, gguf_path: Path, n_threads: int = 1, n_ctx: int = 1024):
        with quiet_llama_cpp():
            self.llm = load_llama(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                             logits_all=True, verbose=False)

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(list(tokens))
        return np.array(self.llm.scores[: len(tokens)])

    def greedy(self, tokens: Sequence[int], max_new: int, stop: Collection[int]) -> list[int]:
        self.llm.reset()
        self.llm.eval(list(tokens))
        out: list[int] = []
        for _ in range(max_new):
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            if token in stop:
                break
            out.append(token)
            self.llm.eval([token])
        return out

    def close(self) -> None:
        """Free the model now (quietly): llama.cpp logs on free, and a Llama freed at interpreter exit errors."""
        with quiet_llama_cpp():
            self.llm.close()


class OrtGenaiRuntime:
    """An onnxruntime-genai model folder (CPU)."""

    def __init__(self, model_dir: Path, n_threads: int | None = None):
        import onnxruntime_genai as og  # optional: onnx extra

        og.disable_telemetry_events()  # on by default in onnxruntime-genai
        config = og.Config(str(model_dir))
        if n_threads:
            options = {"intra_op_num_threads": n_threads, "inter_op_num_threads": 1}
            config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.og, self.model = og, og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        self.adapters = None  # set_adapter: an .onnx_adapter every generator activates

    def set_adapter(self, path: Path) -> None:
        """Feed the model's adapter inputs from `path` (an onnxruntime .onnx_adapter) from now on."""
        self.adapters = self.og.Adapters(self.model)
        self.adapters.load(str(path), "active")

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(text)]

    def generator(self, max_length: int):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_length, do_sample=False)
        generator = self.og.Generator(self.model, params)
        if self.adapters is not None:
            generator.set_active_adapter(self.adapters, "active")
        return generator

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        generator = self.generator(len(tokens) + 1)
        generator.append_tokens(np.asarray(tokens, dtype=np.int32))
        return np.array(generator.get_output("logits"))[0]

    def greedy(self, tokens: Sequence[int], max_new: int, stop: Collection[int]) -> list[int]:
        generator = self.generator(len(tokens) + max_new + 1)
        generator.append_tokens(np.asarray(tokens, dtype=np.int32))
        out: list[int] = []
        for _ in range(max_new):
            token = int(np.argmax(np.array(generator.get_output("logits"))[0, -1]))
            if token in stop:
                break
            out.append(token)
            generator.append_tokens(np.asarray([token], dtype=np.int32))
        return out
