"""Use an lwdpo-edge GGUF from any app with plain llama-cpp-python: no lwdpo-edge import.

    python examples/llama_cpp_plain.py RUN/export/NAME.q8_0.gguf "Explain what DNS is." --lambda conciseness=1

The file carries the lambda contract: `lwdpo.*` metadata keys and a chat template that writes the
lambda header into the system message. This script reads the contract, then asks the same question
twice: with the template's default lambda (an ordinary create_chat_completion call) and with the
lambda given on the command line, passed to the chat template as the `lwdpo_lambda` variable.
"""

import argparse

import llama_cpp
from no_repack import load_llama  # examples/no_repack.py: avoids a crash on AMX CPUs
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

# lwdpo-edge's decoding default (its eval, runtime, app and serve use it; llama.cpp's rule, window 64):
# greedy answers here then equal `lwdpo-edge`'s. 1.0 = plain greedy.
REPEAT_PENALTY = 1.1


def read_contract(path: str, llm: "llama_cpp.Llama") -> dict:
    """Scalar lwdpo.* keys are in llama-cpp-python's metadata dict; the two arrays need gguf's reader."""
    contract = {k: v for k, v in llm.metadata.items() if k.startswith("lwdpo.")}
    try:
        from gguf import GGUFReader  # pip install gguf (llama.cpp's own reader; ~3 s on a 49k vocabulary)

        fields = GGUFReader(path).fields
        contract["lwdpo.objectives"] = fields["lwdpo.objectives"].contents()
        contract["lwdpo.lambda_default"] = [round(x, 2) for x in fields["lwdpo.lambda_default"].contents()]
    except ImportError:
        pass
    return contract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a GGUF exported by lwdpo-edge")
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--lambda", dest="lam", default="conciseness=1", help="e.g. 'conciseness=0.7,helpfulness=0.3'")
    parser.add_argument("--max-tokens", type=int, default=96, help="longest answer in tokens")
    args = parser.parse_args()

    llm = load_llama(args.model, n_ctx=0, n_threads=1, verbose=False)  # n_ctx 0: the trained context
    contract = read_contract(args.model, llm)
    print("contract:", contract)
    messages = [{"role": "user", "content": args.prompt}]

    # 1. No lambda: the chat template writes the header from lwdpo.lambda_default.
    reply = llm.create_chat_completion(messages, temperature=0, max_tokens=args.max_tokens,
                                       repeat_penalty=REPEAT_PENALTY)
    print("\n[default lambda]", reply["choices"][0]["message"]["content"])

    # 2. A chosen lambda: render the file's template with `lwdpo_lambda` (the name in lwdpo.template_variable).
    lam = {name: float(value) for name, value in (item.split("=") for item in args.lam.split(","))}
    template = llm.metadata["tokenizer.chat_template"]
    token_text = lambda i: llm.detokenize([i], special=True).decode()  # noqa: E731
    formatter = Jinja2ChatFormatter(template, eos_token=token_text(llm.token_eos()),
                                    bos_token=token_text(llm.token_bos()))
    prompt = formatter(messages=messages, **{contract.get("lwdpo.template_variable", "lwdpo_lambda"): lam}).prompt
    print("\n[prompt]", prompt, sep="\n")
    reply = llm.create_completion(prompt, temperature=0, max_tokens=args.max_tokens,
                                  repeat_penalty=REPEAT_PENALTY)
    print(f"[lambda {lam}]", reply["choices"][0]["text"])


if __name__ == "__main__":
    main()
