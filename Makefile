# make demo : set up .venv and run the main job offline (train on the embedded model + data, then
#             answer one prompt at three lambdas)
# make test : set up .venv, lint (ruff), check the import layers (import-linter) and run the test suite (what CI runs)
# make test-avx2 : the same suite against a llama.cpp built without AVX-512 (AVX2 + FMA + F16C), in
#             .llama-avx2/ shadowing .venv's build: no test may depend on the SIMD kernels
.PHONY: venv demo test test-slow test-avx2

venv:
	bash scripts/setup_venv.sh

demo: venv
	bash scripts/demo.sh

test: venv
	.venv/bin/ruff check .
	bash scripts/lint_imports.sh
	.venv/bin/python -m pytest -m "not slow" -q

test-slow: venv
	.venv/bin/python -m pytest -m slow -q

test-avx2: venv
	bash scripts/build_llama_avx2.sh
	PYTHONPATH=.llama-avx2 .venv/bin/python -m pytest -m "not slow" -q
