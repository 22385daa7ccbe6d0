"""Steer an lwdpo-edge soup GGUF from plain llama-cpp-python: adapter scales from lambda, no lwdpo-edge import.

    python examples/llama_cpp_soup.py RUN/export/NAME.q8_0.gguf "Explain what DNS is." --lambda conciseness=1

A soup export is the plain base GGUF plus one LoRA GGUF per objective, listed in the base's
`lwdpo.soup_adapters` key. lambda reaches the model as adapter scales, one per objective,

    c_k = 1/K + strength * (lambda_k - 1/K)      strength = lwdpo.soup_strength (1: c = lambda)

set per request with llama.cpp's llama_set_adapters_lora (llama-cpp-python's Llama(lora_path=...) takes
one adapter only, so the C API is called directly). New scales make the KV cache stale: reset it.
"""

import argparse
import ctypes
from pathlib import Path

import llama_cpp
from no_repack import load_llama  # examples/no_repack.py: avoids a crash on AMX CPUs

# lwdpo-edge's decoding default (its eval, runtime, app and serve use it; llama.cpp's rule, window 64):
# greedy answers here then equal `lwdpo-edge`'s. 1.0 = plain greedy.
REPEAT_PENALTY = 1.1


def read_contract(path: str) -> dict:
    """The lwdpo.* keys; arrays need gguf's reader (pip install gguf; llama.cpp's own)."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields
    value = lambda key, default=None: fields[key].contents() if key in fields else default  # noqa: E731
    return {"objectives": value("lwdpo.objectives"),
            "lambda_default": [round(x, 2) for x in value("lwdpo.lambda_default")],
            "conditioning": value("lwdpo.conditioning", "header"), "adapters": value("lwdpo.soup_adapters", []),
            "strength": round(value("lwdpo.soup_strength", 1.0), 4)}


def scales(lam: dict, contract: dict) -> list:
    """One scale per adapter, objective order: lambda normalised, then the steering strength."""
    objectives, total = contract["objectives"], sum(lam.values())
    weights = [lam.get(name, 0.0) / total for name in objectives]
    centre = 1.0 / len(objectives)
    return [centre + contract["strength"] * (w - centre) for w in weights]


def set_scales(llm: "llama_cpp.Llama", handles: list, values: list) -> None:
    n = len(handles)
    array = (llama_cpp.llama_adapter_lora_p_ctypes * n)(*handles)
    if llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, array, n, (ctypes.c_float * n)(*values)) != 0:
        raise RuntimeError("llama_set_adapters_lora failed")
    llm.reset()  # the KV cache was computed with the old scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the base GGUF of a soup export (it lists its LoRA files)")
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--lambda", dest="lam", default="conciseness=1", help="e.g. 'conciseness=0.7,helpfulness=0.3'")
    parser.add_argument("--max-tokens", type=int, default=96, help="longest answer in tokens")
    args = parser.parse_args()

    contract = read_contract(args.model)
    assert contract["conditioning"] == "soup", (
        f"{args.model} is not a soup export (conditioning {contract['conditioning']})")
    print("contract:", contract)
    llm = load_llama(args.model, n_ctx=0, n_threads=1, verbose=False)
    handles = [llama_cpp.llama_adapter_lora_init(llm._model.model, str(Path(args.model).parent / name).encode())
               for name in contract["adapters"]]
    messages = [{"role": "user", "content": args.prompt}]
    chosen = {name: float(value) for name, value in (item.split("=") for item in args.lam.split(","))}
    default = dict(zip(contract["objectives"], contract["lambda_default"]))
    for label, lam in (("default lambda", default), (f"lambda {chosen}", chosen)):
        set_scales(llm, handles, scales(lam, contract))
        reply = llm.create_chat_completion(messages, temperature=0, max_tokens=args.max_tokens,
                                           repeat_penalty=REPEAT_PENALTY)
        print(f"[{label}] {reply['choices'][0]['message']['content']}")
    llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, None, 0, None)
    for handle in handles:
        llama_cpp.llama_adapter_lora_free(handle)
    llm.close()


if __name__ == "__main__":
    main()
