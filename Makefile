# Every target that runs code depends on `setup`, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned so a fresh machine takes the local CPU wheel instead of a multi-GB CUDA build.
# For a GPU machine: make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
SPACE ?= spaces/vimh.yaml

.PHONY: setup run test bench ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

run: setup
	$(BIN)/python -m search run $(SPACE)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench

ui: setup
	mlflow/serve

clean:
	rm -rf $(VENV) runs .pytest_cache
