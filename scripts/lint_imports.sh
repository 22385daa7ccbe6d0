#!/usr/bin/env bash
# Check the import layers written in pyproject.toml ([tool.importlinter], docs/design.md) with
# import-linter. The stage folders train/, export/ and apps/ become lwdpo_edge.train, .export and .apps
# only in the installed layout (package-dir in pyproject.toml), which import-linter must see: the
# package is installed into a temporary folder (a few seconds, no dependencies) and checked there.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
layout=$(mktemp -d)
trap 'rm -rf "$layout"' EXIT
.venv/bin/python -m pip install -q --no-deps --no-build-isolation --target "$layout" . >"$layout/.pip.log" 2>&1 \
  || { cat "$layout/.pip.log" >&2; exit 1; }
cd "$layout"
PYTHONPATH="$layout" "$repo/.venv/bin/lint-imports" "$repo/pyproject.toml" --no-cache
