# All set-up lives here; every user-facing target builds what it needs first (idempotent: stamps skip work).
# The first interpreter of version $(1) that really runs: a pyenv shim exists for every installed version but fails
# unless that version is selected, so each candidate is tried.
find_python = $(shell for p in $$(command -v python$(1)) $$(pyenv root 2>/dev/null)/versions/$(1).*/bin/python$(1) \
    $$HOME/.pyenv/versions/$(1).*/bin/python$(1); do \
    "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(1)".split("."))))' 2>/dev/null \
    && echo "$$p" && break; done)
PYTHON311 ?= $(call find_python,3.11)
# The Lava environment needs Python 3.10; override with SNN2HW_PYTHON310=/path/to/python3.10.
SNN2HW_PYTHON310 ?= $(call find_python,3.10)
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP_MAIN := .venv/bin/pip install --no-cache-dir $(WHEELS)
PIP_LAVA := .venv-lava/bin/pip install --no-cache-dir $(WHEELS)

.PHONY: setup setup-main setup-lava demo test bench clean-envs

setup: setup-main setup-lava
setup-main: .venv/.stamp
setup-lava: .venv-lava/.stamp

.venv/.stamp: requirements/main.txt requirements/constraints-main.txt requirements/main-nodeps.txt pyproject.toml
	@test -n "$(PYTHON311)" || { echo "No Python 3.11 found: set PYTHON311=/path/to/python3.11"; exit 2; }
	test -x .venv/bin/python || $(PYTHON311) -m venv .venv
	$(PIP_MAIN) -q -c requirements/constraints-main.txt -r requirements/main.txt
	$(PIP_MAIN) -q --no-deps -r requirements/main-nodeps.txt
	$(PIP_MAIN) -q --no-deps --no-build-isolation -e .
	touch $@

.venv-lava/.stamp: requirements/lava-nodeps.txt requirements/lava.txt requirements/lava-last.txt
	@test -n "$(SNN2HW_PYTHON310)" || { echo "No Python 3.10 found: set SNN2HW_PYTHON310=/path/to/python3.10"; exit 2; }
	test -x .venv-lava/bin/python || $(SNN2HW_PYTHON310) -m venv .venv-lava
	$(PIP_LAVA) -q --no-deps -r requirements/lava-nodeps.txt
	$(PIP_LAVA) -q -r requirements/lava.txt
	$(PIP_LAVA) -q --no-deps -r requirements/lava-last.txt
	touch $@

demo: setup
	.venv/bin/snn2hw demo

test: setup
	.venv/bin/python -m pytest -q tests

bench: setup
	.venv/bin/python -m benchmarks $(BENCH_ARGS)

clean-envs:
	rm -rf .venv .venv-lava
