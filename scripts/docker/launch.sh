#!/usr/bin/env bash
# Start a container with this repository mounted at /workspace/bert and ./results at /results,
# with NVIDIA's docker flags. Both generations of NVIDIA's arguments work:
#
#   21.11: bash scripts/docker/launch.sh [CMD] [NV_VISIBLE_DEVICES] [DOCKER_BRIDGE]
#   HEAD:  bash scripts/docker/launch.sh [CMD] [NV_VISIBLE_DEVICES] [EXTRA_MOUNTS] [IMAGE] [DOCKER_BRIDGE]
#
# Defaults: CMD /bin/bash, NV_VISIBLE_DEVICES all, EXTRA_MOUNTS none, IMAGE bert, DOCKER_BRIDGE
# host. The first two arguments mean the same in both; four or five arguments are HEAD's. With
# exactly three, the third is HEAD's EXTRA_MOUNTS when it is empty or starts with "-" (docker
# options such as "-v /data:/data"), else 21.11's DOCKER_BRIDGE (a network name such as host or
# bridge). CMD and EXTRA_MOUNTS are split at whitespace (as NVIDIA's unquoted use did) and nothing
# else: no globbing, no other shell parsing. 21.11 also set LD_LIBRARY_PATH=/workspace/install/lib/
# for the Triton client libraries of its image; this image has none, so it is not set.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "launch.sh: $*" >&2; exit 2; }

[ $# -le 5 ] || fail "$# arguments are too many: 21.11 takes CMD NV_VISIBLE_DEVICES DOCKER_BRIDGE, HEAD CMD NV_VISIBLE_DEVICES EXTRA_MOUNTS IMAGE DOCKER_BRIDGE"
CMD=${1:-/bin/bash}
NV_VISIBLE_DEVICES=${2:-all}
EXTRA_MOUNTS=
IMAGE=bert
DOCKER_BRIDGE=host
if [ $# -eq 3 ]; then
  case "$3" in
    "" | -*) EXTRA_MOUNTS=$3 ;;  # HEAD's order
    *) DOCKER_BRIDGE=$3 ;;       # 21.11's order
  esac
elif [ $# -ge 4 ]; then
  EXTRA_MOUNTS=$3
  IMAGE=${4:-bert}
  DOCKER_BRIDGE=${5:-host}
fi
[[ $NV_VISIBLE_DEVICES =~ ^(all|[A-Za-z0-9-]+(,[A-Za-z0-9-]+)*)$ ]] ||
  fail "argument 2 NV_VISIBLE_DEVICES: '$NV_VISIBLE_DEVICES' is not all or a comma-separated list of GPU indices or UUIDs"
[[ $DOCKER_BRIDGE =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] ||
  fail "DOCKER_BRIDGE: '$DOCKER_BRIDGE' is not a docker network name (host, bridge, none, ...)"
[ -n "$IMAGE" ] || fail "argument 4 IMAGE is empty"

read -r -a cmd <<<"$CMD"
read -r -a extra <<<"$EXTRA_MOUNTS"
# docker reads --gpus as CSV: a list of devices must be quoted inside the value.
gpus="device=$NV_VISIBLE_DEVICES"
case "$NV_VISIBLE_DEVICES" in *,*) gpus="\"device=$NV_VISIBLE_DEVICES\"" ;; esac
mkdir -p results
docker run -it --rm --gpus "$gpus" --net="$DOCKER_BRIDGE" --shm-size=1g \
  --ulimit memlock=-1 --ulimit stack=67108864 -v "$PWD":/workspace/bert -v "$PWD/results":/results \
  "${extra[@]}" "$IMAGE" "${cmd[@]}"
