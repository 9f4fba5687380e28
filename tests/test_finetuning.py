"""finetuning.py's training loop, in-process through run_glue.py on the bundled MRPC sample with
a tiny model: gradient accumulation against one full batch."""

from __future__ import annotations

import json

import pytest
import torch

import finetuning
import run_glue
import training
from checkpoint import torch_load
from tests.support import SAMPLE_MRPC, TINY_CONFIG, UNCASED_VOCAB


def train_glue(tmp_path, pretrained, config, accumulation: int, monkeypatch) -> tuple[list, dict]:
    """3 optimizer steps of 8 MRPC pairs as `accumulation` micro-batches: the pre-clip global
    gradient norm of each step (what `optimizer_step` clipped) and the fine-tuned weights."""
    norms: list[float] = []

    def recording_step(optimizer, stack, parameters, max_grad_norm=None):
        outcome = training.optimizer_step(optimizer, stack, parameters, max_grad_norm)
        norms.append(float(outcome.grad_norm))
        return outcome

    monkeypatch.setattr(finetuning, "optimizer_step", recording_step)
    out = tmp_path / f"ga{accumulation}"
    code = run_glue.main(
        [
            "--task_name=mrpc",
            f"--data_dir={SAMPLE_MRPC}",
            f"--vocab_file={UNCASED_VOCAB}",
            f"--config_file={config}",
            f"--init_checkpoint={pretrained}",
            "--do_lower_case",
            "--do_train",
            "--no_cuda",
            f"--output_dir={out}",
            f"--json-summary={out}/log.json",
            "--train_batch_size=8",
            f"--gradient_accumulation_steps={accumulation}",
            "--max_steps=3",
            "--learning_rate=1e-3",
        ]
    )
    assert code == 0
    return norms, torch_load(out / "pytorch_model.bin")["model"]


def test_accumulation_two_of_half_equals_one_full_batch(pretrained, tmp_path, monkeypatch):
    """The same 8 pairs per step as one batch or two of 4: the pre-clip gradient norms agree
    within 1e-6 (a sum of micro-batch losses instead of their mean doubles them, which the
    clipping at 1.0 and Adam's scale-free update would hide from the weights), and so do the
    weights after 3 steps."""
    config = json.loads(TINY_CONFIG.read_text()) | {
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    runs = [
        train_glue(tmp_path, pretrained, tmp_path / "config.json", ga, monkeypatch) for ga in (1, 2)
    ]
    (norms1, weights1), (norms2, weights2) = runs
    assert len(norms1) == len(norms2) == 3
    assert norms2 == pytest.approx(norms1, rel=1e-6)
    start = torch_load(pretrained)["model"]
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert float((weights1[name] - start[name]).abs().max()) > 1e-4  # it trained
    for key, value in weights1.items():
        torch.testing.assert_close(weights2[key], value, rtol=1e-6, atol=1e-6, msg=key)
