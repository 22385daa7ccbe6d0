"""Run an lwdpo-edge ONNX export with plain onnxruntime-genai, lambda included, no lwdpo-edge import.

    lwdpo-edge export RUN --format onnx             # -> RUN/export/NAME.onnx-int4/
    python examples/onnx_genai.py RUN/export/NAME.onnx-int4 "Explain what DNS is." --lambda conciseness=1

How lambda reaches the model depends on lwdpo.json's "conditioning":
  soup    the adapters are one LoRA branch whose B matrices are model inputs (one per projection,
          default: the mix at the default lambda). For a lambda, build B = concat_k c_k * block_k from
          lwdpo_lora_blocks.safetensors ("<module>/<objective>" -> (r_k, out)), with
          c_k = 1/K + soup_strength * (lambda_k - 1/K), write it as an onnxruntime .onnx_adapter, and
          activate it on the generator (onnxruntime-genai's Adapters API).
  header  the chat template writes the lambda header: render chat_template.jinja with `lwdpo_lambda`.
  merged  lambda is fixed in the weights (lambda_merged): nothing to set.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime_genai as og


def soup_adapter(folder: Path, contract: dict, lam: dict, out: Path) -> Path:
    """The .onnx_adapter feeding every B input the mix at lam."""
    import onnxruntime as ort
    from safetensors.numpy import load_file

    objectives, total = contract["objectives"], sum(lam.values())
    centre = 1.0 / len(objectives)
    scale = {name: centre + contract["soup_strength"] * (lam.get(name, 0.0) / total - centre) for name in objectives}
    per_module: dict = {}
    for key, block in load_file(str(folder / contract["lora_blocks"])).items():
        module, objective = key.rsplit("/", 1)
        per_module.setdefault(module, {})[objective] = block
    arrays = {f"lwdpo.lora_B.{m}": np.ascontiguousarray(np.concatenate([scale[o] * b[o] for o in objectives]),
                                                        dtype=np.float32)
              for m, b in per_module.items()}
    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in arrays.items()})
    adapter.export_adapter(str(out))
    return out


def prompt_text(folder: Path, contract: dict, messages: list, lam: dict | None) -> str:
    import jinja2

    template = jinja2.Environment().from_string((folder / "chat_template.jinja").read_text())
    variables = {"lwdpo_lambda": lam} if lam and contract["conditioning"] == "header" else {}
    return template.render(messages=messages, add_generation_prompt=True, **variables)


def answer(model, tokenizer, text: str, max_tokens: int, adapters=None) -> str:
    params = og.GeneratorParams(model)
    ids = tokenizer.encode(text)
    params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
    generator = og.Generator(model, params)
    if adapters is not None:
        generator.set_active_adapter(adapters, "lambda")
    generator.append_tokens(ids)
    out = []
    while not generator.is_done():
        generator.generate_next_token()
        out.append(int(generator.get_next_tokens()[0]))
    return tokenizer.decode(np.asarray(out, dtype=np.int32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an ONNX folder exported by lwdpo-edge")
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--lambda", dest="lam", default="conciseness=1", help="e.g. 'conciseness=0.7,helpfulness=0.3'")
    parser.add_argument("--max-tokens", type=int, default=96, help="longest answer in tokens")
    args = parser.parse_args()

    og.disable_telemetry_events()
    folder = Path(args.model)
    contract = json.loads((folder / "lwdpo.json").read_text())
    print("conditioning:", contract["conditioning"], "| objectives:", contract["objectives"])
    model = og.Model(str(folder))
    tokenizer = og.Tokenizer(model)
    messages = [{"role": "user", "content": args.prompt}]
    lam = {name: float(value) for name, value in (item.split("=") for item in args.lam.split(","))}
    if contract["conditioning"] == "merged":
        lam = None
        print("lambda merged at export:", contract["lambda_merged"])
    adapters = None
    with tempfile.TemporaryDirectory() as tmp:
        if lam and contract["conditioning"] == "soup":
            adapters = og.Adapters(model)
            adapters.load(str(soup_adapter(folder, contract, lam, Path(tmp) / "lambda.onnx_adapter")), "lambda")
        text = prompt_text(folder, contract, messages, lam)
        print(f"[lambda {lam}]", answer(model, tokenizer, text, args.max_tokens, adapters))


if __name__ == "__main__":
    main()
