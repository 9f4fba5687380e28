"""training.py: padding removal, precision stack, the optimizer step, optional compilation."""

from __future__ import annotations

import pytest
import torch

import modeling
from optimization import Lamb, parameter_groups
from tests.conftest import random_batch, tiny_config
from training import (
    make_precision,
    maybe_compile,
    micro_batch_size,
    optimizer_step,
    padding_multiple,
    trim_padding,
    trimmed_width,
)


def test_trim_padding_cuts_to_the_longest_row_rounded_up():
    input_ids, token_type_ids, mask = random_batch(3, 24)  # real lengths 24, 19, 14
    mask[0, 17:] = 0
    labels = torch.zeros(3, 24)
    nsp = torch.zeros(3)
    out = trim_padding([input_ids, token_type_ids, mask, labels, nsp], mask, 8)
    assert [t.shape for t in out] == [(3, 24)] * 4 + [(3,)]  # 19 rounds up to 24 = the full width
    mask[0, 9:] = 0
    mask[1, 10:] = 0
    mask[2, 12:] = 0
    out = trim_padding([input_ids, token_type_ids, mask, labels, nsp], mask, 8)
    assert [t.shape for t in out] == [(3, 16)] * 4 + [(3,)]  # longest 12, rounded up to 16
    assert torch.equal(out[0], input_ids[:, :16])
    assert trimmed_width(17, 24, 8) == 24 and trimmed_width(9, 512, 64) == 64
    assert padding_multiple(torch.device("cpu")) == 8


def test_optimizer_step_counts_and_zeroes():
    model = modeling.BertForPreTraining(tiny_config())
    optimizer = Lamb(parameter_groups(model), lr=1e-3)
    stack = make_precision("fp32", torch.device("cpu"))
    batch = random_batch()
    labels = torch.full_like(batch[0], -1)
    labels[:, 2] = 5
    stack.backward(model(*batch, labels, torch.tensor([0, 1, 0]))[0])
    parameters = [p for g in optimizer.param_groups for p in g["params"]]
    outcome = optimizer_step(optimizer, stack, parameters)
    assert not outcome.skipped and outcome.grad_norm is not None and outcome.grad_norm > 0
    assert all(p.grad is None for p in parameters)
    assert micro_batch_size(64, 4) == 16
    with pytest.raises(ValueError, match="--train_batch_size 10 is not divisible"):
        micro_batch_size(10, 4)
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        make_precision("fp16", torch.device("cpu"))


@pytest.mark.slow
def test_compiled_model_matches_the_eager_one():
    torch.manual_seed(0)
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = modeling.BertForPreTraining(config)
    compiled = maybe_compile(model, True)
    assert maybe_compile(model, False) is model
    batch = random_batch()
    labels = torch.full_like(batch[0], -1)
    labels[:, 3] = 7
    nsp = torch.tensor([0, 1, 0])
    fast = compiled(*batch, labels, nsp, num_masked=3)[0]
    fast.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    plain = model(*batch, labels, nsp, num_masked=3)[0]
    plain.backward()
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(grads[name], parameter.grad, rtol=0, atol=1e-5, msg=name)
