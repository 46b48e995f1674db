# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: demo test install clean

install: $(STAMP)

# torch is installed first and alone, pinned to the CPU build on disk, so that no later
# resolution step can pull a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/grainforge experiment demo --out $(DEMO_OUT) --jobs 2
	@echo "report: $(DEMO_OUT)/report.md"

# ruff (config in pyproject.toml) first, then the tests and the entry points' doctests; pytest's
# summary stays the last line.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs data/demo
