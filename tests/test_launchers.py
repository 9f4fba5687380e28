"""The shell launchers against NVIDIA's: the python command lines that the presets and NVIDIA's
documented command lines produce, flag by flag, in both generations (21.11 and HEAD); argument
forms, checks and hostile input; run.sub under fake SLURM commands; docker/launch.sh under a
fake docker; a checkout whose path holds spaces; a real 21.11-form SQuAD run.

The expected command lines come from a transcription of NVIDIA's launchers and presets of
both generations (the `nvidia_*` functions and preset tables below), not from ours. Our
launchers print their commands with DRY_RUN=1, one per line, quoted for shlex.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support import REPO_ROOT, TINY_CONFIG, launcher_env, official_squad_v1_scores

# NVIDIA's container paths, as its launchers and presets spell them. Its launchers run in
# /workspace/bert, where our container (scripts/docker/launch.sh) mounts this repository, so a
# relative NVIDIA path is relative to that folder too.
CODE = "<CODE>"  # /workspace/bert: NVIDIA's CODEDIR and working directory; here the checkout
PREP = "<PREP>"  # $BERT_PREP_WORKING_DIR
GOOGLE_VOCAB = f"{PREP}/download/google_pretrained_weights/uncased_L-24_H-1024_A-16/vocab.txt"
HDF5 = (
    "hdf5_lower_case_1_seq_len_{}_max_pred_{}_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5"
)
NVIDIA_21_11_PRESET_DATA = f"{PREP}/{HDF5}_shard_1472_test_split_10/books_wiki_en_corpus/training/"

# Deliberate differences in values: (NVIDIA's value, ours, why).
PATH_MAP = [
    (
        GOOGLE_VOCAB,
        f"{CODE}/vocab/vocab",
        "the bundled copy of the same file (same sha256; see test_paths_the_documented_lines_use)",
    ),
    (
        NVIDIA_21_11_PRESET_DATA.format(128, 20),
        f"{PREP}/{HDF5.format(128, 20)}/wikicorpus_en/",
        "NVIDIA's 21.11 presets named a folder its data scripts never wrote; ours name the folder "
        "data/create_datasets_from_start.sh writes",
    ),
    (
        NVIDIA_21_11_PRESET_DATA.format(512, 80),
        f"{PREP}/{HDF5.format(512, 80)}/wikicorpus_en/",
        "as above, phase 2",
    ),
]
# Flags our launchers add on purpose, with why; no other flag may differ from NVIDIA's.
ADDED_FLAGS = {
    "--json-summary": "SQuAD/GLUE: dllogger's JSON goes into the output folder (SQuAD's is also "
    "copied to ./results, where NVIDIA's was)",
    "--bin_size": "HEAD form, phase 2: HEAD's length bins lived in its LDDL data folders; our "
    "readers bin while loading",
    "--dynamic_masking": "HEAD form, masking=dynamic: the same, for masking",
}
# NVIDIA preset values we fix, with why.
FIXED_PRESETS = {
    ("squad", "dgx2_16gpu_fp32"): (4, "fp32", "NVIDIA's preset passed fp16 despite its name"),
}


def _words(text: str) -> list[str]:
    return text.split()


SQUAD_21_11 = _words(
    "init_checkpoint epochs batch_size learning_rate precision num_gpu seed squad_dir vocab_file "
    "OUT_DIR mode CONFIG_FILE max_steps"
)
SQUAD_HEAD = [*SQUAD_21_11[:4], "warmup_proportion", *SQUAD_21_11[4:]]
GLUE_ARGS = _words(
    "init_checkpoint data_dir vocab_file config_file out_dir task_name num_gpu batch_size "
    "gradient_accumulation_steps learning_rate warmup_proportion epochs max_steps precision seed "
    "mode"
)
PRETRAIN_ARGS = _words(
    "train_batch_size learning_rate precision num_gpus warmup_proportion train_steps "
    "save_checkpoint_steps resume_training create_logfile accumulate_gradients "
    "gradient_accumulation_steps seed job_name allreduce_post_accumulation "
    "allreduce_post_accumulation_fp16 train_batch_size_phase2 learning_rate_phase2 "
    "warmup_proportion_phase2 train_steps_phase2 gradient_accumulation_steps_phase2 "
    "DATA_DIR_PHASE1 DATA_DIR_PHASE2 CODEDIR init_checkpoint wikipedia_source num_dask_workers "
    "num_shards_per_worker num_workers sample_ratio phase2_bin_size masking BERT_CONFIG"
)


def _positional(names: list[str], args: list[str]):
    """NVIDIA's ${N:-default}: a missing or empty argument takes the default."""
    given = dict(zip(names, args, strict=False))
    return lambda name, default: given.get(name) or default


def _in_code_dir(path: str) -> str:
    return path if path.startswith(("/", "<")) else f"{CODE}/{path}"


def nvidia_squad(version: str, args: list[str]) -> tuple[int, list[str]]:
    """scripts/run_squad.sh of NVIDIA 21.11 or HEAD: (processes, the flags of run_squad.py)."""
    arg = _positional(SQUAD_21_11 if version == "21.11" else SQUAD_HEAD, args)
    squad_dir = arg("squad_dir", f"{PREP}/download/squad/v1.1")
    batch = arg("batch_size", "4")
    train = [
        "--do_train",
        f"--train_file={squad_dir}/train-v1.1.json",
        f"--train_batch_size={batch}",
    ]
    predict = [
        "--do_predict",
        f"--predict_file={squad_dir}/dev-v1.1.json",
        f"--predict_batch_size={batch}",
    ]
    evaluate = [*predict, f"--eval_script={squad_dir}/evaluate-v1.1.py", "--do_eval"]
    mode = arg("mode", "train eval")
    mode_flags = {"train": train, "eval": evaluate, "prediction": predict}.get(mode)
    config = f"{CODE}/bert_config.json" if version == "21.11" else f"{CODE}/bert_configs/large.json"
    flags = [
        f"--init_checkpoint={arg('init_checkpoint', f'{CODE}/checkpoints/bert_uncased.pt')}",
        *(mode_flags or [*train, *evaluate]),
        "--do_lower_case",
        "--bert_model=bert-large-uncased",
        f"--learning_rate={arg('learning_rate', '3e-5')}",
        f"--seed={arg('seed', '1')}",
        f"--num_train_epochs={arg('epochs', '2.0')}",
        "--max_seq_length=384",
        "--doc_stride=128",
        f"--output_dir={arg('OUT_DIR', f'{CODE}/results/SQuAD')}",
        f"--vocab_file={arg('vocab_file', GOOGLE_VOCAB)}",
        f"--config_file={arg('CONFIG_FILE', config)}",
        f"--max_steps={arg('max_steps', '-1')}",
    ]
    if version == "HEAD":
        flags.append(f"--warmup_proportion={arg('warmup_proportion', '0.1')}")
    if arg("precision", "fp16") == "fp16":
        flags.append("--fp16")
    return int(arg("num_gpu", "8")), flags


def nvidia_glue(version: str, args: list[str]) -> tuple[int, list[str]]:
    """scripts/run_glue.sh of NVIDIA 21.11 or HEAD (the same but for the default config)."""
    arg = _positional(GLUE_ARGS, args)
    mode, batch = arg("mode", "train eval"), arg("batch_size", "16")
    config = f"{CODE}/bert_config.json" if version == "21.11" else f"{CODE}/bert_configs/large.json"
    flags = [f"--task_name={arg('task_name', 'mrpc')}"]
    if "train" in mode:
        flags += ["--do_train", f"--train_batch_size={batch}"]
    if "eval" in mode:
        flags.append("--do_eval")
    if "prediction" in mode:
        flags.append("--do_predict")
    if "eval" in mode or "prediction" in mode:
        flags.append(f"--eval_batch_size={batch}")
    flags += [
        f"--gradient_accumulation_steps={arg('gradient_accumulation_steps', '1')}",
        "--do_lower_case",
        "--data_dir",
        arg("data_dir", f"{PREP}/download/glue/MRPC/"),
        "--bert_model",
        "bert-large-uncased",
        "--seed",
        arg("seed", "2"),
        "--init_checkpoint",
        arg("init_checkpoint", f"{CODE}/checkpoints/bert_uncased.pt"),
        "--warmup_proportion",
        arg("warmup_proportion", "0.1"),
        "--max_seq_length",
        "128",
        "--learning_rate",
        arg("learning_rate", "2.4e-5"),
        "--num_train_epochs",
        arg("epochs", "3"),
        "--max_steps",
        arg("max_steps", "-1.0"),
        f"--vocab_file={arg('vocab_file', GOOGLE_VOCAB)}",
        f"--config_file={arg('config_file', config)}",
        "--output_dir",
        arg("out_dir", f"{CODE}/results/MRPC"),
    ]
    if arg("precision", "fp16") == "fp16":
        flags.append("--fp16")
    gpus = 1 if mode == "eval" else int(arg("num_gpu", "8"))
    return gpus, flags


def nvidia_pretraining(version: str, args: list[str]) -> tuple[int, list[str], list[str]]:
    """scripts/run_pretraining.sh of NVIDIA 21.11 or HEAD: (processes, phase 1, phase 2)."""
    arg = _positional(PRETRAIN_ARGS, args)
    if version == "21.11":
        data1 = f"{PREP}/{HDF5.format(128, 20)}/wikicorpus_en/"
        data2 = f"{PREP}/{HDF5.format(512, 80)}/wikicorpus_en/"
        config, model = "bert_config.json", ["--bert_model=bert-large-uncased"]
        summary = ["--json-summary", f"{CODE}/results/dllogger.json"]  # relative: results/...
    else:
        data1 = f"{PREP}/pretrain/phase1/unbinned/parquet/"
        data2 = f"{PREP}/pretrain/phase2/bin_size_64/parquet/"
        config, model = (
            arg("BERT_CONFIG", "bert_configs/large.json"),
            [f"--vocab_file={CODE}/vocab/vocab"],
        )
        summary = [
            "--json-summary",
            f"{arg('CODEDIR', CODE)}/results/dllogger.json",
            "--disable_progress_bar",
            f"--num_workers={arg('num_workers', '4')}",
        ]
    codedir = arg("CODEDIR", CODE)
    shared = [
        f"--output_dir={codedir}/results/checkpoints",
        f"--config_file={_in_code_dir(config)}",
        *model,
    ]
    tail = ["--fp16"] if arg("precision", "fp16") == "fp16" else []
    if arg("resume_training", "false") == "true":
        tail.append("--resume_from_checkpoint")
    if arg("allreduce_post_accumulation", "true") == "true":
        tail.append("--allreduce_post_accumulation")
    if arg("allreduce_post_accumulation_fp16", "true") == "true":
        tail.append("--allreduce_post_accumulation_fp16")
    accumulate = arg("accumulate_gradients", "true") == "true"
    steps, save, seed = (
        arg("train_steps", "7038"),
        arg("save_checkpoint_steps", "200"),
        arg("seed", "12439"),
    )
    phase1 = [
        f"--input_dir={arg('DATA_DIR_PHASE1', data1)}",
        *shared,
        f"--train_batch_size={arg('train_batch_size', '8192')}",
        "--max_seq_length=128",
        "--max_predictions_per_seq=20",
        f"--max_steps={steps}",
        f"--warmup_proportion={arg('warmup_proportion', '0.2843')}",
        f"--num_steps_per_checkpoint={save}",
        f"--learning_rate={arg('learning_rate', '6e-3')}",
        f"--seed={seed}",
        *tail,
    ]
    if accumulate:
        phase1.append(f"--gradient_accumulation_steps={arg('gradient_accumulation_steps', '128')}")
    if arg("init_checkpoint", "None") != "None":
        phase1.append(f"--init_checkpoint={arg('init_checkpoint', 'None')}")
    phase1 += ["--do_train", *summary]
    phase2 = [
        f"--input_dir={arg('DATA_DIR_PHASE2', data2)}",
        *shared,
        f"--train_batch_size={arg('train_batch_size_phase2', '4096')}",
        "--max_seq_length=512",
        "--max_predictions_per_seq=80",
        f"--max_steps={arg('train_steps_phase2', '1563')}",
        f"--warmup_proportion={arg('warmup_proportion_phase2', '0.128')}",
        f"--num_steps_per_checkpoint={save}",
        f"--learning_rate={arg('learning_rate_phase2', '4e-3')}",
        f"--seed={seed}",
        *tail,
    ]
    if accumulate:
        phase2.append(
            f"--gradient_accumulation_steps={arg('gradient_accumulation_steps_phase2', '512')}"
        )
    phase2 += [
        "--do_train",
        "--phase2",
        "--resume_from_checkpoint",
        f"--phase1_end_step={steps}",
        *summary,
    ]
    return int(arg("num_gpus", "8")), phase1, phase2


# NVIDIA's presets, as NVIDIA's preset files (21.11 and HEAD) echo them.
SQUAD_PRESETS = [  # version, name, batch, lr, warm-up, precision, GPUs
    ("21.11", "dgx1_8gpu_fp16", 10, "3e-5", None, "fp16", 8),
    ("21.11", "dgx1_8gpu_fp32", 4, "3e-5", None, "fp32", 8),
    ("21.11", "dgx2_16gpu_fp16", 16, "3e-5", None, "fp16", 16),
    ("21.11", "dgx2_16gpu_fp32", 8, "3e-5", None, "fp16", 16),  # sic; FIXED_PRESETS
    ("21.11", "dgxa100_8gpu_fp16", 32, "3e-5", None, "fp16", 8),
    ("21.11", "dgxa100_8gpu_tf32", 16, "3e-5", None, "tf32", 8),
    ("HEAD", "dgxa100-80g_8gpu_fp16", 32, "4.6e-5", "0.2", "fp16", 8),
    ("HEAD", "dgxa100-80g_8gpu_tf32", 32, "4.6e-5", "0.2", "tf32", 8),
    ("HEAD", "dgx1-32g_8gpu_fp16", 32, "4.6e-5", "0.2", "fp16", 8),
    ("HEAD", "dgx1-32g_8gpu_fp32", 16, "4.6e-5", "0.2", "fp32", 8),
]
PRETRAIN_PRESETS = [  # version, name, batch, batch 2, GPUs, precision, GA 1, GA 2, AR16
    ("21.11", "dgxa100_8gpu_fp16", 8192, 4096, 8, "fp16", 128, 256, "true"),
    ("21.11", "dgxa100_8gpu_tf32", 8192, 4096, 8, "tf32", 128, 512, "false"),
    ("21.11", "dgx2_16gpu_fp16", 4096, 2048, 16, "fp16", 64, 128, "true"),
    ("21.11", "dgx2_16gpu_fp32", 4096, 2048, 16, "fp32", 128, 256, "false"),
    ("21.11", "dgx1_8gpu_fp16", 8192, 4096, 8, "fp16", 512, 512, "true"),
    ("21.11", "dgx1_8gpu_fp32", 8192, 4096, 8, "fp32", 1024, 1024, "false"),
    ("HEAD", "dgxa100-80g_8gpu_fp16", 8192, 4096, 8, "fp16", 32, 128, "true"),
    ("HEAD", "dgxa100-80g_8gpu_tf32", 8192, 4096, 8, "tf32", 64, 256, "false"),
    ("HEAD", "dgx1-32g_8gpu_fp16", 8192, 4096, 8, "fp16", 64, 256, "true"),
    ("HEAD", "dgx1-32g_8gpu_fp32", 8192, 4096, 8, "fp32", 128, 512, "false"),
]
GLUE_MACHINES = [  # version, machine, precision, capacity, GPU counts
    ("21.11", "dgxa100", "fp16", 128, (1, 2, 4, 8)),
    ("21.11", "dgxa100", "tf32", 64, (1, 2, 4, 8)),
    ("21.11", "dgx2", "fp16", 128, (1, 2, 4, 8, 16)),
    ("21.11", "dgx2", "fp32", 64, (1, 2, 4, 8, 16)),
    ("HEAD", "dgxa100-80g", "fp16", 256, (1, 2, 4, 8)),
    ("HEAD", "dgxa100-80g", "tf32", 128, (1, 2, 4, 8)),
    ("HEAD", "dgx1-32g", "fp16", 128, (1, 2, 4, 8)),
    ("HEAD", "dgx1-32g", "fp32", 64, (1, 2, 4, 8)),
]
GLUE_TASKS = {  # (version, task) -> global batch, lr, warm-up; SST-2's vary by machine
    ("21.11", "mrpc"): (128, "2.4e-5", "0.1"),
    ("21.11", "sst-2"): (1024, "3e-5", "0.1"),
    ("HEAD", "mrpc"): (128, "1.8e-5", "0.3"),
    ("HEAD", "sst-2"): (1024, "1e-5", "0.1"),
}
GLUE_SST2_EXCEPTIONS = {("dgxa100", "tf32"): (512, "2e-5"), ("dgx1-32g", "fp32"): (512, "1e-5")}


def squad_preset_args(version, name, batch, lr, warmup, precision, gpus) -> list[str]:
    fixed = FIXED_PRESETS.get(("squad", name))
    if fixed:
        precision = fixed[1]
    args = [
        f"{CODE}/checkpoints/bert_uncased.pt",
        "2.0",
        str(batch),
        lr,
        precision,
        str(gpus),
        "1",
        f"{PREP}/download/squad/v1.1",
        GOOGLE_VOCAB,
        f"{CODE}/results/SQuAD",
    ]
    if version == "HEAD":
        args.insert(4, warmup)
    return args


def pretrain_preset_args(version, name, bs, bs2, gpus, precision, ga1, ga2, ar16) -> list[str]:
    args = [
        str(bs),
        "6e-3",
        precision,
        str(gpus),
        "0.2843",
        "7038",
        "200",
        "false",
        "true",
        "true",
        str(ga1),
        "42",
        "bert_lamb_pretraining",
        "true",
        ar16,
        str(bs2),
        "4e-3",
        "0.128",
        "1563",
        str(ga2),
    ]
    if version == "21.11":
        return [
            *args,
            NVIDIA_21_11_PRESET_DATA.format(128, 20),
            NVIDIA_21_11_PRESET_DATA.format(512, 80),
            CODE,
        ]
    return [
        *args,
        f"{PREP}/pretrain/phase1/unbinned/parquet/",
        f"{PREP}/pretrain/phase2/bin_size_64/parquet/",
        CODE,
        "None",
        f"{PREP}/wikipedia/source/",
        "128",
        "128",
        "4",
        "0.9",
        "64",
        "static",
        "bert_configs/large.json",
    ]


def glue_presets():
    """(version, preset name, NVIDIA's 14 arguments) for every GLUE preset."""
    for version, machine, precision, capacity, gpu_counts in GLUE_MACHINES:
        config = "bert_config.json" if version == "21.11" else "bert_configs/large.json"
        for task in ("mrpc", "sst-2"):
            global_batch, lr, warmup = GLUE_TASKS[(version, task)]
            if task == "sst-2" and (machine, precision) in GLUE_SST2_EXCEPTIONS:
                global_batch, lr = GLUE_SST2_EXCEPTIONS[(machine, precision)]
            for gpus in gpu_counts:
                batch, accumulation = global_batch // gpus, 1
                while batch // accumulation > capacity:
                    accumulation *= 2
                folder = task.upper()
                yield (
                    version,
                    f"{task}_{machine}_{gpus}gpu_{precision}",
                    [
                        f"{CODE}/checkpoints/bert_uncased.pt",
                        f"{PREP}/download/glue/{folder}/",
                        GOOGLE_VOCAB,
                        f"{CODE}/{config}",
                        f"{CODE}/results/{folder}",
                        task,
                        str(gpus),
                        str(batch),
                        str(accumulation),
                        lr,
                        warmup,
                        "3",
                        "-1.0",
                        precision,
                    ],
                )


# --------------------------------------------------------------------------------------------
# Running our launchers


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data folder holding both generations' pre-training folders, a fake nvidia-smi listing 8
    GPUs (NVIDIA's default GPU count), and the environment for dry runs."""
    root = tmp_path_factory.mktemp("launchers")
    prep = root / "prep"
    folders = (
        f"{HDF5.format(128, 20)}/wikicorpus_en",
        f"{HDF5.format(512, 80)}/wikicorpus_en",
        "pretrain/phase1/unbinned/parquet",
        "pretrain/phase2/bin_size_64/parquet",
    )
    for folder in folders:
        (prep / folder).mkdir(parents=True)
        (prep / folder / "part_0").write_text("x")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    fake_smi = bin_dir / "nvidia-smi"
    fake_smi.write_text('#!/bin/sh\nfor i in 0 1 2 3 4 5 6 7; do echo "GPU $i: fake"; done\n')
    fake_smi.chmod(0o755)
    drop = (
        "RESULTS_DIR",
        "BERT_CONFIG",
        "VOCAB_FILE",
        "EXTRA_ARGS",
        "LOG_FREQ",
        "INIT_CHECKPOINT",
        "OUT_DIR",
        "SAMPLE_SHARDS",
        "BERT_PREP_WORKING_DIR",
        "DRY_RUN",
    )
    env = {k: v for k, v in launcher_env().items() if k not in drop}
    env |= {"PATH": f"{bin_dir}:{env['PATH']}", "BERT_PREP_WORKING_DIR": str(prep), "DRY_RUN": "1"}
    return {"root": root, "prep": prep, "bin": bin_dir, "env": env}


def run(command: list[str], world, cwd=REPO_ROOT, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, env=world["env"] | env
    )


def launch(script: str, args, world, **env) -> subprocess.CompletedProcess:
    return run(["bash", f"scripts/{script}", *map(str, args)], world, **env)


def with_preset(launcher: str, config: str, preset: str, world, **env):
    """A preset exactly as NVIDIA's README uses it: `$(source ... && preset)`, word-split."""
    line = f"bash scripts/{launcher} $(source scripts/configs/{config} && {preset})"
    return run(["bash", "-c", line], world, **env)


def parse_flags(tokens: list[str]) -> dict[str, str | None]:
    flags: dict[str, str | None] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        assert token.startswith("--"), tokens
        if "=" in token:
            name, value = token.split("=", 1)
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            name, value = token, tokens[i + 1]
            i += 1
        else:
            name, value = token, None
        flags[name] = value
        i += 1
    return flags


def commands(result: subprocess.CompletedProcess) -> list[tuple[int, str, dict]]:
    """(processes, script name, flags) of each command line a dry run printed."""
    assert result.returncode == 0, result.stderr
    parsed = []
    for line in result.stdout.splitlines():
        tokens = shlex.split(line)
        index = next(i for i, t in enumerate(tokens) if t.endswith(".py"))
        launcher = parse_flags([t for t in tokens[:index] if t.startswith("--")])
        processes = int(launcher.get("--nproc_per_node") or 1)
        parsed.append((processes, Path(tokens[index]).name, parse_flags(tokens[index + 1 :])))
    return parsed


def here(value: str | None, world) -> str | None:
    """NVIDIA's value as it reads in this checkout (PATH_MAP, then the two roots)."""
    if value is None:
        return None
    for nvidia, ours, _why in PATH_MAP:
        if os.path.normpath(value) == os.path.normpath(nvidia):
            value = ours
    value = value.replace(CODE, str(REPO_ROOT)).replace(PREP, str(world["prep"]))
    return os.path.normpath(value) if "/" in value else value


def assert_same_command(ours, expected_processes: int, script: str, nvidia_flags, world):
    processes, name, flags = ours
    assert (processes, name) == (expected_processes, script)
    expected = {k: here(v, world) for k, v in parse_flags(nvidia_flags).items()}
    actual = {k: (os.path.normpath(v) if v and "/" in v else v) for k, v in flags.items()}
    missing = sorted(expected.keys() - actual.keys())
    unexpected = sorted(actual.keys() - expected.keys() - ADDED_FLAGS.keys())
    differing = {
        k: (expected[k], actual[k])
        for k in expected.keys() & actual.keys()
        if expected[k] != actual[k]
    }
    assert not (missing or unexpected or differing), (missing, unexpected, differing)
    if "--json-summary" in actual and script != "run_pretraining.py":
        assert actual["--json-summary"] == os.path.join(actual["--output_dir"], "dllogger.json")


# --------------------------------------------------------------------------------------------
# The same command lines as NVIDIA's


NVIDIA_README_SQUAD = [  # NVIDIA 21.11's README, verbatim
    "bash scripts/run_squad.sh /workspace/bert/bert_large_uncased.pt 2.0 4 3e-5 fp16 8 42 "
    "/workspace/bert/squad_data /workspace/bert/scripts/vocab/vocab /results/SQuAD train "
    "/workspace/bert/bert_config.json -1",
    "bash scripts/run_squad.sh /workspace/bert/bert_large_uncased.pt 2.0 4 3e-5 fp16 8 42 "
    "/workspace/bert/squad_data /workspace/bert/scripts/vocab/vocab /results/SQuAD eval "
    "/workspace/bert/bert_config.json -1",
]


@pytest.mark.parametrize("line", NVIDIA_README_SQUAD, ids=["train", "eval"])
def test_nvidia_readme_squad_lines(line, world):
    result = run(["bash", "-c", line], world)
    args = shlex.split(line)[2:]
    (ours,) = commands(result)
    assert_same_command(ours, *_squad_expected("21.11", args), world)


def _squad_expected(version, args):
    processes, flags = nvidia_squad(version, args)
    return processes, "run_squad.py", flags


DOCUMENTED_LINES = [  # launcher, version, arguments
    ("run_squad.sh", "21.11", []),
    (
        "run_squad.sh",
        "HEAD",
        [
            "/workspace/bert/checkpoints/bert_uncased.pt",
            "2.0",
            "32",
            "4.6e-5",
            "0.2",
            "tf32",
            "8",
            "1",
            "/workspace/bert/data/squad/v1.1",
            "/workspace/bert/vocab/vocab",
            "/workspace/bert/results/SQuAD",
            "train eval",
            "/workspace/bert/bert_configs/large.json",
            "-1",
        ],
    ),
    (
        "run_squad.sh",
        "21.11",
        [
            "/ckpt.pt",
            "1.0",
            "8",
            "5e-5",
            "fp32",
            "1",
            "7",
            "/squad/v1.1",
            "/vocab.txt",
            "/out",
            "prediction",
            "/cfg.json",
            "100",
        ],
    ),
    ("run_glue.sh", "21.11", []),
    (
        "run_glue.sh",
        "21.11",
        [
            "/ckpt.pt",
            "/glue/MRPC/",
            "/vocab.txt",
            "/cfg.json",
            "/out",
            "mrpc",
            "4",
            "32",
            "2",
            "2e-5",
            "0.1",
            "3",
            "-1.0",
            "tf32",
            "5",
            "train eval prediction",
        ],
    ),
    (
        "run_glue.sh",
        "21.11",
        [
            "/ckpt.pt",
            "/glue/SST-2/",
            "/vocab.txt",
            "/cfg.json",
            "/out",
            "sst-2",
            "8",
            "32",
            "1",
            "2e-5",
            "0.1",
            "3",
            "-1.0",
            "fp16",
            "5",
            "eval",
        ],
    ),
    ("run_pretraining.sh", "21.11", []),
    (
        "run_pretraining.sh",
        "21.11",
        [
            "64",
            "1e-3",
            "fp32",
            "2",
            "0.1",
            "100",
            "50",
            "true",
            "false",
            "false",
            "4",
            "3",
            "job",
            "false",
            "false",
        ],
    ),
]


@pytest.mark.parametrize("launcher, version, args", DOCUMENTED_LINES)
def test_documented_command_lines(launcher, version, args, world):
    ours = commands(launch(launcher, args, world))
    if launcher == "run_squad.sh":
        assert_same_command(ours[0], *_squad_expected(version, args), world)
    elif launcher == "run_glue.sh":
        processes, flags = nvidia_glue(version, args)
        assert_same_command(ours[0], processes, "run_glue.py", flags, world)
    else:
        processes, phase1, phase2 = nvidia_pretraining(version, args)
        assert len(ours) == 2
        assert_same_command(ours[0], processes, "run_pretraining.py", phase1, world)
        assert_same_command(ours[1], processes, "run_pretraining.py", phase2, world)


@pytest.mark.parametrize("preset", SQUAD_PRESETS, ids=[p[1] for p in SQUAD_PRESETS])
def test_squad_presets(preset, world):
    version, name = preset[:2]
    args = squad_preset_args(*preset)
    assert len(args) == (10 if version == "21.11" else 11)
    (ours,) = commands(with_preset("run_squad.sh", "squad_config.sh", name, world))
    assert_same_command(ours, *_squad_expected(version, args), world)


@pytest.mark.parametrize("preset", PRETRAIN_PRESETS, ids=[p[1] for p in PRETRAIN_PRESETS])
def test_pretraining_presets(preset, world):
    version, name = preset[:2]
    args = pretrain_preset_args(*preset)
    assert len(args) == (23 if version == "21.11" else 32)
    result = with_preset("run_pretraining.sh", "pretrain_config.sh", name, world)
    ours = commands(result)
    processes, phase1, phase2 = nvidia_pretraining(version, args)
    if version == "HEAD":  # HEAD's bins, read from its LDDL folders, are a flag here
        phase2 = [*phase2, "--bin_size=64"]
        assert "num_dask_workers=128 only steer LDDL preprocessing" in result.stderr
    assert_same_command(ours[0], processes, "run_pretraining.py", phase1, world)
    assert_same_command(ours[1], processes, "run_pretraining.py", phase2, world)
    assert ours[1][2].get("--bin_size") == ("64" if version == "HEAD" else None)


def test_glue_presets(world):
    presets = list(glue_presets())
    assert len(presets) == 68
    names = " ".join(name for _, name, _ in presets)
    script = (
        'for name in "$@"; do bash scripts/run_glue.sh'
        ' $(source scripts/configs/glue_config.sh && "$name") || echo "FAILED $name"; done'
    )
    result = run(["bash", "-c", script, "glue", *names.split()], world)
    assert "FAILED" not in result.stdout, result.stderr
    ours = commands(result)
    assert len(ours) == len(presets)
    for (version, name, args), command in zip(presets, ours, strict=True):
        processes, flags = nvidia_glue(version, args)
        try:
            assert_same_command(command, processes, "run_glue.py", flags, world)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None


def test_our_presets_run_through_the_launchers(world):
    for launcher, config, preset in (
        ("run_squad.sh", "squad_config.sh", "dgxh100_8gpu_bf16"),
        ("run_glue.sh", "glue_config.sh", "mrpc_dgxh100_8gpu_bf16"),
        ("run_pretraining.sh", "pretrain_config.sh", "dgxh100_8gpu_bf16"),
    ):
        for _, _, flags in commands(with_preset(launcher, config, preset, world)):
            assert "--bf16" in flags and "--fp16" not in flags


# --------------------------------------------------------------------------------------------
# Argument forms, checks and hostile input


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


SQUAD_13 = ["/c.pt", "2.0", "4", "3e-5", "fp16", "8", "1", "/s", "/v", "/o", "train", "/cfg", "-1"]


@pytest.mark.parametrize(
    "args, problem",
    [
        ([*SQUAD_13[:4], "0.1", *SQUAD_13[5:]], "13 arguments are 21.11's order"),
        ([*SQUAD_13[:4], "fp16", *SQUAD_13[4:]], "14 arguments are HEAD's order"),
        ([*SQUAD_13[:4], "half"], "argument 5 'half' is neither"),
        ([*SQUAD_13, "x", "y"], "15 arguments are too many"),
    ],
)
def test_squad_refuses_a_call_that_fits_neither_order(args, problem, world):
    line = one_error_line(launch("run_squad.sh", args, world))
    assert problem in line
    assert "21.11 (13 arguments): init_checkpoint epochs batch_size learning_rate precision" in line
    assert "HEAD (14): init_checkpoint epochs batch_size learning_rate warmup_proportion" in line


def test_squad_decides_the_order_by_the_fifth_argument(world):
    (old,) = commands(launch("run_squad.sh", SQUAD_13[:12], world))  # 12: fifth is fp16
    assert "--warmup_proportion" not in old[2] and old[2]["--config_file"] == "/cfg"
    assert old[2]["--fp16"] is None and old[0] == 8 and "--do_predict" not in old[2]
    (new,) = commands(launch("run_squad.sh", [*SQUAD_13[:4], "0.3", "fp32", "2"], world))
    assert new[2]["--warmup_proportion"] == "0.3" and "--fp16" not in new[2] and new[0] == 2
    assert new[2]["--config_file"] == str(REPO_ROOT / "bert_configs" / "large.json")  # HEAD's
    (short,) = commands(launch("run_squad.sh", ["/c.pt"], world))
    assert short[2]["--config_file"] == str(REPO_ROOT / "bert_config.json")  # 21.11's


@pytest.mark.parametrize(
    "precision, flags",
    [
        ("fp16", {"--fp16": None}),
        ("fp32", {}),
        ("tf32", {}),
        ("bf16", {"--bf16": None}),
        ("fp32_strict", {"--precision": "fp32"}),
    ],
)
def test_precision_words(precision, flags, world):
    chosen = {"--fp16", "--bf16", "--precision"}
    (squad,) = commands(launch("run_squad.sh", [*SQUAD_13[:4], precision, "1"], world))
    assert {k: v for k, v in squad[2].items() if k in chosen} == flags
    glue = commands(launch("run_glue.sh", [""] * 13 + [precision], world))[0]
    assert {k: v for k, v in glue[2].items() if k in chosen} == flags
    for phase in commands(launch("run_pretraining.sh", ["8", "1e-3", precision, "1"], world)):
        assert {k: v for k, v in phase[2].items() if k in chosen} == flags


@pytest.mark.parametrize(
    "launcher, args, expected",
    [
        ("run_squad.sh", [*SQUAD_13[:4], "fp8"], "argument 5 'fp8' is neither"),
        ("run_squad.sh", [*SQUAD_13[:5], "0"], "argument 6 num_gpu: '0' is not a positive integer"),
        ("run_squad.sh", [*SQUAD_13[:10], "evaluate"], "argument 11 mode: 'evaluate' is not train"),
        (
            "run_squad.sh",
            [*SQUAD_13[:4], "0.1", "fp16", "1", "x"],
            "argument 8 seed: 'x' is not a non-negative integer",
        ),
        ("run_squad.sh", ["/c.pt", "--fp16"], "argument 2 '--fp16' looks like a flag"),
        (
            "run_glue.sh",
            [""] * 6 + ["eight"],
            "argument 7 num_gpu: 'eight' is not a positive integer",
        ),
        ("run_glue.sh", [""] * 15 + ["train evaluate"], "argument 16 mode: 'train evaluate' holds"),
        ("run_glue.sh", [""] * 13 + ["half"], "argument 14 precision: 'half' is not fp16"),
        ("run_glue.sh", [""] * 17, "17 arguments are too many"),
        (
            "run_pretraining.sh",
            ["8", "1e-3", "fp16", "1", "0.1", "10", "5", "yes"],
            "argument 8 resume_training: 'yes' is not true or false",
        ),
        (
            "run_pretraining.sh",
            ["8"] + [""] * 28 + ["48"],
            "argument 30 phase2_bin_size: '48' is not one of: none 32 64 128 256 512",
        ),
        (
            "run_pretraining.sh",
            ["8"] + [""] * 29 + ["random"],
            "argument 31 masking: 'random' is not one of: static dynamic",
        ),
        ("run_pretraining.sh", ["8"] + [""] * 28 + ["1.5"], "argument 30 phase2_bin_size"),
        ("run_pretraining.sh", ["8"] + [""] * 27 + ["2"], "argument 29 sample_ratio: '2' is not"),
        ("run_pretraining.sh", ["8"] + [""] * 11 + ["a/b"], "argument 13 job_name: 'a/b' must be"),
        (
            "run_pretraining.sh",
            ["8"] + [""] * 21 + ["/nowhere"],
            "argument 23 CODEDIR: '/nowhere' holds no run_pretraining.py",
        ),
        (
            "run_pretraining.sh",
            ["8"] + [""] * 30 + ["/nowhere.json"],
            "argument 32 BERT_CONFIG: model config /nowhere.json not found",
        ),
        ("run_pretraining.sh", ["8"] * 33, "33 arguments are too many"),
    ],
)
def test_bad_values_are_one_line_naming_the_argument(launcher, args, expected, world):
    assert expected in one_error_line(launch(launcher, args, world))


HUGE = "99999999999999999999"  # 20 digits: beyond bash's 64-bit arithmetic, which would wrap
WRAPS_TO_8 = str(2**64 + 8)  # $((10#...)) reads it as 8
THOUSANDS = "1" + "0" * 5000
BATCH = "more than 1048576 (2**20 samples per process per step)"
PROCESSES = "more than 4096 (2**12 processes on one machine)"
COUNT = "more than 1099511627776 (2**40)"


@pytest.mark.parametrize(
    "launcher, args, expected",
    [
        ("run_squad.sh", [*SQUAD_13[:2], HUGE], f"argument 3 batch_size: '{HUGE}' is {BATCH}"),
        (
            "run_squad.sh",
            [*SQUAD_13[:2], "1048577"],
            f"argument 3 batch_size: '1048577' is {BATCH}",
        ),
        ("run_squad.sh", [*SQUAD_13[:2], WRAPS_TO_8], "argument 3 batch_size"),
        ("run_squad.sh", [*SQUAD_13[:2], THOUSANDS], "'100000000000000000000000... (5001 chara"),
        ("run_squad.sh", [*SQUAD_13[:5], "4097"], f"argument 6 num_gpu: '4097' is {PROCESSES}"),
        ("run_squad.sh", [*SQUAD_13[:6], HUGE], "argument 7 seed: '99999999999999999999' is more"),
        ("run_squad.sh", [SQUAD_13[0], "1e400"], "argument 2 epochs: '1e400' is more than 1048576"),
        ("run_squad.sh", [*SQUAD_13[:12], "1e13"], "argument 13 max_steps: '1e13' is more than"),
        ("run_glue.sh", [""] * 6 + [WRAPS_TO_8], "argument 7 num_gpu"),
        ("run_glue.sh", [""] * 7 + [HUGE], f"argument 8 batch_size: '{HUGE}' is {BATCH}"),
        ("run_glue.sh", [""] * 8 + [HUGE], "argument 9 gradient_accumulation_steps"),
        ("run_glue.sh", [""] * 11 + ["9e99"], "argument 12 epochs: '9e99' is more than"),
        ("run_pretraining.sh", [HUGE], f"argument 1 train_batch_size: '{HUGE}' is {BATCH}"),
        ("run_pretraining.sh", ["8", "1e-3", "fp16", HUGE], f"argument 4 num_gpus: '{HUGE}' is"),
        (
            "run_pretraining.sh",
            ["8", "", "", "", "", HUGE],
            f"argument 6 train_steps: '{HUGE}' is {COUNT}",
        ),
        ("run_pretraining.sh", ["8"] + [""] * 5 + [HUGE], "argument 7 save_checkpoint_steps"),
        (
            "run_pretraining.sh",
            ["8"] + [""] * 9 + [WRAPS_TO_8],
            "argument 11 gradient_accumulation",
        ),
        ("run_pretraining.sh", ["8"] + [""] * 14 + [HUGE], "argument 16 train_batch_size_phase2"),
        ("run_pretraining.sh", ["8"] + [""] * 17 + [HUGE], "argument 19 train_steps_phase2"),
        (
            "run_pretraining.sh",
            ["8"] + [""] * 18 + [HUGE],
            "argument 20 gradient_accumulation_steps_phase2",
        ),
        ("run_pretraining.sh", ["8"] + [""] * 24 + [HUGE], "argument 26 num_dask_workers"),
        ("run_pretraining.sh", ["8"] + [""] * 25 + [HUGE], "argument 27 num_shards_per_worker"),
        (
            "run_pretraining.sh",
            ["8"] + [""] * 26 + ["4097"],
            f"argument 28 num_workers: '4097' is {PROCESSES}",
        ),
    ],
)
def test_absurd_sizes_are_refused_by_their_digits_before_any_arithmetic(
    launcher, args, expected, world
):
    assert expected in one_error_line(launch(launcher, args, world))


def test_the_limits_themselves_and_leading_zeros_are_accepted(world):
    (squad,) = commands(
        launch("run_squad.sh", [*SQUAD_13[:2], "1048576", "3e-5", "fp32", "1"], world)
    )
    assert squad[2]["--train_batch_size"] == "1048576"
    (glue,) = commands(launch("run_glue.sh", [""] * 7 + ["000000000000000000000032"], world))
    assert glue[2]["--train_batch_size"] == "000000000000000000000032"  # python reads 32


def test_missing_data_is_refused_with_what_to_run_instead(world, tmp_path):
    result = launch("run_pretraining.sh", [], world, BERT_PREP_WORKING_DIR=str(tmp_path))
    line = one_error_line(result)
    assert "argument 21 DATA_DIR_PHASE1" in line and "is missing or empty" in line
    assert "bash data/create_datasets_from_start.sh" in line and "python -m data.pipeline" in line
    (tmp_path / "empty").mkdir()
    head = ["8"] + [""] * 20 + [str(tmp_path / "empty")] + [""] * 9 + ["bert_configs/large.json"]
    line = one_error_line(launch("run_pretraining.sh", head, world))
    assert "argument 22 DATA_DIR_PHASE2" in line and "LDDL (mpirun + dask)" in line


def test_lddl_only_arguments_get_a_note_when_the_data_exists(world):
    args = ["8", "1e-3", "fp16", "1"] + [""] * 20 + ["/wiki", "3", "16", "2", "0.5", "none"]
    result = launch("run_pretraining.sh", args, world)
    phase1, phase2 = commands(result)
    assert result.stderr.count("\n") == 1 and "note:" in result.stderr
    for expected in (
        "25 wikipedia_source=/wiki",
        "26 num_dask_workers=3",
        "27 num_shards_per_worker=16",
        "29 sample_ratio=0.5",
    ):
        assert expected in result.stderr
    assert phase1[2]["--num_workers"] == "2" and "--bin_size" not in phase2[2]
    assert "--vocab_file" in phase1[2] and "--bert_model" not in phase1[2]  # HEAD's form


def test_parquet_folders_in_the_21_11_form_get_the_vocabulary(world, tmp_path):
    for phase in ("one", "two"):
        (tmp_path / phase).mkdir()
        (tmp_path / phase / "shard_0.parquet").write_bytes(b"x")
    args = ["8", "1e-3", "fp16", "1"] + [""] * 16 + [tmp_path / "one", tmp_path / "two"]
    for _, _, flags in commands(launch("run_pretraining.sh", args, world)):
        assert flags["--vocab_file"] == str(REPO_ROOT / "vocab/vocab")
        assert flags["--bert_model"] == "bert-large-uncased"  # still 21.11's form


@pytest.mark.parametrize("found", ["parquet", "hdf5", "both"])
def test_a_short_call_takes_the_form_whose_data_is_on_disk(found, world, tmp_path):
    """No argument names the data: HEAD's form when only HEAD's parquet folders hold data
    (exactly the command NVIDIA's HEAD launcher builds with no argument), 21.11's otherwise; a
    note says so when the choice is not the plain count rule's, or when both generations'
    folders hold data."""
    prep = tmp_path / "prep"
    folders = {
        "hdf5": [f"{HDF5.format(128, 20)}/wikicorpus_en", f"{HDF5.format(512, 80)}/wikicorpus_en"],
        "parquet": ["pretrain/phase1/unbinned/parquet", "pretrain/phase2/bin_size_64/parquet"],
    }
    for kind, names in folders.items():
        if found in (kind, "both"):
            for name in names:
                (prep / name).mkdir(parents=True)
                (prep / name / "part_0").write_text("x")
    (prep / folders["hdf5"][0]).mkdir(parents=True, exist_ok=True)  # an empty one is no data
    for args in ([], ["8", "1e-3"]):
        result = launch("run_pretraining.sh", args, world, BERT_PREP_WORKING_DIR=str(prep))
        ours = commands(result)
        version = "HEAD" if found == "parquet" else "21.11"
        processes, phase1, phase2 = nvidia_pretraining(version, args)
        if version == "HEAD":
            phase2 = [*phase2, "--bin_size=64"]
        for command, expected in zip(ours, (phase1, phase2), strict=True):
            assert_same_command(
                command, processes, "run_pretraining.py", expected, world | {"prep": prep}
            )
        notes = result.stderr.splitlines()
        if found == "hdf5":
            assert notes == []
        else:
            assert len(notes) == 1 and "note: taking " + version + "'s form" in notes[0]
            assert str(prep) in notes[0]
    named = [""] * 20 + [prep / folders["parquet"][0], prep / folders["parquet"][1]]
    if found != "hdf5":  # a folder named: the count rule, whatever the disk holds
        result = launch("run_pretraining.sh", named, world, BERT_PREP_WORKING_DIR=str(prep))
        assert all("--bert_model" in flags for _, _, flags in commands(result))
        assert result.stderr == ""


@pytest.mark.parametrize(
    "launcher, position",
    [
        ("run_squad.sh", 3),
        ("run_squad.sh", 6),
        ("run_glue.sh", 7),
        ("run_glue.sh", 9),
        ("run_pretraining.sh", 1),
        ("run_pretraining.sh", 4),
        ("run_pretraining.sh", 11),
        ("run_pretraining.sh", 28),
    ],
)
def test_a_command_hidden_in_a_numeric_argument_never_runs(launcher, position, world, tmp_path):
    marker = tmp_path / "ran"
    args = [""] * (position - 1) + [f"a[$(touch {marker})]"]
    if launcher == "run_squad.sh" and position > 4:
        args[4] = "fp16"
    result = launch(launcher, args, world, DRY_RUN="0")
    assert result.returncode == 2 and not marker.exists(), result.stderr
    assert f"argument {position} " in result.stderr
    result = launch(launcher, [], world, LOG_FREQ=f"a[$(touch {marker})]")
    assert not marker.exists()


def test_dry_run_creates_nothing(world, tmp_path):
    out = tmp_path / "out"
    launch("run_squad.sh", [*SQUAD_13[:9], out], world)
    launch("run_glue.sh", [""] * 4 + [out], world)
    commands(launch("run_pretraining.sh", [], world, RESULTS_DIR=str(out)))
    assert not out.exists()
    line = one_error_line(launch("run_squad.sh", [], world, DRY_RUN="yes"))
    assert "DRY_RUN is 'yes'" in line


def test_squad_leaves_this_runs_dllogger_records_where_nvidias_launcher_did(world, tmp_path):
    """NVIDIA's run_squad.sh left dllogger's file in results/dllogger.json of the working
    directory; ours appends to <OUT_DIR>/dllogger.json and copies this run's records there too,
    keeping an earlier file aside, whatever the run's exit status."""
    fake = tmp_path / "python"  # run_squad.py's stand-in: logs one record, exits with $STATUS
    fake.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "path = next(a[15:] for a in sys.argv if a.startswith('--json-summary='))\n"
        "with open(path, 'a') as f:\n"
        "    f.write('DLLL ' + os.environ['RECORD'] + '\\n')\n"
        "sys.exit(int(os.environ['STATUS']))\n"
    )
    fake.chmod(0o755)
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "results").mkdir(parents=True)
    (work / "results" / "dllogger.json").write_text("DLLL earlier\n")

    def squad(record: str, status: int, out_dir=out) -> subprocess.CompletedProcess:
        args = [*SQUAD_13[:5], "1", *SQUAD_13[6:9], out_dir, *SQUAD_13[10:]]
        script = str(REPO_ROOT / "scripts/run_squad.sh")
        env = {"DRY_RUN": "0", "PYTHON": str(fake), "RECORD": record, "STATUS": str(status)}
        result = run(["bash", script, *map(str, args)], world, cwd=work, **env)
        assert result.returncode == status, result.stderr
        return result

    def kept() -> list[str]:
        return sorted(p.read_text() for p in (work / "results").glob("dllogger.*.json"))

    squad("one", 0)
    squad("two", 3)  # a failed run's records too, as NVIDIA's file held them
    assert (out / "dllogger.json").read_text() == "DLLL one\nDLLL two\n"
    assert (work / "results" / "dllogger.json").read_text() == "DLLL two\n"
    assert kept() == ["DLLL earlier\n", "DLLL one\n"]
    assert [p.name for p in (work / "results").iterdir() if p.name.startswith(".")] == []
    squad("three", 0, out_dir="results")  # the output folder is NVIDIA's place: one file
    assert (work / "results" / "dllogger.json").read_text() == "DLLL two\nDLLL three\n"
    assert len(kept()) == 2


def test_relative_paths_look_in_the_current_directory_then_the_repository(world, tmp_path):
    (tmp_path / "bert_config.json").write_text("{}")
    args = [
        "ckpt.pt",
        "1.0",
        "8",
        "1e-5",
        "fp16",
        "1",
        "1",
        "squad",
        "vocab/vocab",
        "out",
        "train",
        "bert_config.json",
    ]
    result = run(["bash", str(REPO_ROOT / "scripts/run_squad.sh"), *args], world, cwd=tmp_path)
    (ours,) = commands(result)
    assert ours[2]["--vocab_file"] == str(REPO_ROOT / "vocab/vocab")  # only in the repository
    assert ours[2]["--config_file"] == str(tmp_path / "bert_config.json")  # here first
    assert ours[2]["--output_dir"] == str(tmp_path / "out")  # in neither: created here
    assert ours[2]["--train_file"] == str(tmp_path / "squad/train-v1.1.json")
    args = ["s3://bucket/ckpt.pt", *args[1:]]
    (ours,) = commands(run(["bash", str(REPO_ROOT / "scripts/run_squad.sh"), *args], world))
    assert ours[2]["--init_checkpoint"] == "s3://bucket/ckpt.pt"


def test_a_preset_that_cannot_echo_a_path_stops_the_launcher(world, tmp_path):
    spaced = tmp_path / "my data"
    result = with_preset(
        "run_squad.sh",
        "squad_config.sh",
        "dgx1_8gpu_fp16",
        world,
        BERT_PREP_WORKING_DIR=str(spaced),
    )
    assert result.returncode == 2 and result.stdout == ""
    first, second = result.stderr.strip().splitlines()
    assert "holds whitespace" in first and str(spaced) in first
    assert "'--preset-failed' looks like a flag" in second


def test_paths_the_documented_lines_use():
    config = json.loads((REPO_ROOT / "bert_config.json").read_text())
    assert config == {  # NVIDIA 21.11's bert_config.json (BERT-large)
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 1024,
        "initializer_range": 0.02,
        "intermediate_size": 4096,
        "max_position_embeddings": 512,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "type_vocab_size": 2,
        "vocab_size": 30522,
    }
    link = REPO_ROOT / "scripts" / "vocab" / "vocab"
    assert link.is_symlink() and os.readlink(link) == "../../vocab/vocab"
    assert link.read_bytes() == (REPO_ROOT / "vocab" / "vocab").read_bytes()
    if (REPO_ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-s", "scripts/vocab/vocab"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert listed.startswith("120000 ")  # git stores it as a link, so clones keep it
    # NVIDIA's presets name Google's uncased vocab.txt; the pipeline checks the download against
    # this digest, the bundled file's.
    from data.download import _UNCASED_VOCAB

    assert hashlib.sha256((REPO_ROOT / "vocab/vocab").read_bytes()).hexdigest() == _UNCASED_VOCAB


# --------------------------------------------------------------------------------------------
# scripts/docker/launch.sh and run.sub under fake commands


def fake_command(folder: Path, name: str, log: Path, stdout: str = "") -> None:
    """An executable `name` that appends its arguments and some environment to `log`."""
    (folder / name).write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"keep = ('MASTER_ADDR', 'MASTER_PORT')\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        f"    f.write(json.dumps({{'argv': sys.argv[1:], "
        f"'env': {{k: os.environ.get(k) for k in keep}}}}) + '\\n')\n"
        f"sys.stdout.write({stdout!r})\n"
    )
    (folder / name).chmod(0o755)


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def fakes(tmp_path, world):
    folder = tmp_path / "fakebin"
    folder.mkdir()
    log = tmp_path / "calls.jsonl"
    fake_command(folder, "docker", log)
    fake_command(folder, "srun", log)
    fake_command(folder, "scontrol", tmp_path / "scontrol.jsonl", stdout="node-a\nnode-b\n")
    # PYTHON empty: run.sub's own default (python3), as inside a container
    env = {"PATH": f"{folder}:{world['env']['PATH']}", "PYTHON": ""}
    return {"log": log, "env": env}


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], {"--net": "host", "image": "bert", "cmd": ["/bin/bash"], "gpus": "device=all"}),
        (
            ["python run.py *", "0,1", "bridge"],  # 21.11: CMD NV_VISIBLE_DEVICES DOCKER_BRIDGE
            {
                "--net": "bridge",
                "image": "bert",
                "cmd": ["python", "run.py", "*"],
                "gpus": '"device=0,1"',
            },
        ),
        (
            ["bash", "2", "-v /d:/d"],  # HEAD's EXTRA_MOUNTS as third
            {
                "--net": "host",
                "image": "bert",
                "cmd": ["bash"],
                "gpus": "device=2",
                "mounts": ["/d:/d"],
            },
        ),
        (
            [
                "bash",
                "all",
                "",
                "my/image:1",
                "none",
            ],  # HEAD: CMD DEVICES EXTRA_MOUNTS IMAGE BRIDGE
            {"--net": "none", "image": "my/image:1", "cmd": ["bash"], "gpus": "device=all"},
        ),
    ],
)
def test_docker_launch_takes_both_generations_arguments(args, expected, fakes, world):
    result = run(["bash", "scripts/docker/launch.sh", *args], world, **fakes["env"])
    assert result.returncode == 0, result.stderr
    (call,) = calls(fakes["log"])
    argv = call["argv"]
    assert argv[:3] == ["run", "-it", "--rm"]
    assert argv[argv.index("--gpus") + 1] == expected["gpus"]
    assert f"--net={expected['--net']}" in argv
    assert f"{REPO_ROOT}:/workspace/bert" in argv and f"{REPO_ROOT}/results:/results" in argv
    image = argv.index(expected["image"])
    assert argv[image + 1 :] == expected["cmd"]
    mounts = [argv[i + 1] for i in range(image) if argv[i] == "-v"]
    assert mounts[2:] == expected.get("mounts", [])


def test_docker_launch_refuses_bad_arguments(fakes, world):
    for args in (["bash", "0;rm"], ["bash", "all", "host", "x", "y", "z"], ["bash", "all", "a b"]):
        result = run(["bash", "scripts/docker/launch.sh", *args], world, **fakes["env"])
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert calls(fakes["log"]) == []


def run_sub(world, fakes, tmp_path, **env) -> subprocess.CompletedProcess:
    base = {
        "SLURM_JOB_NODELIST": "node-[a-b]",
        "SLURM_JOB_NUM_NODES": "2",
        "REPO": str(REPO_ROOT),
        "RESULTS_DIR": str(tmp_path / "res"),
        **fakes["env"],
    }
    return run(["bash", "run.sub"], world, **(base | env))


def srun_command(fakes) -> tuple[list[str], list[str], dict]:
    """(srun's options, the command each task runs, the environment srun saw)."""
    (call,) = calls(fakes["log"])
    argv = call["argv"]
    start = argv.index("bash")
    assert argv[start : start + 4] == [
        "bash",
        "-c",
        'exec "$@" --local_rank="$SLURM_LOCALID"',
        "run.sub",
    ]
    return argv[:start], argv[start + 4 :], call["env"]


def test_run_sub_one_task_per_gpu_with_hostile_results_dir(world, fakes, tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / f"my results; touch {marker}"
    result = run_sub(world, fakes, tmp_path, RESULTS_DIR=str(hostile))
    assert result.returncode == 0, result.stderr
    options, command, env = srun_command(fakes)
    assert "--ntasks-per-node=8" in options and f"--chdir={REPO_ROOT}" in options
    assert env == {"MASTER_ADDR": "node-a", "MASTER_PORT": "29500"}
    flags = parse_flags(command[3:])
    assert command[:3] == ["python3", "-u", f"{REPO_ROOT}/run_pretraining.py"]
    assert flags["--output_dir"] == f"{hostile}/checkpoints"
    assert flags["--json-summary"] == f"{hostile}/dllogger_phase1.json"
    assert not marker.exists() and (hostile / "checkpoints").is_dir()
    # NVIDIA's defaults: fp16 with the fp16 all-reduce, batch 8192 / accumulation 32, bins of 64
    assert {
        "--fp16",
        "--allreduce_post_accumulation_fp16",
        "--allreduce_post_accumulation",
        "--disable_progress_bar",
        "--do_train",
    } <= flags.keys()
    assert (flags["--train_batch_size"], flags["--gradient_accumulation_steps"]) == ("8192", "32")
    assert (flags["--bin_size"], flags["--num_workers"], flags["--seed"]) == ("64", "4", "42")
    assert flags["--input_dir"] == str(world["prep"] / HDF5.format(128, 20) / "wikicorpus_en")
    assert "--resume_from_checkpoint" not in flags


def test_run_sub_reads_both_generations_variables(world, fakes, tmp_path):
    result = run_sub(
        world,
        fakes,
        tmp_path,
        PHASE="2",
        BATCHSIZE="64",
        GRADIENT_STEPS="4",
        LR="1e-3",
        WARMUP_UPDATES="0.5",
        PRECISION="tf32",
        BIN_SIZE="none",
        MASKING="dynamic",
        STEPS_THIS_RUN="10",
        GPUS="2",
        CONFIG="base",
        USE_JEMALLOC="true",
        DASK_TASKS_PER_NODE="64",
    )
    assert result.returncode == 0, result.stderr
    assert "DASK_TASKS_PER_NODE=64 USE_JEMALLOC=true: only steer LDDL" in result.stderr
    options, command, _ = srun_command(fakes)
    flags = parse_flags(command[3:])
    assert "--ntasks-per-node=2" in options
    assert {
        k: flags[k]
        for k in (
            "--train_batch_size",
            "--gradient_accumulation_steps",
            "--learning_rate",
            "--warmup_proportion",
            "--steps_this_run",
            "--json-summary",
        )
    } == {
        "--train_batch_size": "64",
        "--gradient_accumulation_steps": "4",
        "--learning_rate": "1e-3",
        "--warmup_proportion": "0.5",
        "--steps_this_run": "10",
        "--json-summary": f"{tmp_path}/res/dllogger.json",
    }
    assert {"--phase2", "--resume_from_checkpoint", "--dynamic_masking"} <= flags.keys()
    assert not {"--fp16", "--allreduce_post_accumulation_fp16", "--bin_size"} & flags.keys()
    assert flags["--config_file"] == f"{REPO_ROOT}/bert_configs/base.json"


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"BATCHSIZE": "64", "TRAIN_BATCH_SIZE": "128"}, "BATCHSIZE=64 and TRAIN_BATCH_SIZE=128"),
        ({"GRADIENT_STEPS": "2", "GRADIENT_ACCUMULATION_STEPS": "4"}, "GRADIENT_STEPS=2 and"),
        ({"RERUN_DASK": "true"}, "RERUN_DASK=true rebuilds the data"),
        ({"RERUN_DASK": "maybe"}, "RERUN_DASK: 'maybe' is not true or false"),
        ({"GPUS": "a[$(touch {marker})]"}, "GPUS: 'a[$(touch"),
        ({"PHASE": "3"}, "PHASE: '3' is not one of: 1 2"),
        ({"PRECISION": "fp8"}, "PRECISION: 'fp8' is not fp16"),
        ({"CONFIG": "../x"}, "CONFIG=../x: no bert_configs/../x.json"),
        ({"BIN_SIZE": "48"}, "BIN_SIZE: '48' is not one of"),
        ({"DATA_DIR_PHASE1": "/nowhere"}, "DATA_DIR_PHASE1: /nowhere is missing or empty"),
        ({"IMAGE_VERSION": "21.11-py3", "CONTAINER_IMAGE": "other"}, "name different images"),
        ({"CONTAINER_IMAGE": "img", "RESULTS_DIR": "/tmp/a,b"}, "holds ',' or ':'"),
        ({"SLURM_JOB_NODELIST": ""}, "SLURM_JOB_NODELIST is not set"),
        ({"TRAIN_BATCH_SIZE": "99999999999999999999"}, "TRAIN_BATCH_SIZE: '99999999999999999999'"),
        ({"GPUS": str(2**64 + 1)}, "GPUS: '18446744073709551617' is more than 4096"),
        ({"STEPS": "1" + "0" * 5000}, "STEPS: '100000000000000000000000... (5001 characters)'"),
        ({"SEED": str(2**32)}, "SEED: '4294967296' is more than 4294963199"),
        ({"NUM_WORKERS": "5000"}, "NUM_WORKERS: '5000' is more than 4096"),
        ({"MASTER_PORT": str(2**64 + 80)}, "MASTER_PORT: '18446744073709551696' is not a port"),
        ({"NUM_SHARDS_PER_WORKER": "99999999999999999999"}, "NUM_SHARDS_PER_WORKER: '9999"),
    ],
)
def test_run_sub_refuses_with_one_line(env, expected, world, fakes, tmp_path):
    marker = tmp_path / "ran"
    env = {k: v.format(marker=marker) for k, v in env.items()}
    assert expected.format(marker=marker) in one_error_line(run_sub(world, fakes, tmp_path, **env))
    assert calls(fakes["log"]) == [] and not marker.exists()


def test_run_sub_in_a_container(world, fakes, tmp_path):
    ckpt = tmp_path / "init" / "ckpt_7038.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    result = run_sub(
        world, fakes, tmp_path, IMAGE_VERSION="21.11-py3", PHASE="2", INIT_CHECKPOINT=str(ckpt)
    )
    assert result.returncode == 0, result.stderr
    options, command, _ = srun_command(fakes)
    data = world["prep"] / HDF5.format(512, 80) / "wikicorpus_en"
    assert "--container-image=bert:21.11-py3" in options
    assert "--container-workdir=/workspace/bert" in options
    mounts = next(o for o in options if o.startswith("--container-mounts=")).split("=", 1)[1]
    assert mounts.split(",") == [
        f"{REPO_ROOT}:/workspace/bert",
        f"{tmp_path}/res:{tmp_path}/res",
        f"{data}:{data}",
        f"{ckpt.parent}:{ckpt.parent}",
    ]
    flags = parse_flags(command[3:])
    assert command[2] == "/workspace/bert/run_pretraining.py"
    assert flags["--init_checkpoint"] == str(ckpt)
    assert flags["--vocab_file"] == "/workspace/bert/vocab/vocab"


# --------------------------------------------------------------------------------------------
# A checkout whose path holds spaces


@pytest.fixture(scope="module")
def spaced_checkout(tmp_path_factory):
    """A copy of this checkout's files (links kept as links) under a path with spaces."""
    root = tmp_path_factory.mktemp("spaces") / "my bert checkout"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source, target = REPO_ROOT / name, root / name
        if not source.exists() and not source.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return root


def test_presets_from_a_checkout_whose_path_has_spaces(spaced_checkout, world):
    env = {k: v for k, v in world["env"].items() if k != "BERT_PREP_WORKING_DIR"}
    data = spaced_checkout / "data" / "pretrain"
    for phase in ("phase1/unbinned/parquet", "phase2/bin_size_64/parquet"):
        (data / phase).mkdir(parents=True, exist_ok=True)
        (data / phase / "part_0").write_text("x")
    lines = {
        "squad": "bash scripts/run_squad.sh $(source scripts/configs/squad_config.sh && "
        "dgxa100_8gpu_fp16)",
        "glue": "bash scripts/run_glue.sh $(source scripts/configs/glue_config.sh && "
        "sst-2_dgx1-32g_8gpu_fp32)",
        "pretrain": "bash scripts/run_pretraining.sh $(source "
        "scripts/configs/pretrain_config.sh && dgxa100-80g_8gpu_fp16)",
    }
    for name, line in lines.items():
        result = subprocess.run(
            ["bash", "-c", line],
            cwd=spaced_checkout,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        for _, script, flags in commands(result):
            assert Path(flags["--config_file"]).is_file(), (name, flags)
            assert Path(flags["--vocab_file"]).is_file(), (name, flags)
            assert flags["--output_dir"].startswith(str(spaced_checkout) + "/results/"), name
            assert script.startswith("run_")


@pytest.mark.slow
def test_quickstart_first_stages_from_a_checkout_whose_path_has_spaces(spaced_checkout, world):
    env = {k: v for k, v in world["env"].items() if k != "BERT_PREP_WORKING_DIR"}
    env |= {"QUICKSTART_STOP_AFTER": "3", "DRY_RUN": "1", "DUPE_FACTOR": "1"}
    result = subprocess.run(
        ["bash", "scripts/quickstart.sh"],
        cwd=spaced_checkout,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stopped after stage 3" in result.stdout
    out = spaced_checkout / "results" / "quickstart"
    assert list((out / "shards" / "phase1").glob("*training*.hdf5"))
    lines = [line for line in result.stdout.splitlines() if "run_pretraining.py" in line]
    assert len(lines) == 2
    phase1 = parse_flags(shlex.split(lines[0])[2:])
    assert phase1["--input_dir"] == f"{out}/shards/phase1"
    assert phase1["--config_file"] == f"{spaced_checkout}/bert_configs/tiny.json"
    assert phase1["--json-summary"] == f"{out}/pretraining/dllogger.json"
    assert not (out / "pretraining").exists()  # a dry run


# --------------------------------------------------------------------------------------------
# A real run of NVIDIA 21.11's 13-argument form


@pytest.mark.slow
def test_squad_21_11_form_trains_then_evaluates_for_real(world, tmp_path):
    from checkpoint import save_nvidia_checkpoint
    from logger import read_dllogger_file
    from modeling import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_json_file(TINY_CONFIG))
    save_nvidia_checkpoint(tmp_path / "ckpt.pt", model.state_dict(), model.config)
    squad_dir = tmp_path / "squad" / "v1.1"  # a few steps' worth of the bundled sample
    squad_dir.mkdir(parents=True)
    for name, questions in (("train-v1.1.json", 16), ("dev-v1.1.json", 8)):
        data = json.loads((REPO_ROOT / "data/sample/squad/v1.1" / name).read_text())
        paragraphs, left = [], questions
        for paragraph in (p for article in data["data"] for p in article["paragraphs"]):
            paragraph["qas"] = paragraph["qas"][:left]
            left -= len(paragraph["qas"])
            paragraphs += [paragraph] if paragraph["qas"] else []
        data["data"] = [{"title": "sample", "paragraphs": paragraphs}]
        (squad_dir / name).write_text(json.dumps(data))
    out = tmp_path / "out"

    def squad(checkpoint, mode):
        args = [
            checkpoint,
            "1.0",
            "8",
            "1e-3",
            "fp32",
            "1",
            "1",
            squad_dir,
            "vocab/vocab",
            out,
            mode,
            TINY_CONFIG,
            "-1",
        ]
        assert len(args) == 13  # NVIDIA 21.11's form
        script = str(REPO_ROOT / "scripts/run_squad.sh")
        env = {"DRY_RUN": "0", "OMP_NUM_THREADS": "1"}
        result = run(["bash", script, *map(str, args)], world, cwd=tmp_path, **env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    squad(tmp_path / "ckpt.pt", "train")
    assert (out / "pytorch_model.bin").is_file() and (out / "logfile.txt").is_file()
    squad(out / "pytorch_model.bin", "eval")
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 8
    finals = {
        k: v
        for e in read_dllogger_file(out / "dllogger.json")
        if e.get("step") == []
        for k, v in e["data"].items()
    }
    assert {"final_loss", "training_sequences_per_second", "exact_match", "F1"} <= finals.keys()
    official = official_squad_v1_scores(squad_dir / "dev-v1.1.json", predictions)
    assert finals["exact_match"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert finals["F1"] == pytest.approx(official["f1"], abs=1e-9)
    everything = read_dllogger_file(out / "dllogger.json")  # both runs'
    nvidias = read_dllogger_file(tmp_path / "results" / "dllogger.json")  # the eval run's
    assert 0 < len(nvidias) < len(everything) and everything[-len(nvidias) :] == nvidias
    assert any("exact_match" in e["data"] for e in nvidias if e.get("step") == [])
