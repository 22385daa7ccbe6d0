#!/usr/bin/env bash
# The README's main job: a short QLoRA lambda-DPO run on the embedded SmolLM2-135M-Instruct and the
# shipped dataset, then the trained model's answer to one prompt at three lambda settings.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/demo}
rm -rf "$RUN"
start=$(date +%s)
.venv/bin/lwdpo-edge train --config train/configs/demo.yaml --output "$RUN"
.venv/bin/lwdpo-edge generate "$RUN" --prompt "How do I keep houseplants alive?" \
  --lambda helpfulness=1 --lambda conciseness=1 --lambda readability=1
echo "demo wall time: $(( $(date +%s) - start )) s"
