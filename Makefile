# hvp_mtl — the two commands a user needs:
#   make demo   run the main job (sets up the environment on first use)
#   make test   lint (ruff) and run the whole test suite (sets up the environment on first use)
#               PYTEST_ARGS='-m "not slow"' for the fast loop
PY := .venv/bin/python
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: env demo test clean-env

env:
	@bash tools/setup_env.sh

demo: env
	$(PY) demo/run_demo.py $(DEMO_ARGS)

test: env
	$(PY) -m ruff check .
	$(PY) -m pytest tests -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

clean-env:
	rm -rf .venv
