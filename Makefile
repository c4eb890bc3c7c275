# neutrino: two commands do all the set-up.
#   make demo   - make the virtualenv, install, run a seed scenario
#   make test   - make the virtualenv, install (as root: the Debian packages too), run every test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
export NEUTRINO_STATE ?= $(CURDIR)/state

DEB_PACKAGES = openvswitch-switch iptables iproute2 bridge-utils dnsmasq-base busybox iputils-ping \
               ethtool net-tools conntrack postgresql tcpdump graphviz keepalived

.PHONY: demo test venv debs lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/neutrino demo

# As root, install what the real-tool tests need (only what is missing).
debs:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root: the real-tool tests will be skipped (CI runs as root and runs them)"; fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: $(STAMP) debs lint
	$(BIN)/pytest -q --durations=15 -n 2 --dist loadscope

clean:
	rm -rf $(VENV) state .pytest_cache .mypy_cache .ruff_cache

# OpenStack's own network API tests (Tempest 47.0.0's tempest.api.network) against a fresh neutrino
# server with dynamic credentials, in a virtualenv of their own (bench/tempest/.venv, made once);
# not part of `make test`. TEMPEST_ARGS=--plugin adds neutron_tempest_plugin.api.
.PHONY: tempest
tempest: $(STAMP)
	$(BIN)/python bench/tempest/run.py $(TEMPEST_ARGS)
