"""Several LoRA GGUF files on one llama.cpp context, each at its own scale (adapter soup).

llama-cpp-python's `Llama(lora_path=...)` takes one adapter; the C API takes any number:

    handle = llama_adapter_lora_init(llm._model.model, b"NAME.helpfulness.lora.gguf")   # once per file
    llama_set_adapters_lora(llm._ctx.ctx, handles, K, scales)                           # per lambda

llama.cpp multiplies each scale by the file's adapter.lora.alpha / rank, as peft does, so scales =
lambda gives base + sum_k lambda_k * delta_k (export/soup_gguf.py). The adapters are applied while the
graph runs (the base weights are untouched), so a lambda change is free, but the KV cache computed
under the old scales is stale: the caller must drop it (`Llama.reset()`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path


class LoraSet:
    """LoRA GGUF files loaded for one `llama_cpp.Llama`; `set_scales` applies them."""

    def __init__(self, llm, paths: Sequence[Path]):
        import llama_cpp  # optional: llama extra

        self.llm, self.paths, self.handles = llm, [Path(p) for p in paths], []
        self.scales: list[float] | None = None
        for path in self.paths:
            if not path.is_file():
                self.close()
                raise FileNotFoundError(f"{path}: LoRA adapter file missing "
                                        "(listed in the base GGUF's lwdpo.soup_adapters)")
            handle = llama_cpp.llama_adapter_lora_init(llm._model.model, str(path).encode())
            if not handle:
                self.close()
                raise ValueError(f"{path}: llama.cpp cannot load this LoRA GGUF for {llm.model_path}")
            self.handles.append(handle)

    def set_scales(self, scales: Sequence[float]) -> bool:
        """Apply the adapters at `scales` (one per file); True when they changed (the KV cache is then stale)."""
        import llama_cpp  # optional: llama extra

        scales = [float(s) for s in scales]
        if scales == self.scales:
            return False
        n = len(self.handles)
        if len(scales) != n:
            raise ValueError(f"{len(scales)} scales for {n} LoRA adapters")
        array = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*self.handles)
        if llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, array, n, (ctypes.c_float * n)(*scales)) != 0:
            raise RuntimeError(f"llama_set_adapters_lora failed for {[p.name for p in self.paths]}")
        self.scales = scales
        return True

    def close(self) -> None:
        """Detach and free the adapters; call before closing the Llama (llama.cpp frees them with the model)."""
        import llama_cpp  # optional: llama extra

        if self.handles and getattr(self.llm, "_ctx", None) is not None and self.scales is not None:
            llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, None, 0, None)
        for handle in self.handles:
            llama_cpp.llama_adapter_lora_free(handle)
        self.handles, self.scales = [], None
