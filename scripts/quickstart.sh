#!/usr/bin/env bash
# Quick start, first command of the README: install the CPU requirements (a no-op when they are
# already satisfied), then run the demo on the bundled sample text. Arguments go to demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh
exec "$PYTHON" demo.py "$@"
