# make demo : set up .venv and run the main job offline (train on the embedded model + data, then
#             answer one prompt at three lambdas)
# make test : set up .venv and run the test suite (what CI runs)
.PHONY: venv demo test test-slow

venv:
	bash scripts/setup_venv.sh

demo: venv
	bash scripts/demo.sh

test: venv
	.venv/bin/python -m pytest -m "not slow" -q

test-slow: venv
	.venv/bin/python -m pytest -m slow -q
