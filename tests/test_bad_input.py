"""Careless and hostile command lines for every entry script and CLI, each a table of cases.

A case runs the script's `main(argv)` in-process (those marked `subprocess` run as users run
them, in a new interpreter) and asserts: the exit status, 2 for a flag value, a combination or a
path that cannot work, 1 for a file whose content is wrong or a step that failed; exactly one
`error:` line on stderr, which names the flag or file at fault; no "Traceback"; and no file or
folder created, changed or removed under the test's folder (a failed run leaves no output).

Every case has a class (`kind`): number, missing, kind (a file where a folder is needed or the
reverse), unwritable, overwrite (an output that is an input), empty (data with nothing to train
or score), malformed (JSON, TSV, config, checkpoint), conflict (flags that contradict each
other or the model), special (a named pipe where a file is read: refused, never a hang),
content (a valid container with impossible content: integer weights, JSON beyond Python's
integer-string or nesting limits, shards linking other files) and collision (two outputs of
one run on one path, or a single-file output another live run holds).
Tests run as root here, and root writes into read-only folders: the
`unwritable` cases then refuse the folder through a stand-in for the write probe, and use the
real permission bits otherwise.

NVIDIA's own command lines never meet "unrecognized arguments": every flag of both generations'
entry scripts is accepted, or refused in one line saying what to use instead.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import cli
from checkpoint import save_nvidia_checkpoint
from modeling import BertConfig, BertForPreTraining
from tests.support import (
    FP16_RUNS_ON_THE_GPU,
    REPO_ROOT,
    TINY_CONFIG,
    UNCASED_VOCAB,
    fill_disk,
    plant_file_lock,
    run_main,
    write_shard_file,
)

KINDS = (
    "number",
    "missing",
    "kind",
    "unwritable",
    "overwrite",
    "empty",
    "malformed",
    "conflict",
    "special",
    "size",
    "message",
    "content",
    "collision",
)


@dataclasses.dataclass(frozen=True)
class Case:
    script: str  # the module whose main() runs
    kind: str
    argv: tuple[str, ...]  # "{name}" is replaced by that path of the test folder
    status: int
    names: str  # the error line holds this (the flag or file), after the same replacement
    extra: str = ""  # what this case adds to the script's base command line (its test id)
    subprocess: bool = False

    @property
    def id(self) -> str:
        return f"{self.script}-{self.kind}-{self.extra[:70]}"


def cases(script: str, base: str, table: list[tuple]) -> list[Case]:
    """`table` rows: (kind, extra argv, status, names[, "subprocess"]); `base` comes first."""
    out = []
    for kind, extra, status, names, *via in table:
        assert kind in KINDS, kind
        argv = tuple(base.split() + extra.split())
        out.append(Case(script, kind, argv, status, names, extra, subprocess=bool(via)))
    return out


PRETRAIN = (
    "--do_train --input_dir={shards} --config_file={config} --output_dir={out} "
    "--json-summary={out}/log.json --train_batch_size=4 --no_cuda"
)
SQUAD = (
    "--vocab_file={vocab} --config_file={config} --output_dir={out} "
    "--json-summary={out}/log.json --no_cuda --init_checkpoint={pretrained_pt}"
)
GLUE = (
    "--task_name=mrpc --vocab_file={vocab} --config_file={config} --output_dir={out} "
    "--json-summary={out}/log.json --no_cuda --init_checkpoint={pretrained_pt}"
)
CPD = "--vocab_file={vocab} --input_file={text}"
INFER = "--vocab_file={vocab} --config_file={config} --init_checkpoint={ckpt}"
ONNX = "--config_file={config} --task=qa"

CASES = [
    *cases(
        "run_pretraining",
        PRETRAIN,
        [
            ("number", "--train_batch_size=0", 2, "--train_batch_size"),
            ("number", "--learning_rate=nan", 2, "--learning_rate"),
            ("number", "--warmup_proportion=1.5", 2, "--warmup_proportion"),
            ("number", "--seed=-1", 2, "--seed", "subprocess"),
            ("number", "--max_steps=2.5", 2, "--max_steps"),
            ("missing", "--input_dir={w}/nowhere", 2, "--input_dir {w}/nowhere"),
            ("missing", "--config_file={w}/nope.json", 2, "--config_file {w}/nope.json"),
            (
                "missing",
                "--resume_from_checkpoint --init_checkpoint={w}/no.pt",
                2,
                "--init_checkpoint {w}/no.pt",
            ),
            ("missing", "--resume_from_checkpoint --resume_step=5", 2, "--resume_step 5"),
            ("missing", "--output_dir=", 2, "--output_dir: empty path"),
            ("kind", "--output_dir={text}", 2, "--output_dir {text}"),
            ("kind", "--json-summary={folder}", 2, "--json-summary {folder}"),
            ("kind", "--vocab_file={folder}", 2, "--vocab_file {folder}"),
            ("kind", "--input_dir={text}", 2, "--input_dir {text}"),
            ("kind", "--output_dir={text}/sub", 2, "{text} is a file"),
            ("unwritable", "--output_dir={ro}/run", 2, "--output_dir {ro}/run"),
            ("unwritable", "--json-summary={ro}/log.json", 2, "--json-summary {ro}/log.json"),
            ("overwrite", "--json-summary={config}", 2, "--config_file {config}"),
            (
                "overwrite",
                "--json-summary={w}/./sub/../vocab.txt --vocab_file={w}/vocab.txt",
                2,
                "--vocab_file {w}/vocab.txt",
            ),
            ("empty", "--input_dir={notraining}", 1, "--input_dir {notraining}"),
            ("empty", "--input_dir={empty_shards}", 1, "{empty_shards}/e_training_0.hdf5"),
            ("malformed", "--input_dir={bad_shards}", 1, "{bad_shards}/x_training_0.hdf5"),
            ("malformed", "--config_file={bad_config}", 1, "{bad_config}"),
            ("malformed", "--config_file={nan_config}", 1, "initializer_range"),
            ("conflict", "--max_seq_length=600", 2, "--max_seq_length 600"),
            ("conflict", "--config_file={short_config}", 2, "--input_dir {shards}"),
            (
                "conflict",
                "--vocab_file={vocab} --config_file={small_config}",
                2,
                "--vocab_file {vocab}",
            ),
            ("conflict", "--dynamic_masking", 2, "--vocab_file"),
            ("conflict", "--do_whole_word_mask", 2, "--do_whole_word_mask applies to"),
            ("conflict", "--gradient_accumulation_steps=3", 2, "--gradient_accumulation_steps"),
            (
                "conflict",
                "--max_seq_length=8 --max_predictions_per_seq=9",
                2,
                "--max_predictions_per_seq 9",
            ),
            ("conflict", "--max_seq_length=16", 1, "{shards}/s_training_0.hdf5"),
            ("conflict", "--max_predictions_per_seq=7", 1, "--max_predictions_per_seq is 7"),
            ("conflict", "--fp16", 2, "--fp16"),
            ("conflict", "--cuda_graphs", 2, "--cuda_graphs: HEAD's capture"),  # use --compile
            ("empty", "--input_dir={pq_empty} --vocab_file={vocab}", 1, "{pq_empty}: no usable"),
            ("empty", "--eval_dir={pq_empty} --vocab_file={vocab}", 1, "{pq_empty}: no usable"),
            ("empty", "--eval_dir={unmasked}", 1, "--eval_dir {unmasked}: no usable masked"),
            ("empty", "--input_dir={unmasked}", 1, "{unmasked}/u_training_0.hdf5: no usable"),
        ],
    ),
    *cases(
        "run_squad",
        SQUAD + " --do_predict --predict_file={squad}",
        [
            ("number", "--doc_stride=-1", 2, "--doc_stride"),
            ("number", "--n_best_size=0", 2, "--n_best_size"),
            ("number", "--null_score_diff_threshold=nan", 2, "--null_score_diff_threshold"),
            ("number", "--predict_batch_size=1.5", 2, "--predict_batch_size", "subprocess"),
            ("missing", "--predict_file={w}/none.json", 2, "--predict_file {w}/none.json"),
            ("missing", "--init_checkpoint={w}/none.pt", 2, "--init_checkpoint {w}/none.pt"),
            ("missing", "--vocab_file={w}/a\0b", 2, "--vocab_file {w}/a\0b: not a usable path"),
            ("kind", "--predict_file={folder}", 2, "--predict_file {folder}"),
            ("kind", "--output_dir={text}", 2, "--output_dir {text}"),
            ("kind", "--config_file={folder}", 2, "--config_file {folder}"),
            ("unwritable", "--output_dir={ro}", 2, "--output_dir {ro}"),
            ("overwrite", "--json-summary={squad}", 2, "--predict_file {squad}"),
            (
                "overwrite",
                "--output_dir={ft} --init_checkpoint={ft}/pytorch_model.bin --do_train "
                "--train_file={squad}",
                2,
                "--init_checkpoint {ft}/pytorch_model.bin",
            ),
            (
                "overwrite",
                "--output_dir={pred_out} --predict_file={pred_out}/predictions.json",
                2,
                "--predict_file {pred_out}/predictions.json",
            ),
            ("empty", "--predict_file={noq}", 1, "{noq}"),
            ("malformed", "--predict_file={bad_json}", 1, "{bad_json}"),
            ("malformed", "--config_file={nan_config}", 1, "{nan_config}"),
            ("conflict", "--max_seq_length=60", 2, "--max_seq_length 60"),
            ("conflict", "--doc_stride=400", 2, "--doc_stride 400"),
            ("conflict", "--max_seq_length=1024", 2, "--max_seq_length 1024"),
            ("conflict", "--do_eval --predict_file=", 2, "--predict_file"),
            ("conflict", "--init_checkpoint=", 2, "without --do_train needs --init_checkpoint"),
            ("conflict", "--config_file={small_config}", 2, "--vocab_file {vocab}"),
            ("conflict", "--fp16", 2, "--fp16"),
            ("empty", "--predict_file={squad_blank}", 1, "{squad_blank}: no usable questions"),
            ("empty", "--predict_file={squad_ctrl}", 1, "{squad_ctrl}: no usable questions"),
            ("empty", "--do_train --train_file={squad_ctrl}", 1, "{squad_ctrl}: no usable"),
            ("empty", "--predict_file={squad_qctrl}", 1, "{squad_qctrl}: no usable questions"),
            ("empty", "--do_train --train_file={noq}", 1, "{noq}: no usable questions"),
            ("empty", "--do_train --train_file={squad_lost}", 1, "{squad_lost}: no usable"),
            ("empty", "--do_train --train_file={squad_noans}", 1, "{squad_noans}"),
            ("empty", "--do_eval --predict_file={squad_noans}", 1, "{squad_noans}: question"),
        ],
    ),
    *cases(
        "run_glue",
        GLUE + " --do_eval --data_dir={glue}",
        [
            ("number", "--eval_batch_size=0", 2, "--eval_batch_size"),
            ("number", "--max_seq_length=-5", 2, "--max_seq_length"),
            ("number", "--num_train_epochs=inf", 2, "--num_train_epochs"),
            ("missing", "--data_dir={w}/nope", 2, "--data_dir {w}/nope", "subprocess"),
            ("missing", "--do_predict", 2, "{glue}/test.tsv"),
            ("kind", "--data_dir={text}", 2, "--data_dir {text}"),
            ("kind", "--output_dir={text}", 2, "--output_dir {text}"),
            ("kind", "--output_dir={w}/" + "x" * 300, 2, "File name too long"),
            ("unwritable", "--output_dir={ro}/out", 2, "--output_dir {ro}/out"),
            ("overwrite", "--json-summary={glue}/dev.tsv", 2, "{glue}/dev.tsv"),
            (
                "overwrite",
                "--output_dir={ft} --init_checkpoint={ft}/pytorch_model.bin --do_train",
                2,
                "--init_checkpoint {ft}/pytorch_model.bin",
            ),
            ("empty", "--data_dir={glue_header}", 1, "{glue_header}/dev.tsv"),
            ("empty", "--do_predict --data_dir={glue_notest}", 1, "{glue_notest}/test.tsv: no"),
            ("empty", "--task_name=qqp --data_dir={qqp_broken}", 1, "{qqp_broken}/dev.tsv: no"),
            ("empty", "--data_dir={glue_blank}", 1, "{glue_blank}/dev.tsv: no usable mrpc"),
            ("malformed", "--data_dir={glue_bad}", 1, "{glue_bad}/dev.tsv"),
            ("conflict", "--task_name=squad", 1, "squad"),
            ("conflict", "--max_seq_length=2", 2, "--max_seq_length 2"),
            ("conflict", "--init_checkpoint=", 2, "without --do_train needs --init_checkpoint"),
            (
                "conflict",
                "--train_batch_size=2 --gradient_accumulation_steps=4 --do_train",
                2,
                "--gradient_accumulation_steps",
            ),
        ],
    ),
    *cases(
        "create_pretraining_data",
        CPD + " --output_file={out}/x.hdf5",
        [
            ("number", "--max_seq_length=0", 2, "--max_seq_length"),
            ("number", "--masked_lm_prob=1.5", 2, "--masked_lm_prob"),
            ("number", "--random_seed=-1", 2, "--random_seed"),
            ("number", "--processes=0", 2, "--processes", "subprocess"),
            ("number", "--dupe_factor=x", 2, "--dupe_factor"),
            ("missing", "--vocab_file={w}/nope", 2, "--vocab_file {w}/nope"),
            ("missing", "--input_file={w}/nope.txt", 2, "--input_file {w}/nope.txt"),
            ("missing", "--input_file=", 2, "--input_file: empty path"),
            ("kind", "--output_file={folder}", 2, "--output_file {folder}"),
            ("kind", "--output_file={text}/x.hdf5", 2, "{text} is a file"),
            ("unwritable", "--output_file={ro}/x.hdf5", 2, "--output_file {ro}/x.hdf5"),
            ("overwrite", "--output_file={text}", 2, "--input_file {text}"),
            ("empty", "--input_file={empty_text}", 1, "{empty_text}"),
            ("empty", "--input_file={folder}", 1, "--input_file {folder}"),
            ("malformed", "--input_file={latin}", 1, "{latin}:2"),
            ("conflict", "--max_seq_length=4", 2, "--max_seq_length 4"),
            (
                "conflict",
                "--config_file={short_config} --max_seq_length=128",
                2,
                "--max_seq_length 128",
            ),
        ],
    ),
    *cases(
        "inference",
        INFER,
        [
            ("number", "--n_best_size=0", 2, "--n_best_size"),
            ("number", "--doc_stride=-3", 2, "--doc_stride"),
            ("number", "--null_score_diff_threshold=nan", 2, "--null_score_diff_threshold"),
            ("number", "--seed=-1", 2, "--seed"),
            (
                "missing",
                "--init_checkpoint={w}/none.pt",
                2,
                "--init_checkpoint {w}/none.pt",
                "subprocess",
            ),
            ("missing", "--vocab_file={w}/none", 2, "--vocab_file {w}/none"),
            ("kind", "--config_file={folder}", 2, "--config_file {folder}"),
            ("kind", "--vocab_file={folder}", 2, "--vocab_file {folder}"),
            ("empty", "--context=", 2, "--context"),
            ("empty", "--question=   ", 2, "--question"),
            ("malformed", "--config_file={bad_config}", 1, "{bad_config}"),
            ("malformed", "--init_checkpoint={junk_pt}", 1, "{junk_pt}"),
            ("malformed", "--init_checkpoint={pretrained_pt}", 1, "{pretrained_pt}: no qa_outputs"),
            ("conflict", "--max_seq_length=64", 2, "--max_seq_length 64"),
            ("conflict", "--doc_stride=500", 2, "--doc_stride 500"),
            ("conflict", "--config_file={small_config}", 2, "--vocab_file {vocab}"),
            ("conflict", "--fp16 --no_cuda", 2, "--fp16"),
            ("empty", "--context=\x01\x02", 2, "--context '\\x01\\x02': no usable text"),
            ("empty", "--question=\x7f", 2, "--question '\\x7f': no usable text"),
        ],
    ),
    *cases(
        "export_onnx",
        ONNX + " --output={out}/m.onnx",
        [
            ("number", "--num_labels=0 --task=classification", 2, "--num_labels"),
            ("number", "--tolerance=-1", 2, "--tolerance"),
            ("number", "--repeats=0", 2, "--repeats"),
            ("number", "--threads=-2", 2, "--threads"),
            ("missing", "--init_checkpoint={w}/none.pt", 2, "--init_checkpoint {w}/none.pt"),
            (
                "missing",
                "--config_file={w}/none.json",
                2,
                "--config_file {w}/none.json",
                "subprocess",
            ),
            ("kind", "--output={folder}", 2, "--output {folder}"),
            ("kind", "--json={folder}", 2, "--json {folder}"),
            ("unwritable", "--output={ro}/m.onnx", 2, "--output {ro}/m.onnx"),
            (
                "overwrite",
                "--init_checkpoint={ckpt} --output={ckpt}",
                2,
                "--init_checkpoint {ckpt}",
            ),
            ("overwrite", "--json={out}/m.onnx", 2, "--json {out}/m.onnx"),
            ("malformed", "--config_file={bad_config}", 1, "{bad_config}"),
            ("malformed", "--init_checkpoint={junk_pt}", 1, "{junk_pt}"),
            ("conflict", "--check_shapes=2x9999", 2, "--check_shapes"),
            ("conflict", "--check_shapes=big", 2, "--check_shapes"),
        ],
    ),
    *cases(
        "convert_checkpoint",
        "--input={ckpt}",
        [
            (
                "missing",
                "--input={w}/none.pt --output={out}/x.pt",
                2,
                "--input {w}/none.pt",
                "subprocess",
            ),
            (
                "missing",
                "--output={out}/x.pt --config_file={w}/c.json",
                2,
                "--config_file {w}/c.json",
            ),
            ("kind", "--output={text}/x.pt", 2, "{text} is a file"),
            ("kind", "--output={folder}/ --format=nvidia", 2, "--output {folder}"),
            ("kind", "--output={text} --format=hf", 2, "--output {text}"),
            ("unwritable", "--output={ro}/x.pt", 2, "--output {ro}/x.pt"),
            ("overwrite", "--output={ckpt}", 2, "--input {ckpt}"),
            ("overwrite", "--output={junk_pt}", 2, "--output {junk_pt}: exists"),
            ("overwrite", "--output={ft}", 2, "--input {ckpt} lies in --output {ft}"),
            ("overwrite", "--output={glue}", 2, "--output {glue}: a folder with files in it"),
            ("overwrite", "--output={ft}/./../ft/pytorch_model.bin", 2, "--input {ckpt}"),
            ("malformed", "--input={junk_pt} --output={out}/x.pt", 1, "{junk_pt}"),
            ("malformed", "--output={out}/x.pt --config_file={bad_config}", 1, "{bad_config}"),
            (
                "conflict",
                "--output={out}/x.pt --config_file={small_config} --vocab_file={vocab}",
                2,
                "--vocab_file {vocab}",
            ),
            ("conflict", "--output={out}/x.pt --format=onnx", 2, "--format"),
        ],
    ),
    *cases(
        "evaluate_squad",
        "",
        [
            ("missing", "{w}/none.json {preds}", 2, "{w}/none.json", "subprocess"),
            ("missing", "{squad} {w}/none.json", 2, "{w}/none.json"),
            ("missing", "{squad} {preds} --na-prob-file={w}/na.json", 2, "{w}/na.json"),
            ("number", "{squad} {preds} --na-prob-thresh=nan", 2, "--na-prob-thresh"),
            ("kind", "{folder} {preds}", 2, "{folder}"),
            ("kind", "{squad} {preds} --out-file={folder}", 2, "--out-file {folder}"),
            ("unwritable", "{squad} {preds} --out-file={ro}/e.json", 2, "--out-file {ro}/e.json"),
            ("overwrite", "{squad} {preds} --out-file={squad}", 2, "--out-file {squad}"),
            ("overwrite", "{squad} {preds} --out-file={w}/sub/../preds.json", 2, "{preds}"),
            ("empty", "{noq} {preds}", 1, "{noq}"),
            ("empty", "{squad} {empty_preds}", 1, "{empty_preds}"),
            ("empty", "{squad} {other_preds}", 1, "{other_preds}: no usable predictions"),
            ("empty", "{squad_noans} {preds}", 1, "{squad_noans}: question 'q1'"),
            ("empty", "{squad_ctrl} {other_preds}", 1, "{other_preds}: no usable predictions"),
            ("malformed", "{bad_json} {preds}", 1, "{bad_json}"),
            ("malformed", "{squad} {bad_json}", 1, "{bad_json}"),
        ],
    ),
    *cases(
        "data.verify",
        "",
        [
            ("number", "{shards} --max_seq_length=0", 2, "--max_seq_length"),
            ("number", "{shards} --expected_shards=-1", 2, "--expected_shards"),
            ("missing", "{w}/nowhere", 2, "{w}/nowhere", "subprocess"),
            ("missing", "{shards} --vocab_file={w}/nope", 2, "--vocab_file {w}/nope"),
            ("kind", "{shards} --vocab_file={folder}", 2, "--vocab_file {folder}"),
            ("kind", "{shards} --config_file={folder}", 2, "--config_file {folder}"),
            ("empty", "{folder}", 1, "{folder}"),
            ("malformed", "{shards} --config_file={bad_config}", 1, "{bad_config}"),
            ("malformed", "{shards} --vocab_file={latin}", 1, "{latin}"),
        ],
    ),
    *cases(
        "data.pipeline",
        "--working_dir={folder}",
        [
            ("number", "shard --n_training_shards=0", 2, "--n_training_shards"),
            ("number", "shard --fraction_test_set=-0.5", 2, "--fraction_test_set"),
            ("number", "hdf5 --max_seq_length=abc", 2, "--max_seq_length"),
            ("number", "hdf5 --random_seed=-1", 2, "--random_seed"),
            ("missing", "extract --dump={w}/no.xml", 2, "--dump {w}/no.xml"),
            ("missing", "hdf5 --vocab_file={w}/nope", 2, "--vocab_file {w}/nope", "subprocess"),
            ("kind", "shard --working_dir={text}", 2, "--working_dir {text}"),
            ("kind", "format --dataset=bookscorpus --books_dir={text}", 2, "--books_dir {text}"),
            ("unwritable", "shard --working_dir={ro}/work", 2, "--working_dir {ro}/work"),
            (
                "overwrite",
                "extract --dump={folder}/extracted/wikicorpus_en/d.xml",
                2,
                "{folder}/extracted/wikicorpus_en/d.xml",
            ),
            ("empty", "hdf5", 1, "hdf5"),
            ("conflict", "shard --fraction_test_set=0.5 --n_test_shards=0", 2, "--n_test_shards"),
            ("conflict", "hdf5 --max_seq_length=4", 2, "--max_seq_length 4"),
            ("conflict", "download --downloads bookscorpus", 2, "--downloads"),
        ],
    ),
    *cases(
        "data.bertPrep",
        "--action=sharding --dataset=wikicorpus_en",
        [
            ("number", "--n_training_shards=0", 2, "--n_training_shards"),
            ("number", "--fraction_test_set=2", 2, "--fraction_test_set"),
            ("number", "--n_processes=-1", 2, "--n_processes"),
            ("number", "--dupe_factor=0 --action=create_hdf5_files", 2, "--dupe_factor"),
            ("missing", "--input_files={w}/a.txt", 2, "{w}/a.txt"),
            ("missing", "--action=create_hdf5_files --vocab_file={w}/v", 2, "--vocab_file {w}/v"),
            ("kind", "--input_files={folder}", 2, "{folder}"),
            ("unwritable", "--input_files={text}", 2, "BERT_PREP_WORKING_DIR {ro}/work"),
            ("conflict", "--fraction_test_set=0.5 --n_test_shards=0", 2, "--n_test_shards"),
            ("conflict", "--action=create_tfrecord_files", 2, "create_tfrecord_files"),
            ("conflict", "--dataset=squad", 2, "--dataset"),
        ],
    ),
    *cases(
        "data.download",
        "--dataset=squad --download_dir={out}",
        [
            ("number", "--retries=-1", 2, "--retries"),
            ("number", "--timeout=0", 2, "--timeout"),
            ("number", "--min_rate=nan", 2, "--min_rate"),
            ("number", "--rate_window=-5", 2, "--rate_window"),
            ("missing", "--dataset=wikicorpus_en --dump={w}/no.xml", 2, "--dump {w}/no.xml"),
            ("kind", "--download_dir={text}", 2, "--download_dir {text}"),
            ("kind", "--download_dir={text}/d", 2, "{text} is a file", "subprocess"),
            ("unwritable", "--download_dir={ro}/d", 2, "--download_dir {ro}/d"),
            ("conflict", "--dataset=bookscorpus", 2, "bookscorpus"),
            ("conflict", "--tasks=MRPC", 2, "--tasks"),
            ("conflict", "--dataset=glue --tasks=NOPE", 2, "NOPE"),
            ("conflict", "--dataset=wikicorpus_en --wiki_date=latest", 2, "latest"),
        ],
    ),
    *cases(
        "data.make_sample_corpus",
        "--output={out}/c.txt",
        [
            ("missing", "--input={w}/none.raw", 2, "--input {w}/none.raw"),
            ("kind", "--input={folder}", 2, "--input {folder}"),
            ("kind", "--input={text} --output={folder}", 2, "--output {folder}"),
            ("kind", "--input={text} --output={text}/c.txt", 2, "{text} is a file"),
            ("unwritable", "--input={text} --output={ro}/c.txt", 2, "--output {ro}/c.txt"),
            ("overwrite", "--input={text} --output={text}", 2, "--input {text}", "subprocess"),
            ("empty", "--input={empty_text}", 1, "{empty_text}"),
            ("malformed", "--input={latin}", 1, "{latin}"),
            ("conflict", "--input", 2, "--input"),
        ],
    ),
    *cases(
        "scripts.plot_loss",
        "--output={out}/loss.png",
        [
            ("missing", "{w}/none.json", 2, "{w}/none.json", "subprocess"),
            ("kind", "{folder}", 2, "{folder}"),
            ("kind", "{log} --output={folder}/x.png/", 2, "--output {folder}/x.png/"),
            ("kind", "{log} --output={text}/loss.png", 2, "{text} is a file"),
            ("unwritable", "{log} --output={ro}/loss.png", 2, "--output {ro}/loss.png"),
            ("overwrite", "{log} {log_png} --output={w}/sub/../log.png", 2, "{log_png}"),
            ("empty", "{noloss_log}", 1, "{noloss_log}"),
            ("conflict", "{log} --output={out}/loss.jpg", 2, "--output {out}/loss.jpg"),
        ],
    ),
    *cases(
        "scripts.summarize_runs",
        "--output={out}/s.md",
        [
            ("number", "--squad={log} --seconds=-1", 2, "--seconds"),
            ("number", "--squad={log} --seconds=nan", 2, "--seconds"),
            ("missing", "--glue={w}/none.json", 2, "{w}/none.json", "subprocess"),
            ("kind", "--pretraining {folder}", 2, "{folder}"),
            ("kind", "--squad={log} --output={folder}", 2, "--output {folder}"),
            ("unwritable", "--squad={log} --output={ro}/s.md", 2, "--output {ro}/s.md"),
            ("overwrite", "--pretraining {noloss_log} {log} --output={log}", 2, "{log}"),
            ("empty", "--squad={noloss_log}", 1, "{noloss_log}"),
            ("conflict", "", 2, "--pretraining"),
        ],
    ),
    *cases(
        "benchmarks.squad_inference",
        "--model=random --config={config} --limit=2",
        [
            ("number", "--batch=0", 2, "--batch"),
            ("number", "--limit=-1", 2, "--limit"),
            ("missing", "--predict_file={w}/none.json", 2, "--predict_file {w}/none.json"),
            ("missing", "--config={w}/none.json", 2, "--config {w}/none.json"),
            ("kind", "--predict_file={folder}", 2, "--predict_file {folder}"),
            ("kind", "--predict_file={squad} --json={folder}", 2, "--json {folder}"),
            ("unwritable", "--predict_file={squad} --json={ro}/r.json", 2, "--json {ro}/r.json"),
            ("overwrite", "--predict_file={squad} --json={squad}", 2, "--predict_file {squad}"),
            ("empty", "--predict_file={noq}", 1, "{noq}"),
            ("conflict", "--dtype=fp16 --predict_file={squad}", 2, "--dtype fp16"),
            ("empty", "--predict_file={squad_ctrl}", 1, "{squad_ctrl}: no usable questions"),
        ],
    ),
    *cases(
        "benchmarks.glue_mrpc_vs_hf",
        "--data_dir={glue}",
        [
            ("number", "--batch=0", 2, "--batch"),
            ("number", "--lr=-1", 2, "--lr"),
            ("number", "--epochs=nan", 2, "--epochs"),
            ("number", "--seed=-1", 2, "--seed"),
            ("missing", "--data_dir={w}/none", 2, "--data_dir {w}/none"),
            ("missing", "--data_dir={folder}", 2, "{folder}/train.tsv"),
            ("kind", "--data_dir={text}", 2, "--data_dir {text}"),
            ("kind", "--json={folder}", 2, "--json {folder}"),
            ("unwritable", "--json={ro}/r.json", 2, "--json {ro}/r.json"),
            ("overwrite", "--json={glue}/train.tsv", 2, "{glue}/train.tsv"),
            ("conflict", "--max_seq_length=2", 2, "--max_seq_length 2"),
        ],
    ),
    *cases(
        "benchmarks.glue_vs_transformers",
        "--data_dir={glue}",
        [
            ("number", "--batch=0", 2, "--batch"),
            ("number", "--seeds=1,1", 2, "--seeds"),
            ("number", "--seeds=0,-1", 2, "--seeds"),
            ("number", "--warmup_proportion=1.5", 2, "--warmup_proportion"),
            ("missing", "--data_dir={w}/none", 2, "--data_dir {w}/none"),
            ("missing", "--data_dir={folder}", 2, "{folder}/train.tsv"),
            ("missing", "--model_dir={w}/none", 2, "--model_dir {w}/none"),
            ("missing", "--ours {folder}", 2, "--ours {folder}/results.txt"),
            ("kind", "--model_dir={text}", 2, "--model_dir {text}"),
            ("kind", "--json={folder}", 2, "--json {folder}"),
            ("unwritable", "--json={ro}/r.json", 2, "--json {ro}/r.json"),
            ("overwrite", "--json={glue}/train.tsv", 2, "{glue}/train.tsv"),
            ("malformed", "--ours {bad_run}", 1, "{bad_run}: results.txt"),
            ("conflict", "--max_seq_length=2", 2, "--max_seq_length 2"),
        ],
    ),
    *cases(
        "benchmarks.loader_speed",
        "",
        [
            ("number", "--rows=0", 2, "--rows"),
            ("number", "--micro_batch=-1", 2, "--micro_batch"),
            ("number", "--rows=1e3", 2, "--rows"),
            ("missing", "--shards={w}/none", 2, "--shards {w}/none"),
            ("kind", "--shards={text}", 2, "--shards {text}"),
            ("empty", "--shards={notraining}", 1, "{notraining}"),
            ("empty", "--shards={empty_shards}", 1, "{empty_shards}/e_training_0.hdf5"),
            ("malformed", "--shards={bad_shards}", 1, "{bad_shards}/x_training_0.hdf5"),
        ],
    ),
    *cases(
        "run_pretraining",
        PRETRAIN,
        [
            ("special", "--vocab_file={fifo}", 2, "--vocab_file {fifo}"),
            ("special", "--config_file={fifo}", 2, "--config_file {fifo}"),
            ("special", "--resume_from_checkpoint --init_checkpoint={fifo}", 2, "{fifo}"),
            ("special", "--init_weights={fifo}", 2, "--init_weights {fifo}"),
            ("special", "--eval_dir={fifo_shards}", 1, "--eval_dir {fifo_shards}: no HDF5"),
        ],
    ),
    *cases(
        "run_squad",
        SQUAD,
        [
            ("special", "--do_predict --predict_file={fifo}", 2, "--predict_file {fifo}"),
            ("special", "--do_train --train_file={fifo}", 2, "--train_file {fifo}"),
        ],
    ),
    *cases(
        "run_glue",
        GLUE + " --data_dir={glue} --do_train",
        [("special", "--init_checkpoint={fifo}", 2, "{fifo}")],
    ),
    *cases(
        "create_pretraining_data",
        CPD + " --output_dir={out}",
        [("special", "--input_file={fifo}", 1, "{fifo}: is a named pipe")],
    ),
    *cases("inference", INFER, [("special", "--init_checkpoint={fifo}", 2, "{fifo}")]),
    *cases(
        "export_onnx",
        ONNX + " --output={out}/m.onnx",
        [("special", "--init_checkpoint={fifo}", 2, "{fifo}")],
    ),
    # size: a value that would exhaust memory or time is refused with its limit, before any
    # allocation; {huge} has 20 digits, {digits} 5,001.
    *cases(
        "run_pretraining",
        PRETRAIN,
        [
            ("size", "--train_batch_size={huge}", 2, "--train_batch_size: must be at most 1048576"),
            ("size", "--train_batch_size={digits}", 2, "--train_batch_size: is far too large"),
            ("size", "--gradient_accumulation_steps={huge}", 2, "--gradient_accumulation_steps"),
            ("size", "--max_seq_length=65537", 2, "--max_seq_length: must be at most 65536"),
            ("size", "--max_predictions_per_seq={huge}", 2, "--max_predictions_per_seq"),
            ("size", "--max_steps=1e300", 2, "--max_steps: must be at most 1099511627776"),
            ("size", "--max_steps=1e400", 2, "--max_steps: is far too large"),
            ("size", "--steps_this_run={huge}", 2, "--steps_this_run"),
            ("size", "--log_freq=1e20", 2, "--log_freq"),
            ("size", "--eval_batch_size={huge}", 2, "--eval_batch_size"),
            ("size", "--eval_max_samples={digits}", 2, "--eval_max_samples"),
            ("size", "--bin_size={huge}", 2, "--bin_size"),
            ("size", "--num_workers=5000", 2, "--num_workers: must be at most 4096"),
            ("size", "--local_rank={huge}", 2, "--local_rank"),
            ("size", "--init_loss_scale=1e300", 2, "--init_loss_scale: must be at most"),
            ("size", "--config_file={huge_config}", 1, "{huge_config}: 'vocab_size' must be at"),
            ("size", "--config_file={wide_config}", 1, "{wide_config}: the sizes describe"),
        ],
    ),
    *cases(
        "run_squad",
        SQUAD + " --do_predict --predict_file={squad}",
        [
            ("size", "--predict_batch_size={huge}", 2, "--predict_batch_size: must be at most"),
            ("size", "--max_seq_length={digits}", 2, "--max_seq_length: is far too large"),
            ("size", "--doc_stride={huge}", 2, "--doc_stride"),
            ("size", "--max_query_length={huge}", 2, "--max_query_length"),
            ("size", "--n_best_size={huge}", 2, "--n_best_size"),
            ("size", "--max_answer_length={huge}", 2, "--max_answer_length"),
            ("size", "--do_train --train_file={squad} --train_batch_size={huge}", 2, "--train_b"),
            (
                "size",
                "--do_train --train_file={squad} --num_train_epochs=1e300",
                2,
                "--num_train_e",
            ),
            ("size", "--do_train --train_file={squad} --max_steps=1e300", 2, "--max_steps"),
            ("size", "--config_file={digits_config}", 1, "{digits_config}: cannot be read as JSON"),
        ],
    ),
    *cases(
        "run_glue",
        GLUE + " --do_eval --data_dir={glue}",
        [
            ("size", "--eval_batch_size={huge}", 2, "--eval_batch_size: must be at most 1048576"),
            ("size", "--max_seq_length={huge}", 2, "--max_seq_length"),
            ("size", "--do_train --train_batch_size={digits}", 2, "--train_batch_size"),
            ("size", "--do_train --log_freq={huge}", 2, "--log_freq"),
            ("size", "--config_file={wide_config}", 1, "{wide_config}"),
        ],
    ),
    *cases(
        "create_pretraining_data",
        CPD + " --output_file={out}/x.hdf5",
        [
            ("size", "--max_seq_length={huge}", 2, "--max_seq_length: must be at most 65536"),
            ("size", "--dupe_factor=1000000", 2, "--dupe_factor: must be at most 1000"),
            ("size", "--max_predictions_per_seq={huge}", 2, "--max_predictions_per_seq"),
            ("size", "--max_seq_length=16 --max_predictions_per_seq=17", 2, "--max_predictions"),
            ("size", "--processes=5000", 2, "--processes: must be at most 4096"),
            ("size", "--config_file={huge_config}", 1, "{huge_config}"),
        ],
    ),
    *cases(
        "inference",
        INFER,
        [
            ("size", "--max_seq_length={huge}", 2, "--max_seq_length: must be at most 65536"),
            ("size", "--n_best_size={digits}", 2, "--n_best_size"),
            ("size", "--max_answer_length={huge}", 2, "--max_answer_length"),
            ("size", "--local_rank={huge}", 2, "--local_rank"),
            ("size", "--config_file={wide_config}", 1, "{wide_config}"),
        ],
    ),
    *cases(
        "export_onnx",
        ONNX + " --output={out}/m.onnx",
        [
            ("size", "--check_shapes=1x8,{huge}x8", 2, "--check_shapes"),
            ("size", "--check_shapes=1048577x8", 2, "--check_shapes"),
            ("size", "--num_labels={huge} --task=classification", 2, "--num_labels"),
            ("size", "--repeats={huge}", 2, "--repeats"),
            ("size", "--config_file={huge_config}", 1, "{huge_config}"),
        ],
    ),
    *cases(
        "convert_checkpoint",
        "--input={ckpt} --output={out}/x.pt",
        [("size", "--config_file={wide_config}", 1, "{wide_config}")],
    ),
    *cases(
        "data.verify",
        "",
        [
            ("size", "{shards} --max_seq_length={huge}", 2, "--max_seq_length"),
            ("size", "{shards} --expected_shards={digits}", 2, "--expected_shards"),
            ("size", "{shards} --config_file={huge_config}", 1, "{huge_config}"),
        ],
    ),
    *cases(
        "data.pipeline",
        "--working_dir={folder}",
        [
            ("size", "hdf5 --dupe_factor=100000", 2, "--dupe_factor: must be at most 1000"),
            ("size", "shard --n_training_shards={huge}", 2, "--n_training_shards"),
            ("size", "hdf5 --max_seq_length=16 --max_predictions_per_seq=20", 2, "--max_pred"),
            ("size", "hdf5 --n_processes=5000", 2, "--n_processes"),
        ],
    ),
    *cases(
        "data.bertPrep",
        "--action=create_hdf5_files --dataset=wikicorpus_en",
        [
            ("size", "--n_processes={huge}", 2, "--n_processes: must be at most 4096"),
            ("size", "--dupe_factor={huge}", 2, "--dupe_factor"),
            ("size", "--max_seq_length={huge}", 2, "--max_seq_length"),
            ("size", "--n_test_shards={huge}", 2, "--n_test_shards"),
        ],
    ),
    *cases(
        "benchmarks.loader_speed",
        "",
        [
            ("size", "--micro_batch={huge}", 2, "--micro_batch: must be at most 1048576"),
            ("size", "--rows={digits}", 2, "--rows: is far too large"),
        ],
    ),
    # message: values and files that reached Python's, torch's or the socket's internals, which
    # answered in their own words (RuntimeError: value cannot be converted to type float without
    # overflow; RecursionError; ValueError: Exceeds the limit (4300 digits); OverflowError:
    # timestamp out of range; the ONNX exporter's ConversionError), now one line naming the flag
    # or file.
    *cases(
        "run_pretraining",
        PRETRAIN,
        [
            ("message", "--learning_rate=1e300", 2, "--learning_rate: must be at most 1000"),
            (
                "message",
                "--config_file={deep_json}",
                1,
                "{deep_json}: cannot be read as JSON (nested",
            ),
            (
                "message",
                "--config_file={digits_config}",
                1,
                "{digits_config}: cannot be read as JSON",
            ),
        ],
    ),
    *cases(
        "run_squad",
        SQUAD + " --do_predict --predict_file={squad}",
        [
            (
                "message",
                "--predict_file={deep_json}",
                1,
                "{deep_json}: cannot be read as JSON (nested",
            ),
            ("message", "--do_train --train_file={squad} --learning_rate=1e300", 2, "--learning_r"),
            ("message", "--config_file={deep_json}", 1, "{deep_json}"),
        ],
    ),
    *cases(
        "run_glue",
        GLUE + " --do_eval --data_dir={glue}",
        [
            (
                "message",
                "--config_file={digits_config}",
                1,
                "{digits_config}: cannot be read as JSON",
            ),
            ("message", "--do_train --learning_rate=1e300", 2, "--learning_rate"),
        ],
    ),
    *cases("inference", INFER, [("message", "--config_file={deep_json}", 1, "{deep_json}")]),
    *cases(
        "export_onnx",
        ONNX + " --output={out}/m.onnx",
        [
            ("message", "--opset=1000", 2, "--opset 1000: the installed onnx"),
            ("message", "--config_file={deep_json}", 1, "{deep_json}"),
        ],
    ),
    *cases(
        "convert_checkpoint",
        "--input={ckpt} --output={out}/x.pt",
        [
            (
                "message",
                "--config_file={digits_config}",
                1,
                "{digits_config}: cannot be read as JSON",
            )
        ],
    ),
    *cases(
        "evaluate_squad",
        "",
        [
            ("message", "{deep_json} {preds}", 1, "{deep_json}: cannot be read as JSON (nested"),
            ("message", "{squad} {deep_json}", 1, "{deep_json}: cannot be read as JSON (nested"),
        ],
    ),
    *cases(
        "data.verify", "", [("message", "{shards} --config_file={deep_json}", 1, "{deep_json}")]
    ),
    *cases(
        "data.download",
        "--dataset=squad --download_dir={out}",
        [
            ("message", "--timeout=1e300", 2, "--timeout: must be at most 86400"),
            ("message", "--rate_window=1e300", 2, "--rate_window"),
            ("message", "--retries=100000", 2, "--retries: must be at most 100"),
        ],
    ),
    *cases(
        "scripts.plot_loss", "--output={out}/loss.png", [("message", "{deep_log}", 1, "{deep_log}")]
    ),
    *cases(
        "scripts.summarize_runs",
        "--output={out}/s.md",
        [("message", "--squad={deep_log}", 1, "{deep_log}")],
    ),
]

# Wrong content in a valid container, and colliding outputs. Weights that a training run loads
# after its log is open are tested in test_checkpoint.py; here the scripts that load them first.
CASES += [
    *cases(
        "run_pretraining",
        PRETRAIN,
        [
            (
                "content",
                "--config_file={long_number_config}",
                1,
                "{long_number_config}: cannot be read as JSON",
            ),
            ("content", "--input_dir={linked_shards}", 1, "l_training_0.hdf5: input_ids is an ext"),
            ("collision", "--json-summary={out}/ckpt_5.pt", 2, "--json-summary {out}/ckpt_5.pt"),
            ("collision", "--json-summary={out}/.bert-run.lock", 2, "--json-summary {out}/.bert"),
            ("collision", "--tensorboard={out}/log.json", 2, "--tensorboard {out}/log.json is"),
            ("collision", "--json-summary={held_log}", 1, "--json-summary {held_log} is in use"),
        ],
    ),
    *cases(
        "run_squad",
        SQUAD + " --do_predict --predict_file={squad}",
        [
            ("content", "--config_file={deep_config}", 1, "{deep_config}: cannot be read as JSON"),
            ("content", "--predict_file={huge_squad}", 1, "{huge_squad}: cannot be read as JSON"),
            ("content", "--predict_file={deep_squad}", 1, "{deep_squad}: cannot be read as JSON"),
            (
                "collision",
                "--json-summary={out}/predictions.json",
                2,
                "--json-summary {out}/predictions.json is --output_dir's predictions.json",
            ),
            ("collision", "--json-summary={out}/null_odds.json", 2, "--json-summary {out}/null"),
            (
                "collision",
                "--do_train --train_file={squad} --json-summary={out}/pytorch_model.bin",
                2,
                "--json-summary {out}/pytorch_model.bin",
            ),
            ("collision", "--tensorboard={out}/nbest_predictions.json", 2, "--tensorboard {out}"),
            ("collision", "--json-summary={held_log}", 1, "--json-summary {held_log} is in use"),
        ],
    ),
    *cases(
        "run_glue",
        GLUE + " --do_eval --data_dir={glue}",
        [
            (
                "content",
                "--config_file={long_number_config}",
                1,
                "{long_number_config}: cannot be read as JSON",
            ),
            ("collision", "--json-summary={out}/results.txt", 2, "--json-summary {out}/results"),
            (
                "collision",
                "--do_train --json-summary={out}/bert_config.json",
                2,
                "--json-summary {out}/bert_config.json",
            ),
            ("collision", "--tensorboard={out}/log.json", 2, "--tensorboard {out}/log.json is"),
        ],
    ),
    *cases(
        "create_pretraining_data",
        CPD + " --output_file={out}/x.hdf5",
        [
            (
                "content",
                "--config_file={deep_config} --max_seq_length=32",
                1,
                "{deep_config}: cannot be read as JSON",
            ),
            ("collision", "--output_file={held_shard}", 1, "--output_file {held_shard} is in use"),
        ],
    ),
    *cases(
        "inference",
        INFER,
        [
            ("content", "--init_checkpoint={int_pt}", 1, "{int_pt}: bert.embeddings"),
            (
                "content",
                "--config_file={long_number_config}",
                1,
                "{long_number_config}: cannot be read",
            ),
        ],
    ),
    *cases(
        "export_onnx",
        ONNX + " --output={out}/m.onnx",
        [
            ("content", "--init_checkpoint={bool_pt}", 1, "{bool_pt}: bert.embeddings"),
            ("collision", "--json={out}/m.onnx", 2, "--json {out}/m.onnx is --output"),
        ],
    ),
    *cases(
        "convert_checkpoint",
        "--output={out}/x.pt",
        [("content", "--input={complex_pt}", 1, "{complex_pt}: bert.embeddings")],
    ),
    *cases(
        "evaluate_squad",
        "",
        [("content", "{squad} {huge_preds}", 1, "predictions file {huge_preds}: cannot be read")],
    ),
]

PROGS = {  # the name each script puts before "error:"
    "run_pretraining": "run_pretraining.py",
    "run_squad": "run_squad.py",
    "run_glue": "run_glue.py",
    "create_pretraining_data": "create_pretraining_data.py",
    "inference": "inference.py",
    "export_onnx": "export_onnx.py",
    "convert_checkpoint": "convert_checkpoint.py",
    "evaluate_squad": "evaluate_squad.py",
    "data.verify": "verify",
    "data.pipeline": "data.pipeline",
    "data.bertPrep": "bertPrep.py",
    "data.download": "data.download",
    "data.make_sample_corpus": "data.make_sample_corpus",
    "scripts.plot_loss": "plot_loss.py",
    "scripts.summarize_runs": "summarize_runs.py",
    "benchmarks.squad_inference": "benchmarks.squad_inference",
    "benchmarks.glue_mrpc_vs_hf": "benchmarks.glue_mrpc_vs_hf",
    "benchmarks.glue_vs_transformers": "benchmarks.glue_vs_transformers",
    "benchmarks.loader_speed": "benchmarks.loader_speed",
}


# ----------------------------------------------------------------------------- the test folder


def write_shard(path: Path, rows: int, seq: int = 32, pred: int = 5) -> None:
    """A shard in NVIDIA's layout: [CLS] tokens [SEP], some masked positions."""
    ids = np.zeros((rows, seq), "i4")
    ids[:, 0], ids[:, 1:9], ids[:, 9] = 101, 2000, 102
    data = {
        "input_ids": ids,
        "input_mask": (ids != 0).astype("i1"),
        "segment_ids": np.zeros((rows, seq), "i1"),
        "masked_lm_positions": np.tile(np.arange(1, pred + 1, dtype="i4"), (rows, 1)),
        "masked_lm_ids": np.full((rows, pred), 2001, "i4"),
        "next_sentence_labels": np.zeros(rows, "i1"),
    }
    write_shard_file(path, data)


def config_file(path: Path, **changes) -> str:
    path.write_text(json.dumps(json.loads(TINY_CONFIG.read_text()) | changes))
    return str(path)


def write_size_files(w: Path, paths: dict[str, str]) -> None:
    """The size and message cases' values and files: numbers of 20 and 5,001 digits, configs
    asking for terabytes, JSON beyond the reader's limits (a huge number, deep nesting)."""
    paths["huge"] = "9" * 20
    paths["digits"] = "1" + "0" * 5000
    paths["huge_config"] = config_file(w / "huge_config.json", vocab_size=10**20)
    paths["wide_config"] = config_file(
        w / "wide_config.json", hidden_size=2**15, vocab_size=4 * 10**6
    )
    (w / "digits_config.json").write_text('{"vocab_size": 1' + "0" * 5000 + "}")
    paths["digits_config"] = str(w / "digits_config.json")
    (w / "deep.json").write_text("[" * 100000 + "]" * 100000)
    paths["deep_json"] = str(w / "deep.json")
    (w / "deep_log.json").write_text("DLLL " + '{"a": ' * 100000 + "1" + "}" * 100000 + "\n")
    paths["deep_log"] = str(w / "deep_log.json")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """The files the cases name; the output location `out` does not exist."""
    w = tmp_path_factory.mktemp("bad_input")
    paths = {
        "w": str(w),
        "out": str(w / "out"),
        "vocab": str(UNCASED_VOCAB),
        "config": str(TINY_CONFIG),
    }
    (w / "folder").mkdir()
    paths["folder"] = str(w / "folder")
    (w / "ro").mkdir()
    paths["ro"] = str(w / "ro")
    (w / "text.txt").write_text("One sentence here .\nAnother one .\n\nA second document .\n")
    paths["text"] = str(w / "text.txt")
    (w / "empty.txt").write_bytes(b"")
    paths["empty_text"] = str(w / "empty.txt")
    (w / "latin.txt").write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    paths["latin"] = str(w / "latin.txt")
    shutil.copy(UNCASED_VOCAB, w / "vocab.txt")
    paths["bad_config"] = str(w / "bad_config.json")
    (w / "bad_config.json").write_text('{"vocab_size": 30522, "hidden_size": ')
    paths["nan_config"] = config_file(w / "nan_config.json", initializer_range=float("nan"))
    paths["small_config"] = config_file(w / "small_config.json", vocab_size=100)
    paths["short_config"] = config_file(w / "short_config.json", max_position_embeddings=16)
    for name, rows in (("shards", 8), ("empty_shards", 0)):
        (w / name).mkdir()
        write_shard(w / name / f"{name[0]}_training_0.hdf5", rows)
        paths[name] = str(w / name)
    (w / "unmasked").mkdir()  # held-out samples without a masked position: nothing to score
    for name in ("u_test_0.hdf5", "u_training_0.hdf5"):
        write_shard(w / "unmasked" / name, 8)
        with h5py.File(w / "unmasked" / name, "r+") as shard:
            shard["masked_lm_positions"][...] = 0
    paths["unmasked"] = str(w / "unmasked")
    (w / "notraining").mkdir()
    write_shard(w / "notraining" / "part_0.hdf5", 8)
    paths["notraining"] = str(w / "notraining")
    (w / "bad_shards").mkdir()
    (w / "bad_shards" / "x_training_0.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    paths["bad_shards"] = str(w / "bad_shards")
    question = {
        "id": "q1",
        "question": "What does Harry like?",
        "answers": [{"text": "pizza", "answer_start": 12}],
    }
    paragraph = {"context": "Harry likes pizza.", "qas": [question]}
    squad_data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [paragraph]}]}
    (w / "squad.json").write_text(json.dumps(squad_data))
    paths["squad"] = str(w / "squad.json")
    (w / "pred_out").mkdir()  # a data file named like a prediction output
    (w / "pred_out" / "predictions.json").write_text(json.dumps(squad_data))
    paths["pred_out"] = str(w / "pred_out")
    (w / "noq.json").write_text(json.dumps({"version": "1.1", "data": []}))
    paths["noq"] = str(w / "noq.json")
    (w / "bad.json").write_text('{"version": "1.1", "data": [')
    paths["bad_json"] = str(w / "bad.json")
    (w / "preds.json").write_text(json.dumps({"q1": "pizza"}))
    paths["preds"] = str(w / "preds.json")
    (w / "empty_preds.json").write_text("{}")
    paths["empty_preds"] = str(w / "empty_preds.json")
    sample = REPO_ROOT / "data" / "sample" / "glue" / "MRPC"
    shutil.copytree(sample, w / "MRPC")
    paths["glue"] = str(w / "MRPC")
    (w / "MRPC" / "test.tsv").unlink()
    header = (sample / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()[0]
    (w / "MRPC_header").mkdir()
    (w / "MRPC_header" / "dev.tsv").write_text(header + "\n")
    paths["glue_header"] = str(w / "MRPC_header")
    (w / "MRPC_bad").mkdir()
    lines = (sample / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()
    lines[3] = lines[3].replace("\t", " ", 1)
    (w / "MRPC_bad" / "dev.tsv").write_text("\n".join(lines) + "\n")
    paths["glue_bad"] = str(w / "MRPC_bad")
    (w / "bad_run").mkdir()  # a run_glue.py output folder whose results.txt is not JSON
    (w / "bad_run" / "results.txt").write_text("acc 0.8\n")
    paths["bad_run"] = str(w / "bad_run")
    log = [{"type": "LOG", "step": [0, s], "data": {"average_loss": 5.0 - s}} for s in (1, 2)]
    log.append({"type": "LOG", "step": [], "data": {"final_loss": 3.0, "exact_match": 1.0}})
    (w / "log.json").write_text("".join(f"DLLL {json.dumps(r)}\n" for r in log))
    paths["log"] = str(w / "log.json")
    shutil.copy(w / "log.json", w / "log.png")  # a log that happens to end in .png
    paths["log_png"] = str(w / "log.png")
    (w / "noloss.json").write_text('DLLL {"type": "LOG", "step": "PARAMETER", "data": {}}\n')
    paths["noloss_log"] = str(w / "noloss.json")
    (w / "ft").mkdir()
    (w / "ft" / "pytorch_model.bin").write_bytes(b"weights from an earlier fine-tuning")
    paths["ft"] = str(w / "ft")
    paths["ckpt"] = str(w / "ft" / "pytorch_model.bin")
    (w / "junk.pt").write_bytes(b"not a checkpoint at all")
    paths["junk_pt"] = str(w / "junk.pt")
    os.mkfifo(w / "pipe.pt")  # a named pipe: opening it to read would wait for a writer
    paths["fifo"] = str(w / "pipe.pt")
    (w / "fifo_shards").mkdir()
    os.mkfifo(w / "fifo_shards" / "x_test_0.hdf5")
    paths["fifo_shards"] = str(w / "fifo_shards")
    for name, context, answers in (  # SQuAD files that leave nothing to train on or score
        ("squad_blank", " \t\n ", [{"text": " ", "answer_start": 0}]),
        ("squad_ctrl", "\x01 \x02", [{"text": "\x01", "answer_start": 0}]),
        ("squad_lost", "Harry likes pizza.", [{"text": "pasta", "answer_start": 12}]),
        ("squad_noans", "Harry likes pizza.", []),
    ):
        lost = dict(question, answers=answers)
        data = {"version": "1.1", "data": [{"paragraphs": [{"context": context, "qas": [lost]}]}]}
        (w / f"{name}.json").write_text(json.dumps(data))
        paths[name] = str(w / f"{name}.json")
    unreadable = dict(question, question="\x01\x02")  # a question that gives no token
    data = {"data": [{"paragraphs": [{"context": "Harry likes pizza.", "qas": [unreadable]}]}]}
    (w / "squad_qctrl.json").write_text(json.dumps(data))
    paths["squad_qctrl"] = str(w / "squad_qctrl.json")
    (w / "other_preds.json").write_text(json.dumps({"q9": "pizza"}))
    paths["other_preds"] = str(w / "other_preds.json")
    shutil.copytree(sample, w / "MRPC_notest")  # a test file of only its header
    (w / "MRPC_notest" / "test.tsv").write_text("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
    paths["glue_notest"] = str(w / "MRPC_notest")
    (w / "MRPC_blank").mkdir()  # rows whose two sentences are empty: no text to classify
    (w / "MRPC_blank" / "dev.tsv").write_text(header + "\n1\t1\t2\t\t \n0\t3\t4\t \t\n")
    paths["glue_blank"] = str(w / "MRPC_blank")
    (w / "QQP").mkdir()  # two rows, both broken, both skipped: nothing left to score
    qqp_rows = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "0\t1\t2\tQ?", "1\tR?\t0"]
    (w / "QQP" / "dev.tsv").write_text("\n".join(qqp_rows) + "\n")
    paths["qqp_broken"] = str(w / "QQP")
    (w / "pq_empty").mkdir()  # an LDDL folder whose one file has the columns and no rows
    columns = {"A": pa.string(), "B": pa.string(), "is_random_next": pa.bool_()}
    empty_table = pa.table({name: pa.array([], kind) for name, kind in columns.items()})
    pq.write_table(empty_table, w / "pq_empty" / "shard-0.parquet")
    paths["pq_empty"] = str(w / "pq_empty")
    model = BertForPreTraining(BertConfig.from_json_file(TINY_CONFIG))  # no QA or other head
    save_nvidia_checkpoint(w / "pretrained.pt", model.state_dict(), model.config)
    paths["pretrained_pt"] = str(w / "pretrained.pt")
    write_size_files(w, paths)
    add_wrong_content_and_held_outputs(w, paths, model)
    return paths


def add_wrong_content_and_held_outputs(w: Path, paths: dict[str, str], model) -> None:
    """Files of the content and collision cases: weights of the wrong dtype, JSON beyond the
    integer-string or recursion limits, shards linking other files, outputs live runs hold."""
    state = model.state_dict()
    for name, dtype in (("int_pt", torch.int64), ("bool_pt", torch.bool), ("complex_pt", None)):
        changed = {k: v.to(dtype) if dtype else v.to(torch.complex64) for k, v in state.items()}
        paths[name] = str(w / f"{name}.pt")
        save_nvidia_checkpoint(paths[name], changed, model.config)
    huge, deep = '{"vocab_size": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000
    for name, text in (
        ("long_number_config", huge),
        ("deep_config", deep),
        ("huge_squad", huge),
        ("deep_squad", deep),
        ("huge_preds", '{"q1": ' + "1" * 5000 + "}"),
    ):
        paths[name] = str(w / f"{name}.json")
        Path(paths[name]).write_text(text)
    (w / "linked_shards").mkdir()
    write_shard(w / "linked_shards" / "l_training_0.hdf5", 8)
    with h5py.File(w / "linked_shards" / "l_training_0.hdf5", "r+") as shard:
        with h5py.File(w / "elsewhere.h5", "w") as other:
            other["ids"] = shard["input_ids"][()]
        del shard["input_ids"]
        shard["input_ids"] = h5py.ExternalLink(str(w / "elsewhere.h5"), "ids")
    paths["linked_shards"] = str(w / "linked_shards")
    paths["held_log"] = str(w / "held" / "log.json")  # another live run writes this log
    plant_file_lock(Path(paths["held_log"]))
    paths["held_shard"] = str(w / "held" / "x.hdf5")  # and makes this shard
    plant_file_lock(Path(paths["held_shard"]))


@pytest.fixture
def read_only(world, monkeypatch):
    """`ro` cannot be written: by its permission bits, or (root ignores them) by the probe."""
    ro = Path(world["ro"])
    ro.chmod(0o500)
    if os.geteuid() == 0:
        real = cli.probe_writable

        def probe(folder):
            if Path(folder).resolve() == ro.resolve():
                raise PermissionError(13, "Permission denied", str(folder))
            real(folder)

        monkeypatch.setattr(cli, "probe_writable", probe)
    yield
    ro.chmod(0o700)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`: files with size and mtime, folders by name (a folder's own
    mtime changes when a write probe comes and goes)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = ("dir",)
        for name in files:
            status = os.stat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (
                status.st_size,
                status.st_mtime_ns,
            )
    return found


def run_in_process(case: Case, argv: list[str], capsys) -> tuple[int, str]:
    result = run_main(case.script, argv, capsys)
    return result.returncode, result.stderr


def run_subprocess(case: Case, argv: list[str]) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "BERT_DEBUG"}
    result = subprocess.run(
        [sys.executable, "-m", case.script, *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return result.returncode, result.stderr + result.stdout


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(case, world, read_only, capsys, monkeypatch):
    if "--dtype=fp16" in case.argv and torch.cuda.is_available():
        pytest.skip(FP16_RUNS_ON_THE_GPU)
    monkeypatch.delenv("BERT_DEBUG", raising=False)
    monkeypatch.setenv("BERT_PREP_WORKING_DIR", f"{world['ro']}/work")
    monkeypatch.chdir(world["folder"])  # a default output (results/...) would land here
    argv = [arg.format(**world) for arg in case.argv]
    before = snapshot(Path(world["w"]))
    if case.subprocess:
        status, err = run_subprocess(case, argv)
    else:
        status, err = run_in_process(case, argv, capsys)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == case.status, err
    assert len(errors) == 1, err
    assert errors[0].startswith(f"{PROGS[case.script]}: error: "), errors[0]
    assert case.names.format(**world) in errors[0], errors[0]
    assert snapshot(Path(world["w"])) == before, "the failed run created or changed files"


def test_every_script_has_a_battery_of_eight_or_more():
    per_script = {script: sum(c.script == script for c in CASES) for script in PROGS}
    assert min(per_script.values()) >= 8, per_script
    assert {c.kind for c in CASES} == set(KINDS)


# NVIDIA's flags, both generations (21.11 and HEAD), as its entry scripts declare them: each with
# a value its parser accepts. run_pretraining.py's --cuda_graphs is refused in one line instead.
NVIDIA_FLAGS = {
    "run_pretraining": "--input_dir=d --config_file=c --output_dir=o --vocab_file=v "
    "--bert_model=b --init_checkpoint=i --max_seq_length=128 --max_predictions_per_seq=20 "
    "--train_batch_size=32 --learning_rate=5e-5 --num_train_epochs=3.0 --max_steps=1000 "
    "--warmup_proportion=0.01 --local_rank=0 --seed=42 --gradient_accumulation_steps=1 --fp16 "
    "--amp --loss_scale=0.0 --log_freq=1.0 --checkpoint_activations --resume_from_checkpoint "
    "--resume_step=-1 --num_steps_per_checkpoint=100 --skip_checkpoint --phase2 --resume_phase2 "
    "--allreduce_post_accumulation --allreduce_post_accumulation_fp16 --phase1_end_step=7038 "
    "--init_loss_scale=1048576 --do_train --json-summary=j --use_env --disable_progress_bar "
    "--steps_this_run=-1 --profile --profile-start=0 --num_workers=4 "
    "--no_dense_sequence_output --disable_jit_fusions",
    "run_squad": "--bert_model=b --output_dir=o --init_checkpoint=i --train_file=t "
    "--predict_file=p --max_seq_length=384 --doc_stride=128 --max_query_length=64 --do_train "
    "--do_predict --do_eval --train_batch_size=32 --predict_batch_size=8 --learning_rate=5e-5 "
    "--num_train_epochs=3.0 --max_steps=-1.0 --warmup_proportion=0.1 --n_best_size=20 "
    "--max_answer_length=30 --verbose_logging --no_cuda --do_lower_case --seed=42 "
    "--gradient_accumulation_steps=1 --local_rank=0 --fp16 --amp --loss_scale=0 "
    "--version_2_with_negative --null_score_diff_threshold=0.0 --vocab_file=v --config_file=c "
    "--log_freq=50 --json-summary=j --eval_script=e --use_env --skip_checkpoint "
    "--disable-progress-bar --skip_cache --cache_dir=d --profile",
    "run_glue": "--data_dir=d --bert_model=b --task_name=mrpc --output_dir=o "
    "--init_checkpoint=i --vocab_file=v --config_file=c --max_seq_length=128 --do_train "
    "--do_eval --do_predict --do_lower_case --train_batch_size=32 --eval_batch_size=8 "
    "--learning_rate=5e-5 --num_train_epochs=3.0 --max_steps=-1.0 --warmup_proportion=0.1 "
    "--no_cuda --local_rank=0 --seed=1 --gradient_accumulation_steps=1 --fp16 --amp "
    "--loss_scale=0 --server_ip=h --server_port=p --skip_checkpoint",
}


@pytest.mark.parametrize("script", list(NVIDIA_FLAGS))
def test_every_nvidia_flag_is_accepted(script):
    module = importlib.import_module(script)
    args = module.parse_arguments(NVIDIA_FLAGS[script].split())  # all at once: no error
    assert args.output_dir == "o" and args.init_checkpoint == "i"
    if script == "run_pretraining":
        assert args.profile_start == 0 and args.disable_jit_fusions


# --------------------------------------------------------------------------------- a full disk


def full_disk_case(script: str, argv: str, names: str) -> Case:
    return Case(script, "full", tuple(argv.split()), 1, names, extra=argv)


def _on_full_disk(base: str) -> str:
    return base.replace("{out}", "{full}/out")


#: Outputs on a disk with no room left (`{full}`, simulated in-process): refused before the work
#: where the size is known (fine-tuned weights), else one line when the write fails, exit 1.
FULL_DISK_CASES = [
    full_disk_case(
        "run_squad",
        _on_full_disk(SQUAD) + " --do_train --train_file={squad}",
        "--output_dir {full}/out: 0.0 MB free",
    ),
    full_disk_case(
        "run_glue",
        _on_full_disk(GLUE) + " --do_train --data_dir={glue}",
        "--output_dir {full}/out: 0.0 MB free",
    ),
    full_disk_case(
        "create_pretraining_data",
        CPD + " --output_file={full}/x.hdf5",
        "{full}/x.hdf5: cannot write its lock file there (No space left on device)",
    ),
    full_disk_case(
        "convert_checkpoint",
        "--input={pretrained_pt} --output={full}/x.pt",
        "cannot write {full}/x.pt: No space left on device",
    ),
    full_disk_case(
        "convert_checkpoint",
        "--input={pretrained_pt} --output={full}/hf --format=hf",
        "cannot write {full}/hf: No space left on device",
    ),
    full_disk_case(
        "evaluate_squad",
        "{squad} {preds} --out-file={full}/eval.json",
        "cannot write {full}/eval.json: No space left on device",
    ),
    full_disk_case(
        "scripts.plot_loss",
        "{log} --output={full}/loss.png",
        "cannot write {full}/loss.png: No space left on device",
    ),
]


@pytest.mark.parametrize("case", FULL_DISK_CASES, ids=[case.id for case in FULL_DISK_CASES])
def test_a_full_disk_is_one_line_and_leaves_nothing(case, world, capsys, monkeypatch):
    full = Path(world["w"]) / "full"
    full.mkdir(exist_ok=True)
    fill_disk(monkeypatch, full, free=0)
    monkeypatch.delenv("BERT_DEBUG", raising=False)
    argv = [arg.format(**world, full=full) for arg in case.argv]
    before = snapshot(Path(world["w"]))
    status, err = run_in_process(case, argv, capsys)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert status == case.status and len(errors) == 1, err
    assert errors[0].startswith(f"{PROGS[case.script]}: error: "), errors[0]
    assert case.names.format(**world, full=full) in errors[0], errors[0]
    assert snapshot(Path(world["w"])) == before, "the failed run created or changed files"
