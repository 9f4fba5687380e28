#!/usr/bin/env bash
# The test command of the README and of CI: install the test requirements (a no-op when they are
# already satisfied), then run the whole suite from the repository root, one pytest-xdist worker
# per CPU core, each test module on one worker (its module fixtures are built once), the costly
# modules first (tests/conftest.py orders them; xdist would order them by test count); the 15
# slowest tests are listed at the end. Extra arguments go to pytest, e.g.
# `bash scripts/test.sh -k tokenization`, `-n 0` to run serially, `--strict-skips` (CI) to fail
# on a skip for any reason but the GPU or the user.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# PyTorch's CPU allocator backs buffers of 2 MB and more with transparent huge pages when this is
# set (Linux; ignored elsewhere): the CPU runs free and allocate the same large activations every
# step, and with 4 KB pages each reallocation pays page faults. The suite took about 13% less CPU
# time with it on the 2-core development machine; results are the same bit for bit.
export THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1}
bash scripts/install.sh --test
exec "$PYTHON" -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=15 "$@"
