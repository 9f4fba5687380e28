"""shard_format.py: the schema is NVIDIA's layout, and written shards carry exactly the settings
attributes it lists."""

from __future__ import annotations

import h5py

import shard_format
from pretraining_instances import InstanceOptions, ShardJob, create_shard
from tests.support import UNCASED_VOCAB


def test_schema_is_nvidias_layout():
    # NVIDIA's write_instance_to_example_file, by hand: (dtype, number of dimensions).
    assert {d.name: (d.dtype, d.ndim) for d in shard_format.DATASETS} == {
        "input_ids": ("i4", 2),
        "input_mask": ("i1", 2),
        "segment_ids": ("i1", 2),
        "masked_lm_positions": ("i4", 2),
        "masked_lm_ids": ("i4", 2),
        "next_sentence_labels": ("i1", 1),
    }
    assert list(shard_format.SHARD_DTYPES) == list(shard_format.SHARD_NDIMS)
    assert shard_format.shapes(5, 128, 20) == {
        "input_ids": (5, 128),
        "input_mask": (5, 128),
        "segment_ids": (5, 128),
        "masked_lm_positions": (5, 20),
        "masked_lm_ids": (5, 20),
        "next_sentence_labels": (5,),
    }


def test_written_shard_matches_the_schema(tmp_path):
    (tmp_path / "in.txt").write_text("A b c .\nD e f .\n\nG h .\nI j .\n")
    options = InstanceOptions(max_seq_length=16, max_predictions_per_seq=3, dupe_factor=2)
    output = tmp_path / "out.hdf5"
    create_shard(ShardJob((tmp_path / "in.txt",), output, UNCASED_VOCAB, True, options))
    with h5py.File(output, "r") as shard:
        assert sorted(shard.attrs) == sorted(shard_format.SETTINGS_ATTRIBUTES)
        assert shard.attrs["created_by"] == shard_format.CREATED_BY
        rows = len(shard["next_sentence_labels"])
        for key, shape in shard_format.shapes(rows, 16, 3).items():
            assert shard[key].shape == shape, key
            assert shard[key].dtype.str[1:] == shard_format.SHARD_DTYPES[key], key
