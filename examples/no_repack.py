"""Load a GGUF in llama-cpp-python without weight repacking: copy this file beside your app.

    from no_repack import load_llama            # examples/no_repack.py, imported by the llama.cpp examples
    llm = load_llama("model.q8_0.gguf", n_ctx=0, n_threads=1, verbose=False)

On Intel CPUs with AMX (Sapphire Rapids and later: `amx_int8` in /proc/cpuinfo) llama.cpp repacks
weights into AMX buffers at load and the first decode crashes the process (ggml-org/llama.cpp#20824).
llama.cpp's `use_extra_bufts = False` (llama-server's `--no-repack`) avoids it; llama-cpp-python's
`Llama` has no argument for it, so the default-params function it calls is swapped while it loads.
The same helper is lwdpo_edge.llama_load.load_llama; this copy keeps the examples free of lwdpo-edge.
"""

import threading

import llama_cpp
import llama_cpp.llama_cpp as api

_lock = threading.Lock()


def load_llama(path, **kwargs) -> llama_cpp.Llama:
    """llama_cpp.Llama(model_path=path, **kwargs), every weight in a plain CPU buffer."""
    default = api.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    with _lock:
        api.llama_model_default_params = params
        try:
            return llama_cpp.Llama(model_path=str(path), **kwargs)
        finally:
            api.llama_model_default_params = default
