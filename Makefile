# Every target that runs code depends on `setup`, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned so a fresh machine takes the local CPU wheel instead of a multi-GB CUDA build.
# For a GPU machine: make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
# The TORCH_SPEC the venv's torch came from. Another one given (make setup TORCH_SPEC=..., or in
# the environment) reinstalls torch: an installed 2.13.0+cpu satisfies torch==2.13.0 from any
# index, so pip alone would keep it. Without one given, the venv keeps the torch it has.
TORCH_RECORD := $(VENV)/.torch-spec
TORCH_GIVEN := $(filter command line environment,$(origin TORCH_SPEC))
ifneq ($(TORCH_GIVEN),)
ifneq ($(TORCH_SPEC),$(shell cat $(TORCH_RECORD) 2>/dev/null))
.PHONY: $(STAMP)
endif
endif
SPACE ?= spaces/vimh.yaml

.PHONY: setup browser postgres slurm run test bench ui clean clean-mlflow

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	set -e; \
	if [ -n '$(TORCH_GIVEN)' ] && [ "$$(cat $(TORCH_RECORD) 2>/dev/null)" != '$(TORCH_SPEC)' ]; then \
	  $(BIN)/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps $(TORCH_SPEC); fi; \
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_SPEC); \
	if [ -n '$(TORCH_GIVEN)' ] || [ ! -s $(TORCH_RECORD) ]; then echo '$(TORCH_SPEC)' > $(TORCH_RECORD); fi
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test,cluster]"
	touch $(STAMP)

run: setup
	$(BIN)/python -m search run $(SPACE)

# The UI test drives a real headless Chromium (Debian packages chromium + chromium-driver);
# installed here when missing and running as root, else the test fails and says how to install.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else \
	  echo "make: the UI test needs chromium and chromedriver: apt-get install chromium chromium-driver" >&2; \
	fi

# tests/deploy runs a PostgreSQL server (Debian package postgresql; initdb lives off PATH in
# /usr/lib/postgresql/N/bin) and a two-node SLURM cluster on this machine (slurmd, slurmctld,
# slurm-client, munge); installed the same way. On a machine with systemd, installing them also
# starts their system services (the tests use none of them: they start their own, on free ports).
PG_INITDB ?= /usr/lib/postgresql/*/bin/initdb
SBIN ?= /usr/sbin:/sbin
postgres:
	@command -v psql >/dev/null && { command -v initdb >/dev/null || ls $(PG_INITDB) >/dev/null 2>&1; } || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	else \
	  echo "make: the PostgreSQL test needs initdb, postgres and psql: apt-get install postgresql" >&2; \
	fi

slurm:
	@PATH="$$PATH:$(SBIN)"; for b in sbatch scontrol slurmctld slurmd munged mungekey; do \
	  command -v $$b >/dev/null || missing=1; done; [ -z "$$missing" ] || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmd slurmctld slurm-client munge; \
	else \
	  echo "make: the SLURM test needs slurmd, slurmctld, sbatch and munge: apt-get install slurmd slurmctld slurm-client munge" >&2; \
	fi

test: setup browser postgres slurm
	$(BIN)/python -m pytest -q

# Every bench/*.py script in turn (bench/ is not a package; _*.py are shared helpers): each prints
# a table and writes bench/results/<name>.json. About 2 hours on 2 cores.
bench: setup
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

ui: setup
	mlflow/serve

# What `make` installs and what searches write next to it. Never the MLflow store: it holds every
# search's results, and removing runs/ must not lose them (see clean-mlflow).
CLEANED := $(VENV) runs .pytest_cache
STORE := mlflow/mlflow.db mlflow/artifacts

clean:
	@echo "make clean: removing $(CLEANED) (keeping the MLflow store $(STORE); make clean-mlflow removes it)"
	rm -rf $(CLEANED)

# Asks first unless FORCE=1; a non-interactive run without FORCE=1 keeps the store and fails.
clean-mlflow:
	@if [ "$(FORCE)" != 1 ]; then \
	  printf 'make clean-mlflow: delete the MLflow store %s (the runs of every search)? [y/N] ' "$(STORE)"; \
	  read -r answer || answer=; \
	  case "$$answer" in y|Y|yes) ;; *) echo "make clean-mlflow: kept $(STORE)"; exit 1 ;; esac; \
	fi
	@echo "make clean-mlflow: removing $(STORE)"
	rm -rf $(STORE)
