"""pretraining_eval.py and run_pretraining.py's held-out evaluation: the metrics against a
float64 re-derivation, the samples (the first N in name order, split over ranks without changing
the result), a run with evaluation training bit for bit as one without, `--do_eval` equal to the
value the run logged for the same checkpoint, and a resumed run scoring the same samples."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

import run_pretraining
from checkpoint import torch_load
from logger import read_dllogger_file
from modeling import BertConfig, BertForPreTraining
from pretraining_data import PretrainingShard, ShardError
from pretraining_eval import EVAL_KEYS, HeldOutSet, eval_files, evaluate
from tests.support import TINY_CONFIG, pretrain_in_process, write_random_shards
from training import make_precision

RUN = [
    "--train_batch_size=8",
    "--gradient_accumulation_steps=2",
    "--learning_rate=2e-2",
    "--max_steps=4",
    "--warmup_proportion=0.5",
    "--num_steps_per_checkpoint=2",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training shards, held-out shards named as NVIDIA's data preparation names them, and a
    tiny config whose vocabulary fits their ids."""
    root = tmp_path_factory.mktemp("eval")
    write_random_shards(root / "training")
    write_random_shards(root / "test", files=3, rows=10, name="books_wiki_en_corpus_test", seed=7)
    config = json.loads(TINY_CONFIG.read_text()) | {"vocab_size": 3072}
    (root / "config.json").write_text(json.dumps(config))
    return root


def model_of(data) -> BertForPreTraining:
    torch.manual_seed(0)
    return BertForPreTraining(BertConfig.from_json_file(data / "config.json")).eval()


def reference_metrics(model: BertForPreTraining, files, count: int) -> dict[str, float]:
    """The four metrics sample by sample in float64 from the model's full scores (the plain
    head over every position), without the evaluation code."""
    mlm_losses, mlm_hits, nsp_losses, nsp_hits = [], [], [], []
    model.sequence_output_is_dense = False
    seen = 0
    for path in files:
        shard = PretrainingShard(path)
        for index in range(len(shard)):
            if seen == count:
                break
            ids, segments, mask, labels, nsp = shard.batch([index])
            with torch.no_grad():
                scores, relationship = model(ids, segments, mask)
            log_probs = torch.log_softmax(scores[0].double(), -1)
            for position in (labels[0] != -1).nonzero().flatten().tolist():
                label = int(labels[0, position])
                mlm_losses.append(-float(log_probs[position, label]))
                mlm_hits.append(int(scores[0, position].argmax()) == label)
            nsp_log = torch.log_softmax(relationship[0].double(), -1)
            nsp_losses.append(-float(nsp_log[int(nsp)]))
            nsp_hits.append(int(relationship[0].argmax()) == int(nsp))
            seen += 1
    model.sequence_output_is_dense = True
    return dict(
        zip(
            EVAL_KEYS,
            [np.mean(mlm_losses), np.mean(mlm_hits), np.mean(nsp_losses), np.mean(nsp_hits)],
            strict=True,
        )
    )


def test_metrics_equal_a_float64_re_derivation_over_the_first_samples(data):
    model = model_of(data)
    files = eval_files(data / "test")
    assert [p.name for p in files] == [f"books_wiki_en_corpus_test_{i}.hdf5" for i in range(3)]
    held_out = HeldOutSet.load(data / "test", 25, batch_size=4)  # 10 + 10 + 5 of the third file
    assert held_out.total == 25 and sum(len(b.input_ids) for b in held_out.batches) == 25
    metrics = evaluate(model, held_out, torch.device("cpu"), make_precision("fp32", "cpu"))
    expected = reference_metrics(model, files, 25)
    assert list(metrics) == list(EVAL_KEYS)
    for key in EVAL_KEYS:
        assert metrics[key] == pytest.approx(expected[key], abs=1e-5), key
    assert model.training is False  # the mode it had; the training mode comes back the same way
    everything = HeldOutSet.load(data / "test", 10**9, batch_size=7)
    assert everything.total == 30  # fewer samples than asked: all of them


def test_ranks_share_the_samples_and_the_sums_do_not_depend_on_their_number(data):
    model, device = model_of(data), torch.device("cpu")
    precision = make_precision("fp32", device)

    def totals(world_size: int) -> torch.Tensor:
        summed = []
        for rank in range(world_size):
            held_out = HeldOutSet.load(data / "test", 23, 3, rank=rank, world_size=world_size)
            assert sum(len(b.input_ids) for b in held_out.batches) == len(
                range(rank, 23, world_size)
            )
            evaluate(model, held_out, device, precision, reduce=lambda t: summed.append(t) or t)
        return torch.stack(summed).sum(0)

    one, three = totals(1), totals(3)
    assert one[2] == three[2] and one[5] == three[5] == 23  # masked tokens, samples
    torch.testing.assert_close(one, three, rtol=1e-6, atol=0)  # float32 sums of other batches


def test_an_empty_or_shardless_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a shard")
    with pytest.raises(ShardError, match=r"--eval_dir .*: no HDF5"):
        eval_files(tmp_path)


def run_log(path) -> list[dict]:
    return [record for record in read_dllogger_file(path) if record.get("type") == "LOG"]


def evaluations(log) -> dict[int, dict]:
    """{step: the four metrics} of a run's dllogger file."""
    found = {}
    for record in run_log(log):
        if EVAL_KEYS[0] in record["data"]:
            found[record["step"][-1] if record["step"] else None] = record["data"]
    return found


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """The same 4 steps without and with evaluation (every 2 steps; the end is step 4)."""
    root = tmp_path_factory.mktemp("runs")
    config = data / "config.json"
    plain, with_eval = root / "plain", root / "with_eval"
    assert pretrain_in_process(data / "training", plain, config, f"{plain}.json", *RUN) == 0
    extra = [f"--eval_dir={data / 'test'}", "--eval_every=2", "--eval_max_samples=25"]
    log = f"{with_eval}.json"
    assert pretrain_in_process(data / "training", with_eval, config, log, *RUN, *extra) == 0
    return plain, with_eval


def identical(a, b) -> bool:
    """Equal to the bit: tensors with torch.equal, containers element by element."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_evaluation_leaves_training_bit_identical(runs):
    plain, with_eval = runs
    for name in ("ckpt_2.pt", "ckpt_4.pt"):
        a, b = torch_load(plain / name), torch_load(with_eval / name)
        for key in ("model", "master params", "optimizer", "rng_state", "data_position"):
            assert identical(a[key], b[key]), (name, key)
    assert set(evaluations(f"{with_eval}.json")) == {2, 4}  # every 2 steps; the end is step 4
    assert evaluations(f"{plain}.json") == {}


def test_do_eval_gives_the_value_the_run_logged_for_that_checkpoint(data, runs, tmp_path):
    _, with_eval = runs
    logged = evaluations(f"{with_eval}.json")
    for step in (2, 4):
        log = tmp_path / f"eval_{step}.json"
        flags = [
            "--do_eval",
            "--no_cuda",
            f"--config_file={data / 'config.json'}",
            f"--init_checkpoint={with_eval / f'ckpt_{step}.pt'}",
            f"--eval_dir={data / 'test'}",
            "--eval_max_samples=25",
            "--train_batch_size=8",
            "--gradient_accumulation_steps=2",  # the run's micro-batch: its evaluation batches
            f"--json-summary={log}",
        ]
        assert run_pretraining.main(flags) == 0
        assert evaluations(log)[None] == logged[step]


def test_a_resumed_run_evaluates_the_same_samples(data, runs, tmp_path):
    _, with_eval = runs
    output, log = tmp_path / "out", tmp_path / "log.json"
    extra = [f"--eval_dir={data / 'test'}", "--eval_every=2", "--eval_max_samples=25"]
    config = data / "config.json"
    first = pretrain_in_process(
        data / "training", output, config, log, *RUN, *extra, "--steps_this_run=2"
    )
    resumed = pretrain_in_process(
        data / "training", output, config, log, *RUN, *extra, "--resume_from_checkpoint"
    )
    assert first == resumed == 0
    assert evaluations(log) == evaluations(f"{with_eval}.json")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--do_train is required"),
        (["--do_eval"], "--do_eval without --do_train evaluates --init_checkpoint on --eval_dir"),
        (["--do_train", "--do_eval"], "--input_dir is required with --do_train"),
    ],
)
def test_flag_combinations_are_one_line(flags, message, capsys):
    assert run_pretraining.main([*flags, f"--config_file={TINY_CONFIG}"]) == 2
    assert message in capsys.readouterr().err


def test_held_out_shards_without_masked_positions_are_refused(tmp_path):
    """A held-out shard whose masked positions are all padding would report a masked-LM loss
    and accuracy of 0 from nothing: refused when it is read, before training, naming it."""
    (path,) = write_random_shards(tmp_path, files=1, rows=8, name="held_test")
    with h5py.File(path, "r+") as shard:
        shard["masked_lm_positions"][...] = 0
    with pytest.raises(ShardError, match=rf"{path}: no usable masked positions"):
        HeldOutSet.load(tmp_path, 8, 4)
