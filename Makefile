# Two commands from a fresh clone: `make demo` runs the product, `make test` passes the tests.
# Everything lives in .venv (Python) and node_modules (JS); torch is pinned by constraints.txt.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.gradsight-installed
PORT    ?= 8888
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup build demo test lint pytest jstest e2e chromium bench clean

setup: $(STAMP) node_modules/.package-lock.json

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

$(STAMP): pyproject.toml constraints.txt package-lock.json
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

build: setup
	npm run --silent build

demo: build
	@echo ""
	@echo "gradsight demo: JupyterLab is starting on examples/quickstart.ipynb."
	@echo "Open the http://127.0.0.1:$(PORT)/lab/tree/quickstart.ipynb?token=... URL that Jupyter prints below."
	@echo ""
	cd examples && ../$(BIN)/jupyter lab quickstart.ipynb --no-browser --ip=127.0.0.1 --port=$(PORT) $(ROOT_FLAG)

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "chromium is missing: installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing and you are not root: install it (apt-get install chromium) and rerun"; exit 1; \
	  fi; }
	@command -v chromium >/dev/null 2>&1 || { echo "chromium still missing after install"; exit 1; }

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	npx --no-install tsc --noEmit
	npx --no-install biome check js tests/js

pytest: build
	$(BIN)/python -m pytest -m "not e2e"

jstest: setup
	npx --no-install vitest run

e2e: build chromium
	$(BIN)/python -m pytest -m e2e

# The whole suite: lint and types, Python unit tests, JS unit tests, real-browser tests.
test: build chromium lint
	$(BIN)/python -m pytest -m "not e2e"
	npx --no-install vitest run
	CI=true $(BIN)/python -m pytest -m e2e

bench: build
	$(BIN)/python benchmarks/bench_walk.py

clean:
	rm -rf $(VENV) node_modules src/gradsight/static .pytest_cache .mypy_cache .ruff_cache
