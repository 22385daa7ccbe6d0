"""Steer a model served by `lwdpo-edge serve` from the official openai Python client, lambda per request.

    lwdpo-edge serve RUN/export/NAME.q8_0.gguf --port 8000 &
    python examples/openai_client.py "Explain what DNS is." --base-url http://127.0.0.1:8000/v1

The server lists each model's objectives under "lwdpo" in /v1/models; a request sets lambda with the
extra body field {"lwdpo": {"lambda": {...}}} (any OpenAI client can send extra fields). This script
asks the same question at each corner of the lambda simplex and streams the answers.
"""

import argparse

from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="the server's /v1 URL")
    parser.add_argument("--api-key", default="none", help="the server's --api-key, if it has one")
    parser.add_argument("--max-tokens", type=int, default=96, help="longest answer in tokens")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = client.models.list().data[0]
    objectives = model.model_extra["lwdpo"]["objectives"]  # [] for a model without a lambda contract
    print(f"model {model.id}, objectives {objectives}")
    for name in objectives or [None]:
        lam = {name: 1.0} if name else None
        stream = client.chat.completions.create(
            model=model.id, messages=[{"role": "user", "content": args.prompt}], temperature=0,
            max_tokens=args.max_tokens, stream=True, extra_body={"lwdpo": {"lambda": lam}} if lam else None)
        print(f"\n[lambda {lam}] ", end="", flush=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
        print()


if __name__ == "__main__":
    main()
