"""The HDF5 pre-training shard format: NVIDIA's six datasets and the settings we add to them.

The one description of a shard that its writer (`pretraining_instances.py`, run by
`create_pretraining_data.py`), its reader (`pretraining_data.py`) and its checker
(`data/verify.py`) share: the datasets as NVIDIA's 21.11 `create_pretraining_data.py` writes
them and its `run_pretraining.py` reads them (`DATASETS`), and the settings our writer stores as
HDF5 attributes (`SETTINGS_ATTRIBUTES`; NVIDIA's loader ignores them, and shards without them,
NVIDIA's, are valid). It imports nothing of the repository and no torch, so the processes that
write shards stay light. Reading, writing and checking the content are the other modules'.
"""

from __future__ import annotations

from typing import NamedTuple


class ShardDataset(NamedTuple):
    """One dataset of a shard: its name, its stored dtype and the size of its second axis."""

    name: str
    dtype: str  # numpy dtype string, as NVIDIA's writer stores it
    width: str | None  # "seq_length", "max_predictions", or None for one value per instance

    @property
    def ndim(self) -> int:
        return 1 if self.width is None else 2


#: A shard of N instances, sequence length S and at most P masked positions per instance:
#:     input_ids             int32 [N, S]  token ids, zero-padded
#:     input_mask            int8  [N, S]  1 for real tokens, then 0
#:     segment_ids           int8  [N, S]  0 for [CLS] A [SEP], 1 for B [SEP], 0 for padding
#:     masked_lm_positions   int32 [N, P]  sorted masked positions, zero-padded
#:     masked_lm_ids         int32 [N, P]  the original token at each masked position
#:     next_sentence_labels  int8  [N]     1 when B is a random next sentence
DATASETS = (
    ShardDataset("input_ids", "i4", "seq_length"),
    ShardDataset("input_mask", "i1", "seq_length"),
    ShardDataset("segment_ids", "i1", "seq_length"),
    ShardDataset("masked_lm_positions", "i4", "max_predictions"),
    ShardDataset("masked_lm_ids", "i4", "max_predictions"),
    ShardDataset("next_sentence_labels", "i1", None),
)

#: Dataset name -> stored dtype, in NVIDIA's order.
SHARD_DTYPES = {dataset.name: dataset.dtype for dataset in DATASETS}

#: Dataset name -> number of dimensions.
SHARD_NDIMS = {dataset.name: dataset.ndim for dataset in DATASETS}

#: The attribute that names the vocabulary a shard was made with.
VOCAB_SHA256 = "vocab_sha256"

#: The `created_by` attribute of our shards.
CREATED_BY = "bert-pytorch create_pretraining_data.py"

#: HDF5 attributes our writer stores on every shard: name -> meaning.
SETTINGS_ATTRIBUTES = {
    "created_by": f"the writer, {CREATED_BY!r}",
    VOCAB_SHA256: "sha256 of the vocabulary file's bytes",
    "vocab_size": "number of tokens in the vocabulary",
    "do_lower_case": "whether the text was lower-cased",
    "input_files": "names of the text files the instances came from, in order",
    "max_seq_length": "S",
    "dupe_factor": "passes over the documents, each with fresh pairs and masks",
    "max_predictions_per_seq": "P",
    "masked_lm_prob": "fraction of the tokens masked, up to P",
    "short_seq_prob": "probability of a shorter target length",
    "random_seed": "seed of the instance and masking draws",
    "do_whole_word_mask": "whether every piece of a word was masked together (absent: no)",
}


def shapes(rows: int, seq_length: int, max_predictions: int) -> dict[str, tuple[int, ...]]:
    """The shape of each dataset for `rows` instances."""
    width = {"seq_length": seq_length, "max_predictions": max_predictions}
    return {d.name: (rows,) if d.width is None else (rows, width[d.width]) for d in DATASETS}
