# make install | demo | test | test-slow | bench
# PYTHON=... picks the interpreter; by default the newest supported one that really runs.
# VENV=... picks the virtual environment folder (default .venv).

CANDIDATES := python3.14 python3.13 python3.12 $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12) python3.11 python3
PYTHON ?= $(shell for p in $(CANDIDATES); do \
    $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_FLAGS ?= --durations=25
# Tests run in 2 processes, one test file each (pytest-xdist): XLA compiles on one core, so two
# files compiling at once use both (3.12 stack, cold compilation cache, 2 cores: 21 min in one
# process, 11:56 in two, 11:54 in three).
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints/py311.txt constraints/py312.txt
	@test -n "$(PYTHON)" || { echo "no Python >= 3.11 found; pass PYTHON=/path/to/python3.12"; exit 1; }
	@echo "using $(PYTHON) ($$($(PYTHON) -c 'import sys; print(sys.version.split()[0])'))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints/py$$($(PY) -c 'import sys; print("%d%d" % sys.version_info[:2] if sys.version_info < (3, 12) else "312")').txt -e '.[test,notebooks,survey]'
	@touch $(STAMP)

# The paper's toy from the command line: simulate data at the paper's truth, fit by NUTS, and
# end with the plain-language report (truth vs posterior, the diagnostics verdict, the files).
demo: install
	$(VENV)/bin/ppl-bmc simulate paper_toy --out results/demo/data --force
	$(VENV)/bin/ppl-bmc fit paper_toy --data results/demo/data --out results/demo/fit --force

# NOTEBOOKS= (empty) leaves the notebooks out (CI runs them on the primary stack only).
NOTEBOOKS ?= notebooks

test: install
	PPL_BMC_QUICK=1 $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_FLAGS) tests $(NOTEBOOKS) --nbmake

test-slow: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m slow $(PYTEST_FLAGS) tests

bench: install
	$(PY) benchmarks/bench_toy_adjoints.py
	$(PY) benchmarks/bench_csda.py
	$(PY) benchmarks/bench_muography.py

clean:
	rm -rf $(VENV) results data .pytest_cache
