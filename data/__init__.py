"""The data pipeline: download, extract, format, segment, shard, HDF5 creation and verification."""
