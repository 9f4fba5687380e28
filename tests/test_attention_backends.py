"""benchmarks/attention_backends.py on the CPU: every backend either runs and agrees with fp32
attention or says why it cannot; the unpadded (varlen) path's packing is checked against
per-sequence attention; lengths come from the shards when they have that width."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks import attention_backends as bench
from tests.support import write_shard_file


def test_every_backend_runs_or_says_why_and_agrees_with_fp32(tmp_path, capsys):
    out = tmp_path / "attention.json"
    argv = ["--batch", "3", "--seq", "32", "--heads", "2", "--head_size", "8", "--dtype", "fp32"]
    argv += ["--widths", "16", "32", "--steps", "2", "--warmup", "1", "--json", str(out)]
    assert bench.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    part1 = {r["backend"]: r for r in rows if r["part"] == 1}
    assert set(part1) == set(bench.BACKENDS)
    for name in ("auto", "math", "eager"):  # these run on every device
        assert part1[name]["status"] == "ok", part1[name]
    assert part1["auto"]["picked"] in ("math", "flash_attention", "efficient_attention", "unknown")
    for name, row in part1.items():
        if row["status"] != "ok":
            assert row["status"].startswith("unavailable: ") and len(row["status"]) > 20, row
            continue
        assert row["median_ms"] > 0 and row["real_tokens_per_s"] > 0
        if isinstance(row["errors"], dict):
            assert max(row["errors"].values()) < 1e-5, (name, row["errors"])
        else:  # only the flash kernel without a mask skips the comparison, when rows are padded
            assert name == "flash, no mask" and "padding" in row["errors"]
    widths = {(r["backend"], r["width"]) for r in rows if r["part"] == 2}
    assert ("math", 16) in widths and ("math", 32) in widths
    assert not any(r["backend"] == "flash, no mask" for r in rows if r["part"] == 2)
    printed = capsys.readouterr().out
    assert "part 1: one padded batch at S=32" in printed and "part 2:" in printed


def test_padded_rows_do_not_change_the_errors_of_a_masked_backend():
    """The math backend with the padding bias equals attention run row by row on the real
    tokens only (the independent definition of key-padding attention)."""
    args = bench.parse_args(["--heads", "2", "--head_size", "4", "--dtype", "fp32"])
    inputs = bench.Inputs(
        [5, 8, 2], 8, args, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(3)
    )
    out = bench.sdpa(inputs, torch.nn.attention.SDPBackend.MATH)
    for row, n in enumerate(inputs.lengths):
        q, k, v = (t[row, :, :n] for t in (inputs.q, inputs.k, inputs.v))
        expected = (q @ k.transpose(-1, -2) / math.sqrt(4)).softmax(-1) @ v
        torch.testing.assert_close(out[row, :, :n], expected, rtol=1e-5, atol=1e-6)
    assert inputs.padded and float(inputs.grad_out[0, :, 5:].abs().max()) == 0.0


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k):
    """Plain per-sequence attention over packed [T, nh, hd] tokens, for the packing test."""
    pieces = []
    for start, end in zip(cu_q[:-1].tolist(), cu_q[1:].tolist(), strict=True):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # [nh, n, hd]
        pieces.append(F.scaled_dot_product_attention(qs, ks, vs).transpose(0, 1))
    return torch.cat(pieces)


def test_varlen_packing_matches_masked_attention(monkeypatch):
    """The varlen path's gathers, offsets and scatter give masked attention's output on real
    rows, zeros on padded ones, and the same gradients (the kernel itself is CUDA-only, so a
    per-sequence reference stands in for it here)."""
    import torch.nn.attention.varlen as varlen_module

    monkeypatch.setattr(varlen_module, "varlen_attn", _reference_varlen)
    args = bench.parse_args(["--heads", "3", "--head_size", "4", "--dtype", "fp32"])
    lengths = [7, 2, 10, 4]
    inputs = bench.Inputs(
        lengths, 10, args, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(5)
    )
    reference = inputs.as_fp32()
    expected = bench.call(lambda x: bench.sdpa(x, torch.nn.attention.SDPBackend.MATH), reference)
    got = bench.call(bench.varlen, inputs)
    rows = inputs.attention_mask[:, None, :, None]
    torch.testing.assert_close(got * rows, expected * rows, rtol=1e-5, atol=1e-6)
    assert float((got * ~rows).abs().max()) == 0.0
    for name in ("q", "k", "v"):
        torch.testing.assert_close(
            getattr(inputs, name).grad, getattr(reference, name).grad, rtol=1e-5, atol=1e-6
        )


def _shard(path, lengths, seq):
    mask = np.zeros((len(lengths), seq), dtype=np.int8)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    write_shard_file(path, {"input_mask": mask})  # the lengths are all the rule reads


def test_lengths_come_from_shards_of_that_width_else_from_the_short_sequence_rule(tmp_path):
    _shard(tmp_path / "a.hdf5", [30, 12, 30], 32)
    _shard(tmp_path / "b.hdf5", [64, 64], 64)
    assert sorted(bench.shard_lengths(tmp_path, 32)) == [12, 30, 30]
    args = bench.parse_args(["--batch", "50", "--seq", "32", "--lengths_from", str(tmp_path)])
    lengths, source = bench.batch_lengths(args, torch.Generator().manual_seed(0))
    assert set(lengths) <= {12, 30} and len(lengths) == 50 and "3 rows" in source
    args = bench.parse_args(["--batch", "400", "--seq", "128", "--lengths_from", str(tmp_path)])
    lengths, source = bench.batch_lengths(args, torch.Generator().manual_seed(0))
    assert source == "short_seq_prob 0.1" and all(2 <= n <= 128 for n in lengths)
    short = sum(n < 128 for n in lengths)
    assert 20 <= short <= 60  # about a tenth of 400


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch", "0"], "argument --batch: must be a positive integer"),
        (["--warmup", "-1"], "argument --warmup: must be 0 or more"),
        (["--widths", "64", "0"], "argument --widths: must be a positive integer"),
        (["--lengths_from", "/nonexistent/shards"], "/nonexistent/shards: not a folder"),
    ],
)
def test_bad_arguments_are_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_a_shard_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "broken.hdf5").write_bytes(b"not hdf5")
    assert bench.main(["--lengths_from", str(tmp_path), "--batch", "1", "--seq", "8"]) == 2
    err = capsys.readouterr().err
    assert "broken.hdf5: not a shard with an input_mask" in err and "Traceback" not in err
