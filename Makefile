# Every target creates and uses .venv on its own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow lint bench bench-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,postgres]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m matcher.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check matcher tests benchmarks
	$(BIN)/ruff format --check matcher tests benchmarks
	$(BIN)/mypy matcher

# clkhash 0.18.3 pins cryptography<41 (matcher needs >=42); it runs fine with a newer one,
# so it is installed without its pins. It is an anchor for benchmarks only.
bench-deps: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,postgres,bench]'
	$(BIN)/python -m pip install -q --no-deps 'clkhash==0.18.3'

bench: bench-deps
	$(BIN)/python benchmarks/encode.py --json --repeat 3
	$(BIN)/python benchmarks/quality.py --json
	$(BIN)/python benchmarks/similarity.py --json
	$(BIN)/python benchmarks/scale.py --json
	$(BIN)/python benchmarks/service.py --json

clean:
	rm -rf $(VENV) build *.egg-info
