#!/usr/bin/env bash
# Build llama-cpp-python WITHOUT AVX-512 (AVX2 + FMA + F16C only, the instruction set of many laptops and
# CI machines) into .llama-avx2/, beside the normal build in .venv. `make test-avx2` then runs the
# suite with this build shadowing .venv's (PYTHONPATH), to check that no test depends on the SIMD
# kernels llama.cpp was compiled with (docs/testing.md). ~6-11 min on 2 cores. --no-cache-dir: pip would
# otherwise reuse its cached native wheel of the same version (the cache key ignores CMAKE_ARGS).
set -euo pipefail
cd "$(dirname "$0")/.."
target=.llama-avx2
version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('llama_cpp_python'))")
if [ -f "$target/.built-$version" ]; then
  exit 0
fi
rm -rf "$target"
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" \
  .venv/bin/python -m pip install -q --no-deps --no-cache-dir --no-binary llama-cpp-python --target "$target" \
  "llama-cpp-python==$version"
touch "$target/.built-$version"
