"""A merged preset is a plain GGUF: load it like any model (as LM Studio or GPT4All do), no lwdpo-edge import.

    lwdpo-edge export RUN --preset conciseness      # -> RUN/export/NAME.conciseness.q8_0.gguf (+ .Modelfile)
    python examples/llama_cpp_preset.py RUN/export/NAME.conciseness.q8_0.gguf "Explain what DNS is."

The lambda it was merged at is in its metadata (lwdpo.conditioning = "merged", lwdpo.lambda_merged);
nothing needs to be set to get it: no header, no adapters, the file's own chat template.
"""

import argparse

from no_repack import load_llama  # examples/no_repack.py: avoids a crash on AMX CPUs

# lwdpo-edge's decoding default (its eval, runtime, app and serve use it; llama.cpp's rule, window 64):
# greedy answers here then equal `lwdpo-edge`'s. 1.0 = plain greedy.
REPEAT_PENALTY = 1.1


def merged_lambda(path: str) -> dict:
    from gguf import GGUFReader  # pip install gguf: the arrays are not in llama-cpp-python's metadata dict

    fields = GGUFReader(path).fields
    return dict(zip(fields["lwdpo.objectives"].contents(),
                    (round(x, 2) for x in fields["lwdpo.lambda_merged"].contents())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a merged preset GGUF (lwdpo-edge export RUN --preset NAME)")
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--max-tokens", type=int, default=96, help="longest answer in tokens")
    args = parser.parse_args()

    llm = load_llama(args.model, n_ctx=0, n_threads=1, verbose=False)
    print("conditioning:", llm.metadata.get("lwdpo.conditioning"), "| lambda merged:", merged_lambda(args.model))
    reply = llm.create_chat_completion([{"role": "user", "content": args.prompt}], temperature=0,
                                       max_tokens=args.max_tokens, repeat_penalty=REPEAT_PENALTY)
    print("[answer]", reply["choices"][0]["message"]["content"])
    llm.close()


if __name__ == "__main__":
    main()
