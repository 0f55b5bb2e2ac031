# hfvision developer commands. Every target creates the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hfvision-installed
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test test-slow test-all demo style quality bench browser clean

# Re-install only when the dependency declarations change (idempotent and quick otherwise).
$(STAMP): pyproject.toml setup.cfg constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]' -c constraints.txt
	@touch $(STAMP)

setup: $(STAMP) browser

# Chromium for the browser tests, when apt is usable (skipped with a message otherwise).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "make setup: could not install chromium; browser tests will be skipped"; \
	else echo "make setup: chromium not found and apt-get unavailable; browser tests will be skipped"; fi

# Two workers (one per core), each test file on one worker so module fixtures are built once.
PYTEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -m "not slow and not network" -q -n $(PYTEST_WORKERS) --dist loadfile

test-slow: setup
	$(PY) -m pytest -m "slow" -q

test-all: setup
	$(PY) -m pytest -m "not network" -q

demo: $(STAMP)
	$(VENV)/bin/hfvision demo --output demo-output --overwrite

style: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests examples benchmarks
	$(VENV)/bin/ruff format src tests examples benchmarks

quality: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src tests examples benchmarks

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf demo-output .pytest_cache build dist src/*.egg-info
