"""scripts/gpu_check.sh in its dry-run mode: the same stages on the CPU with the tiny config,
and the one table with a row for every workload, precision and path."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks.gpu_table import WORKLOADS
from tests.support import REPO_ROOT, launcher_env

pytestmark = pytest.mark.slow(seconds=120)


def test_dry_run_produces_the_table_with_every_row(sample_shards, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = launcher_env(
        DRY_RUN="1", WORK=str(work), OMP_NUM_THREADS="1", SAMPLE_SHARDS=str(sample_shards)
    )
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    names = {p.name for p in out.iterdir()}
    assert names == {
        "table.txt",
        "summary.json",
        "gpu_check.log",
        "gpu_tests.txt",
        "runs.txt",
        "harness.json",
        "profile_p1.txt",
        "attention.json",
    }  # at most 8 files come back
    rows = json.loads((out / "summary.json").read_text())["rows"]
    combinations = {(r["workload"], r["precision"], r["path"]) for r in rows}
    expected = {
        (w, p, path)
        for w in WORKLOADS
        for p, path in [
            ("bf16", "fast"),
            ("bf16", "eager"),
            ("fp16", "fast"),
            ("fp16", "eager"),
            ("fp8", "fast"),
        ]
    }
    expected.add(("pretrain_p2", "bf16", "eager+bins"))
    assert combinations == expected and len(rows) == len(expected)
    for row in rows:
        if row["precision"] == "bf16":  # ran on the CPU through the entry scripts
            assert row["status"] == "ok" and row["rate"] > 0, row
            assert row["verdict"] == "n/a (CPU)"
        else:  # refused on a CPU, in one phrase
            assert row["status"].startswith(f"skipped: {row['precision']} needs"), row
    table = (out / "table.txt").read_text().splitlines()
    assert table[1].split()[:4] == ["workload", "precision", "path", "seq/s"]
    assert len(table) == 3 + len(expected)
    assert (
        "passed" in (out / "gpu_tests.txt").read_text()
        or "skipped" in (out / "gpu_tests.txt").read_text()
    )
    harness = json.loads((out / "harness.json").read_text())["rows"]
    assert any(r["name"] == "ours compiled + compiled LAMB" for r in harness)
    assert "aten::" in (out / "profile_p1.txt").read_text()
    attention = json.loads((out / "attention.json").read_text())["rows"]
    assert {r["backend"] for r in attention if r["status"] == "ok"} >= {"auto", "math", "eager"}
    assert "part 1: one padded batch" in (out / "gpu_check.log").read_text()
