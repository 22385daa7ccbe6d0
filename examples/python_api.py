"""The lwdpo-edge runtime API: one call loads a GGUF file, an ONNX export folder or a HF folder.

    python examples/python_api.py RUN/export/NAME.q8_0.gguf "Explain what DNS is."

Prints the model's lambda contract, then streams one answer per objective at full weight (or one
plain answer for a model without a contract, such as `default`, the packaged SmolLM2).
"""

import argparse

from lwdpo_edge import load_model


def describe(model, messages, lam) -> str:
    """What steers this answer: the header line (header models) or the adapter mix (soup models)."""
    if lam is None:
        return "(plain chat: no lambda contract)"
    if model.conditioning == "soup":
        mix = ", ".join(f"{name} {weight:.2f}" for name, weight in model.validate_lambda(lam).items())
        return f"adapter mix: {mix}, strength {model.info['soup_strength']:g}"
    return model.prompt_messages(messages, lam)[0]["content"].splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .gguf file, an ONNX export folder, a HF folder, or 'default'")
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--max-tokens", type=int, default=96, help="longest answer in tokens")
    args = parser.parse_args()

    with load_model(args.model, threads=1) as model:
        print(model.info)
        messages = [{"role": "user", "content": args.prompt}]
        for lam in [{name: 1.0} for name in model.objectives] or [None]:
            print(f"\n{describe(model, messages, lam)}\n  ", end="", flush=True)
            for piece in model.chat(messages, lam, stream=True, max_tokens=args.max_tokens):
                print(piece, end="", flush=True)
            print()


if __name__ == "__main__":
    main()
