"""Held-out evaluation of pre-training: masked-LM and next-sentence loss and accuracy.

Owns which samples are evaluated (the first `max_samples` of a folder of shards, files in
sorted order, the same every time and after a resume, split across ranks), running the model
over them without touching training, and reducing the sums over ranks into Google's four
metrics, logged as `eval_masked_lm_loss` (mean over the masked tokens), `eval_masked_lm_accuracy`
(fraction of the masked tokens predicted exactly), `eval_next_sentence_loss` and
`eval_next_sentence_accuracy` (over the samples). Evaluation draws no random number, computes
no gradient and reads its own copy of the data, so a run with it trains exactly as one without.
`run_pretraining.py` decides when to evaluate (`--eval_dir`, `--eval_every`, `--do_eval`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

import cli
import distributed
import lddl_data
from errors import UsageError, refuse_if_nothing_usable
from pretraining_data import (
    DynamicMasking,
    PretrainingBatch,
    PretrainingShard,
    ShardChecks,
    ShardError,
    masked_instances,
    remask,
    shard_shape,
)
from training import PrecisionStack, evaluating, trim_multiple, trim_padding

if TYPE_CHECKING:
    from modeling import BertConfig
    from pretraining_checkpoints import PretrainOptions, Training

logger = logging.getLogger("run_pretraining")

#: The metric keys, in the order they are logged (Google's metric names, prefixed).
EVAL_KEYS = (
    "eval_masked_lm_loss",
    "eval_masked_lm_accuracy",
    "eval_next_sentence_loss",
    "eval_next_sentence_accuracy",
)
#: Seed of the one masking of a held-out folder without masks (LDDL parquet written for
#: dynamic masking), so that every evaluation scores the same masked tokens.
EVAL_MASKING_SEED = 12345
#: File names that hold HDF5 shards; a held-out folder's shards may have any such name
#: (NVIDIA's data preparation writes them as `*_test_*.hdf5` in a `test` folder).
HDF5_SUFFIXES = (".hdf5", ".h5")


def eval_files(eval_dir: str | os.PathLike) -> list[Path]:
    """The held-out shards of a folder, sorted: its parquet files in an LDDL folder, else its
    HDF5 files whatever their names, except that in a folder that also holds training shards
    (names with "training", as the data pipeline writes both kinds into one folder) only the
    "test" ones are held out. A ShardError when there are none."""
    folder = Path(eval_dir)
    if lddl_data.is_parquet_folder(folder):
        return lddl_data.parquet_files(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in HDF5_SUFFIXES)
    if any("training" in p.name for p in files):
        held_out = [p for p in files if "test" in p.name]
        if held_out:
            return held_out
    if not files:
        raise ShardError(f"--eval_dir {folder}: no HDF5 (*.hdf5, *.h5) or parquet shards")
    return files


@dataclasses.dataclass
class HeldOutSet:
    """This rank's share of the held-out samples, as batches ready to evaluate.

    `total` counts the samples of every rank; rank r holds samples r, r + W, r + 2W, ... of the
    first `total` in file order, so ranks share the work and the metrics do not depend on the
    number of ranks."""

    batches: list[PretrainingBatch]
    total: int
    seq_length: int

    @classmethod
    def load(
        cls,
        eval_dir: str | os.PathLike,
        max_samples: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        vocab_file: str | os.PathLike | None = None,
        checks: ShardChecks | None = None,
    ) -> HeldOutSet:
        """Read shards in order until `max_samples` samples are in hand (all when there are
        fewer), check them as training shards are checked, and batch this rank's share."""
        shards = _open_shards(eval_dir, max_samples, vocab_file, checks)
        lengths = {shard.seq_length for shard in shards if hasattr(shard, "seq_length")}
        if len(lengths) > 1:
            raise ShardError(
                f"--eval_dir {eval_dir}: its shards have different sequence lengths "
                f"({sorted(lengths)}); keep one length per folder"
            )
        total = min(max_samples, sum(len(shard) for shard in shards))
        masking = _fixed_masking(shards, vocab_file)
        generator = np.random.default_rng(EVAL_MASKING_SEED)  # not the run's generators
        batches, pending, start = [], [], 0
        for shard in shards:
            count = min(len(shard), total - start)
            mine = [i - start for i in range(start, start + count) if i % world_size == rank]
            start += count
            pending.extend((shard, index) for index in mine)
            while len(pending) >= batch_size or (pending and start >= total):
                chunk, pending = pending[:batch_size], pending[batch_size:]
                batches.append(_stack(chunk, masking, generator))
            if start >= total:
                break
        length = max(lengths) if lengths else max(int(b.input_ids.shape[1]) for b in batches)
        return cls(batches, total, length)


def _open_shards(
    eval_dir: str | os.PathLike,
    max_samples: int,
    vocab_file: str | os.PathLike | None,
    checks: ShardChecks | None,
) -> list:
    """The shards that hold the first `max_samples` samples, opened (and checked) in order."""
    files = eval_files(eval_dir)
    opener: Callable[[Path], object]
    if lddl_data.is_parquet_folder(eval_dir):
        if vocab_file is None:
            raise ShardError(
                f"--eval_dir {eval_dir} holds LDDL parquet shards, whose samples are WordPiece "
                "strings: pass --vocab_file"
            )
        vocab = lddl_data.Vocabulary(vocab_file)
        static = lddl_data.read_footer(files[0])[1]
        shard_format = lddl_data.ParquetShards(vocab, static, checks=checks)
        opener = shard_format.open
    else:

        def opener(path: Path) -> PretrainingShard:
            shard = PretrainingShard(path, checks)
            shard.check_has_masked_positions("held-out shards are scored on their own masks")
            return shard

    shards, count = [], 0
    for path in files:
        shard = opener(path)
        shards.append(shard)
        count += len(shard)
        if count >= max_samples:
            break
    if count == 0:
        raise ShardError(f"--eval_dir {eval_dir}: its shards hold no samples")
    return shards


def _fixed_masking(shards: list, vocab_file: str | os.PathLike | None) -> DynamicMasking | None:
    """The masking applied once to held-out samples stored without masks (LDDL parquet made
    for dynamic masking); None when the shards carry their own masks."""
    if all(getattr(shard, "static", True) for shard in shards):
        return None
    if vocab_file is None:
        raise ShardError("held-out shards without masks need --vocab_file to be masked")
    return DynamicMasking.from_vocab_file(vocab_file)


def _stack(
    chunk: list, masking: DynamicMasking | None, generator: np.random.Generator
) -> PretrainingBatch:
    """One batch of (shard, index) samples; padded to the longest when shards differ."""
    parts = []
    for shard in dict.fromkeys(shard for shard, _ in chunk):
        parts.append(shard.batch([index for s, index in chunk if s is shard]))
    width = max(int(part.input_ids.shape[1]) for part in parts)
    fills = (0, 0, 0, -1, 0)
    columns = []
    for column, fill in zip(zip(*parts, strict=True), fills, strict=True):
        padded = [
            torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill) if t.dim() == 2 else t
            for t in column
        ]
        columns.append(torch.cat(padded))
    batch = PretrainingBatch(*columns)
    return remask(batch, masking, generator) if masking is not None else batch


def evaluate(
    model: torch.nn.Module,
    held_out: HeldOutSet,
    device: torch.device,
    precision: PrecisionStack,
    *,
    trim_multiple: int = 1,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """The four metrics of `model` (a BertForPreTraining) over the held-out samples of every
    rank: `reduce` sums this rank's six totals over the ranks (a collective every rank must
    join), and the means are taken of the sums."""
    totals = torch.zeros(6, dtype=torch.float64, device=device)
    with evaluating(model):
        for cpu_batch in held_out.batches:
            cpu_batch = PretrainingBatch(
                *trim_padding(cpu_batch, cpu_batch.input_mask, trim_multiple)
            )
            totals += _batch_totals(model, cpu_batch.map(lambda t: t.to(device)), precision)
    if reduce is not None:
        totals = reduce(totals)
    mlm_loss, mlm_correct, mlm_count, nsp_loss, nsp_correct, nsp_count = totals.tolist()
    return {
        "eval_masked_lm_loss": mlm_loss / mlm_count if mlm_count else 0.0,
        "eval_masked_lm_accuracy": mlm_correct / mlm_count if mlm_count else 0.0,
        "eval_next_sentence_loss": nsp_loss / nsp_count if nsp_count else 0.0,
        "eval_next_sentence_accuracy": nsp_correct / nsp_count if nsp_count else 0.0,
    }


def _batch_totals(
    model: torch.nn.Module, batch: PretrainingBatch, precision: PrecisionStack
) -> torch.Tensor:
    """(MLM loss sum, MLM correct, masked tokens, NSP loss sum, NSP correct, samples) of one
    batch, on the device."""
    input_ids, segment_ids, input_mask, labels, next_sentence = batch
    with precision.autocast():
        scores, relationship = model(input_ids, segment_ids, input_mask, masked_lm_labels=labels)
    labels = labels.reshape(-1)
    if scores.dim() == 3:  # the plain head scored every position: keep the masked ones
        scores = scores.reshape(-1, scores.shape[-1])[labels != -1]
    labels = labels[labels != -1]  # [M], in the order the masked-only head returns its rows
    scores, relationship = scores.float(), relationship.float()
    next_sentence = next_sentence.reshape(-1)
    return torch.stack(
        [
            torch.nn.functional.cross_entropy(scores, labels, reduction="sum"),
            (scores.argmax(-1) == labels).sum(),
            torch.tensor(labels.numel(), device=labels.device),
            torch.nn.functional.cross_entropy(relationship, next_sentence, reduction="sum"),
            (relationship.argmax(-1) == next_sentence).sum(),
            torch.tensor(next_sentence.numel(), device=labels.device),
        ]
    ).double()


# ------------------------------------------------------------------------------- the run's


def check_eval_dir(options: PretrainOptions, config: BertConfig) -> None:
    """The held-out folder: shards exist (HDF5 of any name, or parquet with a vocabulary) and
    none is longer than the model's positions. Only metadata is read."""
    cli.check_input_dir(options.eval_dir, "--eval_dir")
    files = eval_files(options.eval_dir)
    training_shards = [p.name for p in files if "training" in p.name or p.suffix == ".parquet"]
    same = options.input_dir and cli.same_path(options.eval_dir, options.input_dir)
    if options.do_train and same and training_shards:
        raise UsageError(
            f"--eval_dir {options.eval_dir} is --input_dir and holds no test shards, so the "
            f"evaluation would score training samples ({training_shards[0]}, ...); pass the "
            "folder of the held-out shards"
        )
    if lddl_data.check_parquet_input(options.eval_dir, "--eval_dir", options.vocab_file):
        return
    masked, evaluated = 0, 0
    for path in files:
        cli.check_input_file(path, "--eval_dir shard")
        rows, seq_length, _ = shard_shape(path)
        check_positions(seq_length, "--eval_dir", options.eval_dir, options, config)
        rows = min(rows, options.eval_max_samples - evaluated)
        if rows > 0 and not masked:  # the samples evaluated, up to the first with a mask
            masked = masked_instances(path, rows)
            evaluated += rows
    why = (
        f"none of the {evaluated} held-out samples evaluated has one: all padding, so the "
        "masked-LM loss and accuracy would come from nothing"
    )
    refuse_if_nothing_usable(
        masked, f"--eval_dir {options.eval_dir}", "masked positions", why, ShardError
    )


def check_positions(
    seq_length: int, flag: str, folder: str | None, options: PretrainOptions, config: BertConfig
) -> None:
    """Shards of `seq_length` tokens fit the model's position embeddings."""
    if seq_length > config.max_position_embeddings:
        raise UsageError(
            f"{flag} {folder} holds sequences of {seq_length} tokens, more than the model's "
            f"{config.max_position_embeddings} positions (max_position_embeddings of "
            f"--config_file {options.config_file})"
        )


def load_held_out(
    options: PretrainOptions, dist: distributed.DistState, checks: ShardChecks
) -> HeldOutSet | None:
    """This rank's share of the held-out samples (--eval_dir), read once before training."""
    if options.eval_dir is None:
        return None
    held_out = HeldOutSet.load(
        options.eval_dir,
        options.eval_max_samples,
        options.eval_batch_size,
        rank=dist.rank,
        world_size=dist.world_size,
        vocab_file=options.vocab_file,
        checks=checks,
    )
    logger.info(
        "held-out evaluation: %d samples of %s (sequence length %d)",
        held_out.total,
        options.eval_dir,
        held_out.seq_length,
    )
    return held_out


def evaluate_held_out(training: Training, held_out: HeldOutSet | None) -> dict[str, float]:
    """The held-out metrics of the model as it is now, logged at the current step (every rank
    takes part: the sums are reduced over the ranks); nothing when there is no held-out set."""
    if held_out is None:
        return {}
    multiple = trim_multiple(training.dist.device, training.options.compile)
    metrics = evaluate(
        training.model,
        held_out,
        training.dist.device,
        training.precision,
        trim_multiple=multiple,
        reduce=distributed.all_reduce_sum,
    )
    training.metrics.log(training.log_step(), metrics)
    return metrics
