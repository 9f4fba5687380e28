"""training.py: padding removal, precision stack, the optimizer step, optional compilation."""

from __future__ import annotations

import pytest
import torch

import modeling
from optimization import Lamb, parameter_groups
from tests.support import random_batch, tiny_config
from training import (
    PRETRAINING_ROW_FILLS,
    make_precision,
    maybe_compile,
    micro_batch_size,
    optimizer_step,
    pad_rows,
    padding_multiple,
    trim_multiple,
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


def pretraining_batch(
    lengths: list[int], seq: int, pred: int, seed: int = 0, vocab: int = 30000
) -> list:
    """A pre-training batch [B, seq] whose rows hold `lengths` real tokens, `pred` of them masked
    per row (fewer in short rows), with random next-sentence labels."""
    generator = torch.Generator().manual_seed(seed)
    rows = len(lengths)
    input_ids = torch.zeros(rows, seq, dtype=torch.long)
    mask = torch.zeros(rows, seq, dtype=torch.long)
    labels = torch.full((rows, seq), -1, dtype=torch.long)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(1, vocab, (length,), generator=generator)
        mask[row, :length] = 1
        positions = torch.randperm(length, generator=generator)[: min(pred, length // 2)]
        labels[row, positions] = input_ids[row, positions]
    segments = (torch.arange(seq) >= seq // 2).long().expand(rows, seq) * mask
    nsp = torch.randint(0, 2, (rows,), generator=generator)
    return [input_ids, segments.contiguous(), mask, labels, nsp]


def training_step_inputs(batch: list, micro_batch: int) -> tuple[list, int]:
    """What run_pretraining's loop does to a batch under --compile, before the forward."""
    batch = trim_padding(batch, batch[2], trim_multiple(torch.device("cpu"), compiled=True))
    batch = pad_rows(batch, micro_batch, PRETRAINING_ROW_FILLS)
    return batch, int((batch[3] != -1).sum())


def test_rows_without_labels_leave_the_loss_unchanged():
    model = modeling.BertForPreTraining(
        tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    batch = pretraining_batch([30, 17, 9], 64, 10)
    padded = pad_rows(batch, 5, PRETRAINING_ROW_FILLS)
    assert [t.shape[0] for t in padded] == [5] * 5 and pad_rows(batch, 3, [0] * 5)[0] is batch[0]
    plain = model(*batch)
    extended = model(*padded)
    torch.testing.assert_close(extended[0], plain[0], rtol=0, atol=1e-6)  # total, MLM, NSP
    torch.testing.assert_close(extended[2], plain[2], rtol=0, atol=1e-6)
    assert trim_multiple(torch.device("cpu"), False) == 8
    assert trim_multiple(torch.device("cpu"), True) == 64


@pytest.mark.slow
def test_compiled_layers_do_not_recompile_after_warm_up():
    """Phase 1 (128) and phase 2 (512) batches of varying real lengths, trimmed to multiples of
    64, and short last batches: every width compiles once during warm-up, then no step
    recompiles. Dynamo's graph counters are read; the backend ("eager") does not change when
    dynamo compiles, only how long a compile takes."""
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    model = modeling.BertForPreTraining(tiny_config(vocab_size=512))
    assert maybe_compile(model, True, backend="eager") is model
    generator = torch.Generator().manual_seed(0)
    micro_batch = 3
    compiled_widths = set()
    for seq, pred in ((128, 20), (512, 80)):
        widths = range(64, seq + 1, 64)
        warm_up = [pretraining_batch([w] * micro_batch, seq, pred, vocab=512) for w in widths]
        lengths = [
            torch.randint(10, seq + 1, (micro_batch,), generator=generator).tolist()
            for _ in range(8)
        ]
        lengths += [[seq - 3, 40], [25]]  # short last batches of a shard
        steps = [
            pretraining_batch(rows, seq, pred, seed=i, vocab=512) for i, rows in enumerate(lengths)
        ]
        for batches in (warm_up, steps):
            before = counters["stats"]["unique_graphs"]
            seen = set()
            for batch in batches:
                inputs, num_masked = training_step_inputs(batch, micro_batch)
                seen.add(tuple(inputs[0].shape))
                model(*inputs, num_masked=num_masked)[0].backward()
            compiled = counters["stats"]["unique_graphs"] - before
            if batches is warm_up:  # one graph per new width, shared by both layers
                assert compiled == len(set(widths) - compiled_widths)
                compiled_widths |= set(widths)
            else:
                assert compiled == 0, f"recompiled at phase {seq}: {seen}"
                assert len(seen) > 1  # the steps did vary in width
    assert counters["frames"]["ok"] == counters["frames"]["total"]  # no frame fell back


@pytest.mark.slow
def test_compiled_model_matches_the_eager_one():
    torch.manual_seed(0)
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    plain_model = modeling.BertForPreTraining(config)
    model = modeling.BertForPreTraining(config)
    model.load_state_dict(plain_model.state_dict())
    assert maybe_compile(model, True) is model and maybe_compile(plain_model, False) is plain_model
    names = [name for name, _ in plain_model.named_parameters()]
    assert [name for name, _ in model.named_parameters()] == names  # no wrapper prefix
    for lengths in ([64, 30, 12], [100, 128, 7]):  # two widths: 64 and 128
        batch, num_masked = training_step_inputs(pretraining_batch(lengths, 128, 20), 4)
        fast = model(*batch, num_masked=num_masked)
        plain = plain_model(*batch, num_masked=num_masked)
        fast[0].backward()
        plain[0].backward()
        for a, b in zip(fast, plain, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        named = dict(plain_model.named_parameters())
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(
                parameter.grad, named[name].grad, rtol=1e-4, atol=1e-5, msg=name
            )
        model.zero_grad()
        plain_model.zero_grad()


def test_precision_resolution():
    from training import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision(False, False, None, cpu) == ("fp32", True)  # NVIDIA: TF32 allowed
    assert resolve_precision(False, False, "auto", cpu) == ("fp32", True)  # TF32 where it exists
    assert resolve_precision(False, False, "fp32", cpu) == ("fp32", False)
    assert resolve_precision(False, False, "tf32", cpu) == ("fp32", True)
    assert resolve_precision(True, False, "auto", cpu) == ("fp16", True)
    assert resolve_precision(False, True, "bf16", cpu) == ("bf16", True)
    with pytest.raises(ValueError, match="conflicting precision flags: fp16, bf16"):
        resolve_precision(True, True)
    with pytest.raises(ValueError, match="conflicting"):
        resolve_precision(False, True, "fp32")
