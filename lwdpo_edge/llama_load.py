"""Open a GGUF with llama-cpp-python, llama.cpp's extra weight buffers switched off.

At load, llama.cpp may copy ("repack") weights into extra buffer types: AMX tiles on Intel CPUs of
the Sapphire Rapids class and later, interleaved blocks (CPU_REPACK) for some quantisations on other
x86-64 and ARM CPUs. On AMX CPUs the first decode then kills the process (a segfault or an illegal
instruction in ggml_backend_amx_mul_mat; ggml-org/llama.cpp#20824), for the default Q4_1 model and
for q8_0 / q4_k_m exports alike. `llama_model_params.use_extra_bufts = False` keeps every weight in a
plain CPU buffer: the switch llama-server and llama-cli call `--no-repack`.

It is off on every CPU, not only where AMX is found: the same kernels then run everywhere, so a file
gives the same logits on a laptop and on a server, and the decode speed it costs is measured by
bench/llama_repack.py (docs/export.md).

llama-cpp-python's `Llama` does not take the field as an argument, so `load_llama` swaps the
default-params function that `Llama.__init__` calls for one that clears it, while the model loads.
The swap is process-wide, hence the lock. Written by hand: no library offers it.

`quiet_llama_cpp` mutes llama.cpp's per-tensor log while a model loads, quantizes or changes adapters.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path

_SWAP_LOCK = threading.Lock()


def load_llama(path: str | Path, **kwargs):
    """`llama_cpp.Llama(model_path=path, **kwargs)` with use_extra_bufts = False. Every GGUF this
    project opens with llama.cpp goes through here (tests/test_llama_load.py checks the sources)."""
    import llama_cpp  # optional: llama extra
    import llama_cpp.llama_cpp as api  # optional: llama extra

    default = api.llama_model_default_params

    def without_extra_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    with _SWAP_LOCK:
        api.llama_model_default_params = without_extra_buffers
        try:
            return llama_cpp.Llama(model_path=str(path), **kwargs)
        finally:
            api.llama_model_default_params = default


@contextmanager
def quiet_llama_cpp():
    """llama.cpp logs every tensor it quantizes or loads through llama-cpp-python's logger: mute it.

    The logger starts at NOTSET, which its callback reads as "print everything" (debug lines
    included, ~460 per LoRA scale change), so NOTSET is not restored: it stays at ERROR.
    """
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level if level != logging.NOTSET else logging.ERROR)
