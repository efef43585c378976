# readiness-exporter: the README's two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= 127.0.0.1:9847
# Debian packages the test suite talks to (real servers and tools, never stand-ins).
DEBIAN_PACKAGES := prometheus prometheus-alertmanager prometheus-blackbox-exporter \
	redis-server postgresql postgresql-15-cron pgbackrest age chromium rabbitmq-server
PYTEST_ARGS ?=

.PHONY: run test venv system-deps services helm-tools chart-assets lint unit clean test-oldest \
	test-oldest-ci image-digest image-size

# Stamps, not the console script: `make run` installs the runtime only, and a later
# `make test` must still add the test extras.
TEST_STAMP := $(VENV)/.installed-test
RUNTIME_STAMP := $(VENV)/.installed-runtime

$(TEST_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(RUNTIME_STAMP)

venv: $(TEST_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

## run: install the runtime dependencies only, then serve the embedded default on loopback
run: $(RUNTIME_STAMP)
	$(BIN)/readiness-exporter serve --web.listen-address $(LISTEN)

## test: install what the suite needs, start the services it needs, run everything
test: system-deps venv services helm-tools lint unit

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

services:
	bash scripts/start-services.sh

helm-tools:
	bash scripts/fetch-helm.sh

chart-assets:
	bash scripts/sync-chart-assets.sh

lint: venv
	$(BIN)/ruff check exporter tests bench dashboards
	$(BIN)/mypy
	bash scripts/sync-chart-assets.sh --check

unit: venv
	$(BIN)/pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

## test-oldest: a separate venv with every dependency at its pyproject.toml lower bound
## (scripts/oldest_constraints.py), running OLDEST_TESTS there (default: tests/core and
## tests/transport, about 10 minutes); test-oldest-ci: the shorter subset .ci/run runs
## after `make test` (docs/decisions.md, "Duplicates and the oldest dependencies")
OLDEST_VENV ?= .venv-oldest
OLDEST_TESTS ?= tests/core tests/transport
OLDEST_CI_TESTS := tests/transport tests/core/test_config.py tests/core/test_config_limits.py \
	tests/core/test_webconfig.py tests/core/test_redaction.py
test-oldest: services
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install --quiet --upgrade pip
	$(PYTHON) scripts/oldest_constraints.py > $(OLDEST_VENV)/constraints.txt
	$(OLDEST_VENV)/bin/pip install --quiet -c $(OLDEST_VENV)/constraints.txt -e '.[test]'
	$(OLDEST_VENV)/bin/pip freeze > $(OLDEST_VENV)/installed.txt
	$(OLDEST_VENV)/bin/pytest -q -p no:cacheprovider -n 2 --dist loadgroup $(OLDEST_TESTS) \
		$(PYTEST_ARGS)

test-oldest-ci:
	$(MAKE) test-oldest OLDEST_TESTS="$(OLDEST_CI_TESTS)"

## image-digest: check the Dockerfile's pinned base digest against the registry
## (needs docker buildx and registry access; docker/check-digest --write re-pins it)
image-digest:
	sh docker/check-digest --verify

## image-size: build the image's venv outside a container and print its size budget
image-size: venv
	$(BIN)/python bench/image_size.py

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .pytest_cache .mypy_cache .ruff_cache state
