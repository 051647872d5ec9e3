# Two commands matter: `make run` (the offline demo gateway) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080

.PHONY: run test lint fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

## Start mitmdump as a gateway on :$(PORT) with the built-in demo routes (a local provider emulator, no keys).
run: $(STAMP)
	$(BIN)/mitmdump -s addon/ai_proxy.py --mode reverse:http://127.0.0.1:1 \
		--listen-host 127.0.0.1 -p $(PORT) --set flow_detail=0 $(ARGS)

## Run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info
