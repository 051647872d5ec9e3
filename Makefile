# Two commands matter: `make run` (the offline demo gateway) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
# Two installs, each with its own stamp, so `make run` and `make test` can follow each other in any
# order: running needs the runtime dependencies only (plus RUN_EXTRAS, the optional extras the demo
# routes use: `aws` for bedrock, `gcp` for Vertex service accounts; none today); the test SDKs,
# pytest and ruff come with the `test` extra, installed by test, lint and fmt.
RUN_EXTRAS :=
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.$(if $(RUN_EXTRAS),[$(RUN_EXTRAS)])'
	touch $@

$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## Start mitmdump as a gateway on :$(PORT) with the demo routes, replaying the bundled cassettes
## (no keys, no network: ai_proxy_record_mode=none never contacts a provider).
run: $(RUN_STAMP)
	$(BIN)/mitmdump -s addon/ai_proxy.py --mode reverse:http://127.0.0.1:1 \
		--listen-host 127.0.0.1 -p $(PORT) --set flow_detail=0 \
		--set ai_proxy_config=addon/demo_routes.yaml --set ai_proxy_cassettes=fixtures/demo_cassettes \
		--set ai_proxy_record_mode=none $(ARGS)

## Run the whole test suite.
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(TEST_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info

.PHONY: claude-code

## Install the Claude Code CLI (npm @anthropic-ai/claude-code) into tests/.node (git-ignored) for the
## Claude Code end-to-end tests, which are skipped without it (AI_PROXY_CLAUDE_BIN may name another one).
CLAUDE_CODE_VERSION ?= 2.1
claude-code:
	npm install --prefix tests/.node --no-audit --no-fund @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)

.PHONY: codex

## Install the Codex CLI (npm @openai/codex) into tests/.node (git-ignored) for the Codex end-to-end
## tests on Responses API routes, which are skipped without it (AI_PROXY_CODEX_BIN may name another one).
CODEX_VERSION ?= 0.171
codex:
	npm install --prefix tests/.node --no-audit --no-fund @openai/codex@$(CODEX_VERSION)

.PHONY: bench bench-smoke bench-profile

## Benchmark (issue 6): fetches nginx, wrk and the Portkey gateway into bench/.scratch (git-ignored),
## measures direct / mitmdump / addon / Portkey interleaved (~15 min) and writes bench/results.md.
bench: $(RUN_STAMP)
	$(BIN)/python -m bench $(ARGS)

## The benchmark's smoke mode (Python stand-ins, a few hundred requests); the test suite runs it too.
bench-smoke: $(RUN_STAMP)
	$(BIN)/python -m bench --smoke --out bench/.scratch/smoke.md $(ARGS)

## Profile mitmdump + addon under load with py-spy (installed into the venv): bench/.scratch/profile.md.
bench-profile: $(RUN_STAMP)
	$(BIN)/pip install -q py-spy
	$(BIN)/python -m bench.profile $(ARGS)
