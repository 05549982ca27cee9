# Two front doors: `make run` (server with demo data) and `make test` (the whole suite).
# Both install what is missing: a virtualenv with the Python packages, the Cython kernels,
# and for tests the Debian packages of the real SIP peers.

PYTHON3 ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMPS  := .make
APT_GET := $(shell command -v apt-get 2>/dev/null)
# Debian packages the tests need: the real SIP peers (SIPp, baresip), Chromium for the web UI,
# and a CJK font so the Chinese pages render (and their screenshots can be read).
TEST_DEBS := sip-tester baresip-core chromium fonts-noto-cjk

.PHONY: run test build deps test-deps lint clean

run: build
	$(PY) -m callcenter demo $(ARGS)

test: build test-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: deps
	$(PY) -m ruff check .

build: deps
	$(PY) setup.py -q build_ext --inplace -j 2

deps: $(STAMPS)/venv

$(VENV)/bin/python:
	$(PYTHON3) -m venv $(VENV) || { $(APT_GET) update -q && $(APT_GET) install -y -q python3-venv python3-dev gcc && $(PYTHON3) -m venv $(VENV); }

$(STAMPS)/venv: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip setuptools wheel "Cython>=3" numpy
	$(PY) -m pip install -q --no-build-isolation -e '.[test]'
	@mkdir -p $(STAMPS) && touch $@

test-deps:
	@missing=""; for pkg in $(TEST_DEBS); do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(APT_GET) update -q && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -q $$missing; \
	fi

clean:
	rm -rf build $(STAMPS) native/*.c native/*.so native/*.html
