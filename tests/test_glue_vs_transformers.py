"""benchmarks/glue_vs_transformers.py: transformers' own fine-tuning loop per seed, its table
of means and sample standard deviations, and a run_glue.py column beside it; on a tiny model
exported as a Hugging Face folder and the bundled MRPC sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import glue_vs_transformers
from checkpoint import save_hf_folder
from modeling import BertForPreTraining
from tests.support import SAMPLE_MRPC, TINY_CONFIG, UNCASED_VOCAB, tiny_config


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory, transformers) -> Path:
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config())
    folder = tmp_path_factory.mktemp("tiny") / "hf"
    return save_hf_folder(folder, model.state_dict(), model.config, vocab_file=UNCASED_VOCAB)


def table(tmp_path: Path, tiny_hf: Path, *flags: str) -> dict:
    out = tmp_path / "table.json"
    status = glue_vs_transformers.main(
        [
            f"--model_dir={tiny_hf}",
            f"--data_dir={SAMPLE_MRPC}",
            "--epochs=1",
            "--batch=8",
            "--lr=1e-3",
            "--max_train_examples=24",
            f"--json={out}",
            *flags,
        ]
    )
    assert status == 0
    return json.loads(out.read_text())


def test_each_seed_is_a_row_and_the_summary_holds_mean_and_sample_std(tmp_path, tiny_hf):
    result = table(tmp_path, tiny_hf, "--seeds=3,1")
    assert (result["task"], result["implementation"]) == ("mrpc", "transformers")
    assert (result["train_examples"], result["dev_examples"]) == (24, 100)
    assert [run["seed"] for run in result["runs"]] == [3, 1]
    assert all(run["steps"] == 3 for run in result["runs"])  # 24 pairs, batches of 8
    for key in ("acc", "f1", "train_seconds", "sequences_per_second"):
        values = [run[key] for run in result["runs"]]
        assert result["summary"][key]["per_seed"] == values
        assert result["summary"][key]["mean"] == pytest.approx(np.mean(values))
        assert result["summary"][key]["std"] == pytest.approx(np.std(values, ddof=1))


def test_a_seed_repeats_its_run_and_another_seed_does_not(tmp_path, tiny_hf):
    first = table(tmp_path, tiny_hf, "--seeds=5")["runs"][0]
    again, other = table(tmp_path, tiny_hf, "--seeds=5,6")["runs"]
    for key in ("acc", "f1", "final_loss", "grad_norm_median"):
        assert again[key] == first[key]
    assert other["final_loss"] != first["final_loss"]


@pytest.mark.slow
def test_our_run_glue_output_is_read_into_a_column_beside_it(tmp_path, tiny_hf):
    import run_glue

    ours = tmp_path / "ours"
    status = run_glue.main(
        [
            "--task_name=mrpc",
            f"--data_dir={SAMPLE_MRPC}",
            f"--init_checkpoint={tiny_hf}",
            f"--vocab_file={UNCASED_VOCAB}",
            f"--config_file={TINY_CONFIG}",
            "--do_lower_case",
            "--do_train",
            "--do_eval",
            "--train_batch_size=16",
            "--num_train_epochs=1",
            "--seed=7",
            "--skip_checkpoint",
            "--no_cuda",
            f"--output_dir={ours}",
            f"--json-summary={ours}/dllogger.json",
        ]
    )
    assert status == 0
    written = json.loads((ours / "results.txt").read_text())
    result = table(tmp_path, tiny_hf, "--seeds=0,1", f"--ours={ours}")
    (row,) = result["ours"]["runs"]
    assert row["seed"] == 7
    assert (row["acc"], row["f1"]) == (written["acc"], written["f1"])
    assert row["train_seconds"] == written["train:latency"]
    assert result["ours"]["summary"]["acc"]["std"] == 0.0  # one run
    hf_mean = np.mean([run["acc"] for run in result["runs"]])
    assert result["difference_points"]["acc"] == pytest.approx(100 * (written["acc"] - hf_mean))
