"""Run an exported model anywhere: load_model(path) for GGUF, ONNX and HF folders.

    from lwdpo_edge import load_model
    m = load_model("run.q8_0.gguf")                 # or an ONNX export folder, or a HF folder
    m.objectives                                    # ['helpfulness', 'conciseness', 'readability'] ([] if plain)
    m.chat([{"role": "user", "content": "Hi"}], lam={"conciseness": 1})
    for piece in m.chat(messages, lam=..., stream=True, temperature=0.7, max_tokens=128): ...

The header reaches the model through `lwdpo_edge.conditioning.conditioned_messages`, as in training.
"""

from lwdpo_edge.runtime.base import ChatModel, ContextLengthError, MessageError, ModelLoadError, Usage
from lwdpo_edge.runtime.loader import load_model

__all__ = ["ChatModel", "ContextLengthError", "MessageError", "ModelLoadError", "Usage", "load_model"]
