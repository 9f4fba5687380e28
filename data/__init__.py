"""The data pipeline: download, extract, format, segment, shard, HDF5 creation and verification.

`pipeline.py` runs the stages by name (`stages.py` is what they share), `bertPrep.py` is
NVIDIA's command line over them, and each stage has its module (`download.py`, `wikipedia.py`,
`segmentation.py`, `sharding.py`, `verify.py`); the HDF5 stage runs `pretraining_instances.py`.
`train_vocab.py` and `make_sample_corpus.py` are commands of their own. Commands here parse
their flags with `cli.py` and never import the run layer (`runtime.py`).
"""
