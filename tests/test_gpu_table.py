"""benchmarks/gpu_table.py: model FLOPs against hand counts, card peaks, rates from dllogger
logs with warm-up left out, and the table's verdicts."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_table
from modeling import BertConfig
from tests.support import REPO_ROOT

LARGE = BertConfig.from_json_file(REPO_ROOT / "bert_configs" / "large.json")


def test_flops_match_the_physical_bounds_of_the_design():
    # BERT-large at 790 TFLOP/s (an H100's measured bf16 matmul rate): about 3,280 seq/s at
    # phase 1, 770 at phase 2 and 3,200 for SQuAD inference at 384.
    bounds = {w: 790e12 / gpu_table.flops_per_sequence(LARGE, w) for w in gpu_table.WORKLOADS}
    assert bounds["pretrain_p1"] == pytest.approx(3283, rel=1e-3)
    assert bounds["pretrain_p2"] == pytest.approx(774, rel=1e-3)
    assert bounds["squad_infer"] == pytest.approx(3206, rel=1e-3)
    assert bounds["squad_train"] == pytest.approx(3206 / 3, rel=1e-3)
    # one encoder layer at 128 tokens, forward, by hand: 4 HxH and 2 HxI matmuls, QK^T and PV
    h, i, s = 1024, 4096, 128
    layer = 2 * s * (4 * h * h + 2 * h * i) + 4 * s * s * h
    head = 2 * 20 * (h * h + h * 30528) + 2 * h * 2 + 2 * h * h
    assert gpu_table.flops_per_sequence(LARGE, "pretrain_p1") == 3 * (24 * layer + head)


def test_card_peaks():
    assert gpu_table.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_table.peak_tflops("NVIDIA H100 PCIe") == 756.5
    assert gpu_table.peak_tflops("NVIDIA H200") == 989.4
    assert gpu_table.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_table.peak_tflops("cpu") is None


def dllogger(path, events) -> None:
    path.write_text("".join(f"DLLL {json.dumps(e)}\n" for e in events))


def test_rates_leave_warm_up_out_and_verdicts(tmp_path):
    windows = [100.0, 1500.0, 1300.0, 1450.0]  # the first window holds compilation
    dllogger(
        tmp_path / "p1.json",
        [
            *(
                {
                    "type": "LOG",
                    "step": [0, k + 1],
                    "data": {"average_loss": 9.0, "training_sequences_per_second": r},
                }
                for k, r in enumerate(windows)
            ),
            {
                "type": "LOG",
                "step": [],
                "data": {"training_sequences_per_second": 90.0, "peak_memory_gib": 41.5},
            },
        ],
    )
    dllogger(
        tmp_path / "infer.json",
        [
            {
                "type": "LOG",
                "step": [],
                "data": {
                    "inference_sequences_per_second": 800.0,
                    "inference_sequences_per_second_warm": 2600.0,
                },
            }
        ],
    )
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(
        f"a\tpretrain_p1\tbf16\tfast\tok\t{tmp_path / 'p1.json'}\n"
        f"b\tsquad_infer\tbf16\tfast\tok\t{tmp_path / 'infer.json'}\n"
        f"c\tpretrain_p2\tfp8\tfast\tskipped: fp8 needs torchao\t{tmp_path / 'none.json'}\n"
        f"d\tsquad_train\tbf16\teager\ttimed out after 200 s\t{tmp_path / 'none.json'}\n"
    )
    rows = gpu_table.build_rows(manifest, LARGE, "NVIDIA H100 80GB HBM3", {"pretrain_p1": 1})
    assert rows[0]["rate"] == 1450.0 and rows[0]["verdict"] == "met"  # median of 1500, 1300, 1450
    assert rows[0]["peak_gib"] == 41.5
    assert rows[0]["mfu"] == pytest.approx(1450 * 240.6e9 / 989.4e12, rel=1e-3)
    assert rows[1]["rate"] == 2600.0 and rows[1]["verdict"] == "met"
    assert rows[2]["verdict"] == "skipped: fp8 needs torchao" and rows[2]["rate"] is None
    assert rows[3]["verdict"] == "timed out after 200 s"
    table = gpu_table.format_table(rows, "NVIDIA H100 80GB HBM3")
    assert table.splitlines()[1].split()[:3] == ["workload", "precision", "path"]
    assert "1,450.0" in table and "35.3%" in table and "met" in table
    cpu = gpu_table.build_rows(manifest, LARGE, "cpu", {})
    assert cpu[0]["verdict"] == "n/a (CPU)" and cpu[0]["mfu"] is None
