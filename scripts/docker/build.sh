#!/usr/bin/env bash
# Build the image (NVIDIA HEAD's arguments): bash scripts/docker/build.sh [URL=bert] [PUSH=none|push]
# The base image is the Dockerfile's FROM_IMAGE_NAME, or $FROM_IMAGE_NAME when set.
set -euo pipefail
cd "$(dirname "$0")/../.."
URL=${1:-bert}
PUSH=${2:-none}
build_args=()
[ -n "${FROM_IMAGE_NAME:-}" ] && build_args+=(--build-arg "FROM_IMAGE_NAME=$FROM_IMAGE_NAME")
docker build --network=host . --rm --pull --no-cache -t "$URL" "${build_args[@]}"
if [ "$PUSH" = "push" ]; then
  docker push "$URL"
elif [ "$PUSH" != "none" ]; then
  echo "build.sh: the second argument is push or none, got '$PUSH'" >&2
  exit 2
fi
