# All set-up lives here; every user-facing target builds what it needs first (idempotent: stamps skip work).
PYTHON311 ?= $(shell command -v python3.11 2>/dev/null || echo python3)
# The Lava environment needs Python 3.10; override with SNN2HW_PYTHON310=/path/to/python3.10.
SNN2HW_PYTHON310 ?= $(shell command -v python3.10 2>/dev/null || ls /root/.pyenv/versions/3.10.*/bin/python3.10 2>/dev/null | head -n1)
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP_MAIN := .venv/bin/pip install --no-cache-dir $(WHEELS)
PIP_LAVA := .venv-lava/bin/pip install --no-cache-dir $(WHEELS)

.PHONY: setup setup-main setup-lava demo test bench clean-envs

setup: setup-main setup-lava
setup-main: .venv/.stamp
setup-lava: .venv-lava/.stamp

.venv/.stamp: requirements/main.txt requirements/constraints-main.txt requirements/main-nodeps.txt pyproject.toml
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
	.venv/bin/python -m benchmarks

clean-envs:
	rm -rf .venv .venv-lava
