"""Export stage (installed as lwdpo_edge.export): a run folder -> GGUF / ONNX / merged HF, lambda contract inside.

    lwdpo-edge export RUN_DIR --format gguf [--quant f16|q8_0|q4_k_m] [--output PATH]
    lwdpo-edge export RUN_DIR --format onnx [--precision fp32|int4]
    lwdpo-edge export RUN_DIR --format hf

Python API (import from the modules; this package imports nothing heavy):

    pipeline.export_run(run_dir, fmt, quant, precision, output, verify, threads) -> ExportResult
    keys.read_lwdpo_metadata(gguf_path) -> dict         the lwdpo.* GGUF keys (struct only, no gguf-py)
    onnx.read_onnx_metadata(model_onnx) -> dict         the same facts from model.onnx metadata_props
    chat_template.lwdpo_chat_template(base, contract)   the template that renders the lambda header
    contract.ExportContract                             objectives, default lambda, header format

One idea per module: contract (the facts), keys (GGUF keys), chat_template, architectures (what is
supported), merge, convert (the converter hook), gguf, onnx, modelfile (Ollama), runtimes (HF,
llama.cpp, onnxruntime-genai behind one interface), verify, atomic (publication), progress, result
(what an export returns), pipeline, cli. See docs/export.md.
"""
