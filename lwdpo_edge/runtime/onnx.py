"""ONNX backend: an onnxruntime-genai folder (e.g. `lwdpo-edge export RUN --format onnx`).

The prompt is rendered with Jinja2 from the folder's chat_template.jinja (the lambda template for
our exports), like transformers does; a folder without that file uses onnxruntime-genai's own
template engine. The contract comes from the lwdpo.json sidecar (genai_config.json cannot hold it).

A soup export (conditioning "soup", export/soup_onnx.py) takes lambda per request: the mix's B matrices
are graph inputs, fed from an `.onnx_adapter` written for each new set of scales (OnnxMix) and
activated on every generator; the last few stay loaded, so switching back and forth costs nothing.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lwdpo_edge.chat_template import render_chat_template
from lwdpo_edge.contract import Conditioning
from lwdpo_edge.decoding import penalize_recent
from lwdpo_edge.onnx_adapter import read_blocks, write_onnx_adapter
from lwdpo_edge.runtime.base import ChatModel, ModelLoadError, Sampling
from lwdpo_edge.runtime.hf import sidecar_contract
from lwdpo_edge.soup import soup_scales

GENAI_CONFIG = "genai_config.json"
TEMPLATE_FILE = "chat_template.jinja"


class OnnxModel(ChatModel):
    format = "onnx"

    def __init__(self, path: Path, threads: int | None = None, n_ctx: int = 2048):
        import onnxruntime_genai as og  # optional: onnx extra

        og.disable_telemetry_events()  # on by default in onnxruntime-genai
        genai = json.loads((path / GENAI_CONFIG).read_text(encoding="utf-8"))["model"]
        try:
            config = og.Config(str(path))
            if threads:
                options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
                config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
            self.og, self.model = og, og.Model(config)
            self.tokenizer = og.Tokenizer(self.model)
        except Exception as err:  # onnxruntime-genai raises a bare RuntimeError/OrtException
            raise ModelLoadError(f"{path}: onnxruntime-genai cannot load this folder ({err})") from None
        contract = sidecar_contract(path)
        quant = contract_format(path)
        super().__init__(path, contract, min(n_ctx, int(genai.get("context_length") or n_ctx)), genai.get("type"),
                         quant)
        eos = genai.get("eos_token_id")
        self._stop = set(eos if isinstance(eos, list) else [eos]) - {None}
        template = path / TEMPLATE_FILE
        self.template = template.read_text(encoding="utf-8") if template.is_file() else None
        self.mix = OnnxMix(self.og, self.model, path, contract) if self.conditioning == Conditioning.SOUP else None

    def apply_mix(self, lam, strength):
        self.mix.set_scales(soup_scales(lam, self.objectives, strength))

    def _generator(self, params):
        generator = self.og.Generator(self.model, params)
        if self.mix is not None:
            self.mix.activate(generator)
        return generator

    def render(self, messages):
        if self.template is None:
            return self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)

        return render_chat_template(self.template, messages)

    def encode(self, text):
        return [int(t) for t in self.tokenizer.encode(text)]

    def decode(self, ids):
        return self.tokenizer.decode(np.asarray(ids, dtype=np.int32)) if ids else ""

    def is_stop(self, token):
        return token in self._stop

    def sample(self, prompt_ids, sampling: Sampling, max_new):
        params = self.og.GeneratorParams(self.model)
        options = {"max_length": len(prompt_ids) + max_new, "do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            seed = sampling.seed if sampling.seed is not None else random.getrandbits(31)
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0, random_seed=seed)
        params.set_search_options(**options)
        generator = self._generator(params)
        generator.append_tokens(np.asarray(prompt_ids, dtype=np.int32))
        generated: list[int] = []
        while not generator.is_done():
            if sampling.repetition_penalty != 1.0 and generated:  # genai's own penalty would count the prompt
                logits = np.asarray(generator.get_logits(), dtype=np.float32)  # (1, 1, V): one sequence, its last token
                penalised = penalize_recent(logits.reshape(-1), generated, sampling.repetition_penalty)
                generator.set_logits(penalised.reshape(logits.shape))
            generator.generate_next_token()
            generated.append(int(generator.get_next_tokens()[0]))
            yield generated[-1]

    def logits_after(self, prompt_ids, continuation):
        ids = prompt_ids + continuation
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + 1, do_sample=False)
        generator = self._generator(params)
        generator.append_tokens(np.asarray(ids, dtype=np.int32))  # one pass: logits at every position
        return np.array(generator.get_output("logits"), dtype=np.float32)[0, len(prompt_ids) - 1:]

    def close(self):
        with self.lock:
            if self.mix is not None:
                self.mix.close()
            self.model = self.tokenizer = self.mix = None


class OnnxMix:
    """The adapter inputs of a soup ONNX export at given scales: one .onnx_adapter per scales, in a
    private temporary folder, the KEEP most recent loaded (lwdpo_edge/onnx_adapter.py for the math)."""

    KEEP = 8

    def __init__(self, og, model, path: Path, contract):
        blocks_file = Path(path) / contract.lora_blocks
        if not blocks_file.is_file():
            raise ModelLoadError(f"{blocks_file}: missing (listed as lora_blocks in {path}/lwdpo.json)")
        self.blocks = read_blocks(blocks_file, contract.objectives)
        self.adapters = og.Adapters(model)
        self.folder = Path(tempfile.mkdtemp(prefix="lwdpo-onnx-mix-"))
        self.loaded: list[str] = []  # adapter names, oldest first
        self.active: str | None = None

    def set_scales(self, scales) -> None:
        name = ",".join(f"{s:.6g}" for s in scales)
        if name not in self.loaded:
            path = write_onnx_adapter(self.folder / f"{len(self.loaded)}-{abs(hash(name))}.onnx_adapter", self.blocks,
                                      scales)
            self.adapters.load(str(path), name)
            path.unlink()  # loaded into memory; nothing to keep on disk
            self.loaded.append(name)
            if len(self.loaded) > self.KEEP:
                self.adapters.unload(self.loaded.pop(0))
        self.active = name

    def activate(self, generator) -> None:
        if self.active is not None:
            generator.set_active_adapter(self.adapters, self.active)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def contract_format(path: Path) -> str | None:
    """"int4" / "fp32" from the sidecar's provenance ("onnx int4"), when there is one."""
    sidecar = path / "lwdpo.json"
    if not sidecar.is_file():
        return None
    fmt = json.loads(sidecar.read_text(encoding="utf-8")).get("format", "")
    return fmt.split()[-1] if fmt else None
