#!/usr/bin/env bash
# Start a container with this repository mounted at /workspace/bert (NVIDIA HEAD's arguments):
#   bash scripts/docker/launch.sh [CMD=bash] [NV_VISIBLE_DEVICES=all] [EXTRA_MOUNTS=] [IMAGE=bert] [DOCKER_BRIDGE=host]
# EXTRA_MOUNTS is passed to docker as is (e.g. "-v /data:/data"); results go to ./results.
set -euo pipefail
cd "$(dirname "$0")/../.."
CMD=${1:-bash}
NV_VISIBLE_DEVICES=${2:-all}
EXTRA_MOUNTS=${3:-}
IMAGE=${4:-bert}
DOCKER_BRIDGE=${5:-host}
mkdir -p results
read -r -a extra <<<"$EXTRA_MOUNTS"
docker run -it --rm --gpus "device=$NV_VISIBLE_DEVICES" --net="$DOCKER_BRIDGE" --shm-size=1g \
  --ulimit memlock=-1 --ulimit stack=67108864 -v "$PWD":/workspace/bert -v "$PWD/results":/results \
  "${extra[@]}" "$IMAGE" $CMD
