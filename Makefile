# jupyter-spark-openstack — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed

.PHONY: help demo demo-openstack test test-fast bench lint install check-java check-test-prereqs image clean

help:
	@echo "make demo            JupyterHub on 127.0.0.1: log in, get your own Spark cluster + PySpark kernel"
	@echo "make demo-openstack  the same hub with the openstack provisioner against the bundled emulator"
	@echo "make test            set up .venv and run the whole test suite"
	@echo "make bench           run the benchmarks in bench/ and print their figures"

check-java:
	@command -v java >/dev/null 2>&1 || { echo >&2 "error: 'java' not found. Spark needs Java 17 or 21: apt-get install openjdk-17-jre-headless (or set JAVA_HOME and PATH)"; exit 1; }
	@java -version 2>&1 | grep -Eq 'version "(1[7-9]|2[0-9])' || { echo >&2 "error: Spark 4 needs Java 17 or newer; 'java -version' says: $$(java -version 2>&1 | head -1)"; exit 1; }
	@command -v javac >/dev/null 2>&1 || [ -x "$$(dirname "$$(readlink -f "$$(command -v java)")")/javac" ] || { echo >&2 "error: 'javac' not found. The Spark UI guard (a per-cluster token on every Spark UI) is compiled once with the JDK: apt-get install openjdk-17-jdk-headless"; exit 1; }

# Everything `make test` needs that pip cannot install, checked before anything is built.
check-test-prereqs: check-java
	@missing=""; \
	command -v node >/dev/null 2>&1 || missing="$$missing\n  node and npm (the JupyterLab extension's build): apt-get install nodejs npm"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing\n  npm: apt-get install npm"; \
	[ -x /usr/bin/chromium ] || missing="$$missing\n  /usr/bin/chromium (the browser tests drive Debian's chromium): apt-get install chromium"; \
	{ [ -x /usr/sbin/useradd ] || command -v useradd >/dev/null 2>&1; } || missing="$$missing\n  useradd (the multi-user tests create system accounts): apt-get install passwd"; \
	{ [ -x /usr/sbin/debootstrap ] || command -v debootstrap >/dev/null 2>&1; } || missing="$$missing\n  debootstrap (the machine image): apt-get install debootstrap"; \
	command -v systemd-nspawn >/dev/null 2>&1 || missing="$$missing\n  systemd-nspawn (the machine image): apt-get install systemd-container"; \
	{ [ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1; } || missing="$$missing\n  haproxy (the TLS tests run the head's real TLS terminator): apt-get install haproxy"; \
	{ [ -x /usr/sbin/nft ] || command -v nft >/dev/null 2>&1; } || missing="$$missing\n  nft (the emulator enforces security groups on its tenant network): apt-get install nftables"; \
	[ "$$(id -u)" = 0 ] || missing="$$missing\n  root: the multi-user tests run a hub as root with real system accounts (CI runs as root)"; \
	if [ -n "$$missing" ]; then printf >&2 "error: make test needs what pip cannot install:$$missing\n(bash .ci/run installs them)\n"; exit 1; fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel

# Editable install for development; the data files (server-extension config, labextension)
# are linked into the venv the way `pip install .` would place them.
$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PIP) install -e ".[test]"
	@# (jupyter_server only enables an extension its config already lists: place the config file)
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d && cp jupyter-config/jupyter_server_config.d/jupyter_spark_openstack.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	$(VENV)/bin/jupyter server extension enable --sys-prefix jupyter_spark_openstack >/dev/null
	@# editable installs place no data files: link the built lab extension where JupyterLab looks
	mkdir -p $(VENV)/share/jupyter/labextensions && rm -rf $(VENV)/share/jupyter/labextensions/jupyter-spark-openstack && ln -s "$(CURDIR)/jupyter_spark_openstack/labextension" $(VENV)/share/jupyter/labextensions/jupyter-spark-openstack
	@touch $(STAMP)

install: $(STAMP)

test: check-test-prereqs install
	$(PY) -m pytest -ra $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -ra -m "not spark and not hub and not browser" $(PYTEST_ARGS)

demo: check-java install
	$(PY) -m jupyter_spark_openstack.demo

demo-openstack: check-java install
	$(PY) -m jupyter_spark_openstack.demo --provisioner openstack

bench: check-java install
	$(PY) bench/run_all.py

lint: install
	$(VENV)/bin/ruff check jupyter_spark_openstack tests bench

clean:
	rm -rf build dist *.egg-info .pytest_cache test-artifacts

# The machine image of the emulator's container boot backend (issue 11): Debian bookworm by
# debootstrap from this machine's apt mirror, cached in /var/cache/jupyter-spark-openstack/images
# and rebuilt only when its recipe changes. Root only. IMAGE_CACHE=DIR to cache elsewhere.
.PHONY: image
image: install
	$(PY) -m jupyter_spark_openstack.testing.machines.image build $(if $(IMAGE_CACHE),--cache "$(IMAGE_CACHE)")
