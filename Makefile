# hvp_mtl — the two commands a user needs:
#   make demo   the protocol's headline rows at one seed, ~15 min (sets up the environment on
#               first use); DEMO_ARGS="" runs the three-toolkit tables instead
#   make test   lint (ruff) and run the whole test suite (sets up the environment on first use)
#               PYTEST_ARGS='-m "not slow"' for the fast loop
#   make smoke-pretrain-only   the pre-training-only install (pip install .[pretrain], mmcv-lite)
#               in a fresh venv, then 4 iterations of the demo pre-training (CI runs it after test)
PY := .venv/bin/python
DEMO_ARGS ?= --headline
PYTEST_ARGS ?=

.PHONY: env demo test smoke-pretrain-only clean-env

env:
	@bash tools/setup_env.sh

demo: env
	$(PY) demo/run_demo.py $(DEMO_ARGS)

test: env
	$(PY) -m ruff check .
	$(PY) -m pytest tests -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

smoke-pretrain-only:
	bash tools/ci_pretrain_only.sh

clean-env:
	rm -rf .venv
