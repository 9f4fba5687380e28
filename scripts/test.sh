#!/usr/bin/env bash
# The test command of the README and of CI: install the test requirements (a no-op when they are
# already satisfied), then run the whole suite from the repository root. Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -k tokenization`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh --test
exec "$PYTHON" -m pytest -q "$@"
