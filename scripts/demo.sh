#!/usr/bin/env bash
# The README's main job, on the embedded SmolLM2-135M-Instruct and the shipped dataset, offline:
#   1. train the steering recipe (train/configs/demo.yaml: one adapter per objective, mixed by lambda)
#      and choose its steering strength on the held-out prompts (lwdpo-edge calibrate),
#   2. answer one prompt at each objective's vertex and at the centre (transformers, from the run folder),
#   3. export it for llama.cpp (GGUF base + one LoRA file per objective),
#   4. a scripted chat turn through the runtime API on the export, one answer per objective,
#   5. print how to open the chat app on it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/demo}
PROMPT=${PROMPT:-"How do I keep houseplants alive?"}
rm -rf "$RUN"
start=$(date +%s)
.venv/bin/lwdpo-edge train --config train/configs/demo.yaml --output "$RUN"
trained=$(date +%s)
.venv/bin/lwdpo-edge generate "$RUN" --prompt "$PROMPT" --max-new-tokens 96 \
  --lambda helpfulness=1 --lambda conciseness=1 --lambda readability=1 \
  --lambda helpfulness=1,conciseness=1,readability=1
.venv/bin/lwdpo-edge export "$RUN" --format gguf --quant q8_0
model=$(ls -t "$RUN"/export/*.gguf | grep -v '\.lora\.gguf$' | head -1)
.venv/bin/python examples/python_api.py "$model" "$PROMPT"
echo
echo "train: $(( trained - start )) s; whole demo: $(( $(date +%s) - start )) s"
echo "Chat with it (sliders per objective):  .venv/bin/lwdpo-edge chat $model"
echo "Serve it (OpenAI-compatible):          .venv/bin/lwdpo-edge serve $model"
