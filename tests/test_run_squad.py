"""run_squad.py, scripts/run_squad.sh and inference.py end to end on the bundled SQuAD sample
with a tiny model: outputs and logged keys, trimmed == padded predictions, the schedule,
distributed prediction, bad input."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types

import pytest
import torch

import run_squad as squad_script  # `run_squad` runs it in a subprocess below
import squad
from checkpoint import load_model_weights
from errors import UsageError
from logger import read_dllogger_file
from modeling import BertConfig, BertForQuestionAnswering
from squad import SquadError
from tests.support import (
    REPO_ROOT,
    TINY_CONFIG,
    UNCASED_VOCAB,
    launcher_env,
    official_squad_v1_scores,
    one_error_line,
    run_main,
)
from tokenization import BertTokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fine_tuned(pretrained, tmp_path_factory, squad_sample):
    """The launcher's CPU preset: train and evaluate on (a copy of) the sample."""
    out = tmp_path_factory.mktemp("squad")
    env = launcher_env(INIT_CHECKPOINT=str(pretrained), OUT_DIR=str(out))
    preset = subprocess.run(
        ["bash", "-c", "source scripts/configs/squad_config.sh && cpu_sample_tiny"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    assert preset.count("data/sample/squad/v1.1") == 1
    preset = [str(squad_sample / "v1.1") if w == "data/sample/squad/v1.1" else w for w in preset]
    result = subprocess.run(
        ["bash", "scripts/run_squad.sh", *preset],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


TINY = [f"--vocab_file={UNCASED_VOCAB}", f"--config_file={TINY_CONFIG}", "--do_lower_case"]


def run_squad(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_squad.py", *TINY, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def squad_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """run_squad.py's main in this process, with the tiny model's flags: no interpreter start-up."""
    return run_main("run_squad", [*TINY, *args], capsys)


def test_launcher_trains_predicts_and_scores(fine_tuned, squad_sample):
    names = {p.name for p in fine_tuned.iterdir()}
    assert {
        "predictions.json",
        "nbest_predictions.json",
        "pytorch_model.bin",
        "config.json",
        "bert_config.json",
        "dllogger.json",
        "logfile.txt",
    } <= names
    config = BertConfig.from_json_file(fine_tuned / "bert_config.json")  # 21.11's name
    assert (fine_tuned / "config.json").read_text() == (fine_tuned / "bert_config.json").read_text()
    assert config == BertConfig.from_json_file(TINY_CONFIG)
    assert not [p for p in fine_tuned.iterdir() if p.name.endswith(".tmp")]  # atomic writes
    events = read_dllogger_file(fine_tuned / "dllogger.json")
    summary = {k: v for e in events if e.get("step") == [] for k, v in e["data"].items()}
    assert {
        "e2e_train_time",
        "training_sequences_per_second",
        "final_loss",
        "e2e_inference_time",
        "inference_sequences_per_second",
        "exact_match",
        "F1",
    } <= set(summary)
    predictions = json.loads((fine_tuned / "predictions.json").read_text())
    assert len(predictions) == 290
    official = official_squad_v1_scores(squad_sample / "v1.1" / "dev-v1.1.json", predictions)
    assert official["f1"] > 0  # a value that can disagree, not 0 against 0
    assert summary["exact_match"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert summary["F1"] == pytest.approx(official["f1"], abs=1e-9)
    nbest = json.loads((fine_tuned / "nbest_predictions.json").read_text())
    first = next(iter(nbest.values()))
    assert {"text", "probability", "start_logit", "end_logit"} == set(first[0])
    steps = [e["data"]["steps"] for e in events if "steps" in e.get("data", {})]
    features = squad.convert_examples_to_features(
        squad.read_squad_examples(squad_sample / "v1.1" / "train-v1.1.json", True),
        __import__("tokenization").BertTokenizer(UNCASED_VOCAB),
        is_training=True,
    )
    assert steps == [2 * -(-len(features) // 16)]  # schedule from features, 2 epochs of batch 16
    model = BertForQuestionAnswering(BertConfig.from_json_file(TINY_CONFIG))
    assert load_model_weights(model, fine_tuned / "pytorch_model.bin", strict=True).missing == []


def test_trimmed_batches_predict_like_padded_ones(fine_tuned, tmp_path, squad_sample, capsys):
    dev = squad_sample / "v1.1" / "dev-v1.1.json"
    common = [
        f"--init_checkpoint={fine_tuned / 'pytorch_model.bin'}",
        "--do_predict",
        f"--predict_file={dev}",
        "--predict_batch_size=16",
    ]
    for name, extra in (("trim", []), ("pad", ["--no_trim"])):
        result = squad_main(
            capsys,
            *common,
            f"--output_dir={tmp_path / name}",
            f"--json-summary={tmp_path / name}/log.json",
            *extra,
        )
        assert result.returncode == 0, result.stderr
    trimmed = json.loads((tmp_path / "trim" / "predictions.json").read_text())
    padded = json.loads((tmp_path / "pad" / "predictions.json").read_text())
    assert trimmed == padded
    a = json.loads((tmp_path / "trim" / "nbest_predictions.json").read_text())
    b = json.loads((tmp_path / "pad" / "nbest_predictions.json").read_text())
    for qid, entries in a.items():
        for x, y in zip(entries, b[qid], strict=True):
            assert x["text"] == y["text"]
            assert abs(x["start_logit"] - y["start_logit"]) < 1e-4


def test_prediction_across_two_processes(fine_tuned, tmp_path, squad_sample):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--standalone",
            "run_squad.py",
            f"--vocab_file={UNCASED_VOCAB}",
            f"--config_file={TINY_CONFIG}",
            "--no_cuda",
            "--do_lower_case",
            f"--init_checkpoint={fine_tuned / 'pytorch_model.bin'}",
            "--do_predict",
            f"--predict_file={squad_sample / 'v1.1' / 'dev-v1.1.json'}",
            f"--output_dir={tmp_path}",
            f"--json-summary={tmp_path}/log.json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env | {"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "predictions.json").read_text()) == json.loads(
        (fine_tuned / "predictions.json").read_text()
    )


def test_max_steps_is_exact_and_v2_runs(pretrained, tmp_path, squad_sample, capsys):
    result = squad_main(
        capsys,
        f"--init_checkpoint={pretrained}",
        "--do_train",
        "--max_steps=3",
        f"--train_file={squad_sample / 'v1.1' / 'train-v1.1.json'}",
        "--train_batch_size=8",
        "--log_freq=1",
        f"--output_dir={tmp_path / 'a'}",
        f"--json-summary={tmp_path / 'a' / 'log.json'}",
        "--skip_checkpoint",
    )
    assert result.returncode == 0, result.stderr
    logged = [
        e["step"]
        for e in read_dllogger_file(tmp_path / "a/log.json")
        if isinstance(e.get("step"), list) and len(e["step"]) == 2
    ]
    assert [step for _, step in logged] == [1, 2, 3]
    assert not (tmp_path / "a" / "pytorch_model.bin").exists()
    v2 = squad_sample / "v2.0" / "dev-v2.0.json"
    result = squad_main(
        capsys,
        f"--init_checkpoint={pretrained}",
        "--do_predict",
        "--do_eval",
        f"--predict_file={v2}",
        "--version_2_with_negative",
        f"--output_dir={tmp_path / 'b'}",
        f"--json-summary={tmp_path / 'b' / 'l.json'}",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b" / "null_odds.json").exists()
    odds = json.loads((tmp_path / "b" / "null_odds.json").read_text())
    assert len(set(odds.values())) > 1  # each question its own null score (reference bug 25)
    result = squad_main(
        capsys,
        f"--init_checkpoint={pretrained}",
        "--do_predict",
        f"--predict_file={v2}",
        f"--output_dir={tmp_path / 'c'}",
        f"--json-summary={tmp_path / 'c' / 'l.json'}",
    )
    assert "looks like SQuAD v2.0: pass --version_2_with_negative" in result.stderr


def test_inference_uses_doc_stride_and_agrees_with_run_squad(fine_tuned, tmp_path):
    context = " ".join(["The river flows past the old mill ."] * 60) + " Harry likes pizza ."
    question = "What does Harry like?"
    checkpoint = fine_tuned / "pytorch_model.bin"
    result = subprocess.run(
        [
            sys.executable,
            "inference.py",
            f"--init_checkpoint={checkpoint}",
            f"--vocab_file={UNCASED_VOCAB}",
            f"--config_file={TINY_CONFIG}",
            "--do_lower_case",
            "--question",
            question,
            "--context",
            context,
            "--n_best_size=3",
            "--max_seq_length=128",
            "--doc_stride=64",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer = result.stdout.splitlines()[1].removeprefix("answer: ")
    nbest = json.loads(result.stdout[result.stdout.index("[") :])
    assert len(nbest) == 3 and nbest[0]["text"] == answer
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": "q",
                                "question": question,
                                "answers": [{"text": "pizza", "answer_start": 0}],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "one.json").write_text(json.dumps(data))
    squad_run = run_squad(
        f"--init_checkpoint={checkpoint}",
        "--do_predict",
        f"--predict_file={tmp_path / 'one.json'}",
        "--max_seq_length=128",
        "--doc_stride=64",
        "--n_best_size=3",
        f"--output_dir={tmp_path}",
        f"--json-summary={tmp_path}/log.json",
    )
    assert squad_run.returncode == 0, squad_run.stderr
    assert json.loads((tmp_path / "predictions.json").read_text())["q"] == answer


def test_compiled_training_and_prediction_match_eager(pretrained, tmp_path, squad_sample):
    """--compile (compiled layers, widths of 64, a filled-up last batch) trains to the same
    losses and predicts the same answers as the eager path, on the sample with the tiny model
    (dropout off, so both draw no random masks)."""
    config = json.loads(TINY_CONFIG.read_text()) | {
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    runs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / name
        result = subprocess.run(
            [
                sys.executable,
                "run_squad.py",
                f"--vocab_file={UNCASED_VOCAB}",
                f"--config_file={tmp_path / 'config.json'}",
                "--do_lower_case",
                "--no_cuda",
                f"--init_checkpoint={pretrained}",
                "--do_train",
                "--do_predict",
                f"--train_file={squad_sample / 'v1.1' / 'train-v1.1.json'}",
                f"--predict_file={squad_sample / 'v1.1' / 'dev-v1.1.json'}",
                f"--output_dir={out}",
                f"--json-summary={out}/log.json",
                "--train_batch_size=8",
                "--max_steps=6",
                "--log_freq=3",
                "--max_seq_length=128",
                "--doc_stride=64",
                "--max_query_length=32",
                "--predict_batch_size=16",
                "--skip_cache",
                "--skip_checkpoint",
                *extra,
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        events = read_dllogger_file(out / "log.json")
        losses = [e["data"]["step_loss"] for e in events if "step_loss" in e.get("data", {})]
        nbest = json.loads((out / "nbest_predictions.json").read_text())
        runs[name] = (losses, json.loads((out / "predictions.json").read_text()), nbest)
    (eager_losses, eager_answers, eager_nbest), (losses, answers, nbest) = runs.values()
    assert len(losses) == 2 and losses == pytest.approx(eager_losses, abs=1e-4)
    assert answers == eager_answers and len(answers) == 290
    for qid, entries in nbest.items():
        for x, y in zip(entries, eager_nbest[qid], strict=True):
            assert x["text"] == y["text"] and abs(x["start_logit"] - y["start_logit"]) < 1e-3


def test_bad_input(pretrained, tmp_path, squad_sample, capsys):
    def run_squad(*args: str) -> subprocess.CompletedProcess:
        return squad_main(capsys, *args)

    out = [f"--output_dir={tmp_path}", f"--json-summary={tmp_path}/log.json"]
    assert "--do_train needs --train_file" in one_error_line(run_squad(*out, "--do_train"), 2)
    assert "at least one of --do_train or --do_predict" in one_error_line(run_squad(*out), 2)
    line = one_error_line(
        run_squad(
            *out,
            "--do_predict",
            f"--predict_file={tmp_path / 'none.json'}",
            f"--init_checkpoint={pretrained}",
        ),
        2,
    )
    assert f"--predict_file {tmp_path / 'none.json'}: no such file" in line
    (tmp_path / "bad.json").write_text("{not json")
    line = one_error_line(
        run_squad(*out, "--do_predict", f"--predict_file={tmp_path / 'bad.json'}"), 2
    )
    assert "without --do_train needs --init_checkpoint" in line
    line = one_error_line(
        run_squad(
            *out,
            "--do_predict",
            f"--predict_file={tmp_path / 'bad.json'}",
            f"--init_checkpoint={pretrained}",
        )
    )
    assert "not valid JSON" in line
    batch = ["--train_batch_size=10", "--gradient_accumulation_steps=3"]
    train_file = squad_sample / "v1.1/train-v1.1.json"
    line = one_error_line(run_squad(*out, "--do_train", f"--train_file={train_file}", *batch), 2)
    assert "not divisible" in line
    line = one_error_line(
        run_squad(
            *out,
            "--do_predict",
            f"--predict_file={squad_sample / 'v1.1/dev-v1.1.json'}",
            f"--init_checkpoint={tmp_path / 'missing.pt'}",
        ),
        2,
    )
    assert "missing.pt" in line


def test_trimmed_training_batches_give_the_padded_loss(pretrained, tmp_path, squad_sample, capsys):
    config = json.loads(TINY_CONFIG.read_text()) | {
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    logged = {}
    for name, extra in (("trim", []), ("pad", ["--no_trim"])):
        result = run_main(
            "run_squad",
            [
                f"--vocab_file={UNCASED_VOCAB}",
                f"--config_file={tmp_path / 'config.json'}",
                "--do_lower_case",
                f"--init_checkpoint={pretrained}",
                "--do_train",
                "--max_steps=2",
                "--log_freq=1",
                f"--train_file={squad_sample / 'v1.1' / 'train-v1.1.json'}",
                "--train_batch_size=8",
                f"--output_dir={tmp_path / name}",
                f"--json-summary={tmp_path / name / 'l.json'}",
                "--skip_checkpoint",
                "--skip_cache",
                *extra,
            ],
            capsys,
        )
        assert result.returncode == 0, result.stderr
        events = read_dllogger_file(tmp_path / name / "l.json")
        logged[name] = [e["data"]["step_loss"] for e in events if "step_loss" in e.get("data", {})]
    assert len(logged["trim"]) == 2
    assert logged["trim"] == pytest.approx(logged["pad"], abs=1e-5)


def eval_args(tmp_path, *extra: str):
    """run_squad's arguments for scoring one question whose prediction is right."""
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "The Denver Broncos won.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Who won?",
                                "answers": [{"text": "Denver Broncos", "answer_start": 4}],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "dev.json").write_text(json.dumps(data))
    (tmp_path / "predictions.json").write_text(json.dumps({"q1": "Denver Broncos"}))
    return squad_script.parse_arguments(
        [
            f"--vocab_file={UNCASED_VOCAB}",
            f"--config_file={TINY_CONFIG}",
            "--do_predict",
            "--do_eval",
            f"--output_dir={tmp_path}",
            f"--predict_file={tmp_path / 'dev.json'}",
            f"--init_checkpoint={tmp_path / 'dev.json'}",  # checked to exist, never loaded here
            *extra,
        ]
    )


def score(args) -> dict:
    logged = {}
    run = types.SimpleNamespace(metrics=types.SimpleNamespace(log=lambda s, d: logged.update(d)))
    squad_script.do_eval(args, run, {"q1": "Denver Broncos"})
    return logged


def test_an_eval_script_in_the_data_folder_runs_only_with_the_flag(tmp_path, caplog):
    script, marker = tmp_path / "evaluate-v1.1.py", tmp_path / "marker"
    script.write_text(
        "import json, pathlib, sys\n"
        f"pathlib.Path({str(marker)!r}).write_text(' '.join(sys.argv[1:]))\n"
        "print(json.dumps({'exact_match': 42.0, 'f1': 43.0}))\n"
    )
    args = eval_args(tmp_path, f"--eval_script={script}")  # what NVIDIA's launcher passes
    with caplog.at_level(logging.INFO, logger="run_squad"):
        assert score(args) == {"exact_match": 100.0, "F1": 100.0}  # the built-in scorer
    assert not marker.exists()
    assert f"--eval_script {script} not run (--run_eval_script runs it)" in caplog.text
    args = eval_args(tmp_path, f"--eval_script={script}", "--run_eval_script")
    squad_script.check_arguments(args)
    assert score(args) == {"exact_match": 42.0, "F1": 43.0}
    assert marker.read_text() == f"{tmp_path / 'dev.json'} {tmp_path / 'predictions.json'}"


def test_run_eval_script_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "none.py"
    with pytest.raises(UsageError, match=f"--eval_script {missing}: no such file"):
        squad_script.check_arguments(
            eval_args(tmp_path, f"--eval_script={missing}", "--run_eval_script")
        )
    with pytest.raises(UsageError, match="--run_eval_script needs --eval_script"):
        squad_script.check_arguments(eval_args(tmp_path, "--run_eval_script"))
    broken = tmp_path / "broken.py"
    broken.write_text("raise SystemExit('cannot score')\n")
    with pytest.raises(SquadError, match=r"broken.py: exit status 1; stderr: cannot score$"):
        score(eval_args(tmp_path, f"--eval_script={broken}", "--run_eval_script"))
    with pytest.raises(SystemExit):
        squad_script.parse_arguments(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "it is run only with --run_eval_script, otherwise the built-in official EM/F1" in text
    assert "executes the code in that file" in text


def test_features_of_text_that_does_not_fit_the_vocabulary_are_warned_about(tmp_path, caplog):
    args = eval_args(tmp_path, "--skip_cache")
    run = types.SimpleNamespace(dist=types.SimpleNamespace(is_main_process=True))
    for lower, warned in ((True, False), (False, True)):
        args.do_lower_case = lower
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            tokenizer = BertTokenizer(UNCASED_VOCAB, do_lower_case=lower)
            examples = squad.read_squad_examples(args.predict_file, False)
            squad_script.features_for(args.predict_file, examples, False, tokenizer, args, run)
        unknown = f"{args.predict_file}: 50% of the tokens are [UNK] (4 of 8)"
        assert (unknown in caplog.text) is warned, caplog.text
        assert "lower-casing off" in caplog.text if warned else caplog.text == ""


def test_main_in_process_trains_predicts_scores_and_answers(
    pretrained, tmp_path, capsys, caplog, squad_sample
):
    """run_squad.main, inference.main and evaluate_squad.main in this process, one after the
    other, as a user's script would call them."""
    import evaluate_squad
    import inference

    out = tmp_path / "squad"
    dev = squad_sample / "v1.1" / "dev-v1.1.json"
    status = squad_script.main(
        [
            f"--vocab_file={UNCASED_VOCAB}",
            f"--config_file={TINY_CONFIG}",
            "--do_lower_case",
            f"--init_checkpoint={pretrained}",
            "--do_train",
            f"--train_file={squad_sample / 'v1.1' / 'train-v1.1.json'}",
            "--train_batch_size=8",
            "--max_steps=2",
            "--do_predict",
            f"--predict_file={dev}",
            "--predict_batch_size=64",
            "--do_eval",
            f"--output_dir={out}",
            f"--json-summary={out / 'log.json'}",
            "--skip_cache",
        ]
    )
    assert status == 0
    summary = {
        k: v
        for e in read_dllogger_file(out / "log.json")
        if e.get("step") == []
        for k, v in e["data"].items()
    }
    assert {"exact_match", "F1", "final_loss", "inference_sequences_per_second"} <= set(summary)
    weights = out / "pytorch_model.bin"
    assert weights.is_file() and (out / "bert_config.json").is_file()
    capsys.readouterr()
    assert evaluate_squad.main([str(dev), str(out / "predictions.json")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["exact_match"] == pytest.approx(summary["exact_match"])
    official = official_squad_v1_scores(dev, json.loads((out / "predictions.json").read_text()))
    assert summary["exact_match"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert summary["F1"] == pytest.approx(official["f1"], abs=1e-9)
    args = [
        f"--init_checkpoint={weights}",
        f"--vocab_file={UNCASED_VOCAB}",
        f"--config_file={TINY_CONFIG}",
    ]
    assert (
        inference.main([*args, "--do_lower_case", "--question=Who?", "--context=Alice met Bob."])
        == 0
    )
    assert "answer:" in capsys.readouterr().out
    root = logging.getLogger()
    level = root.level
    try:  # --verbose_logging shows the environment report among the other log lines
        assert inference.main([*args, "--do_lower_case", "--verbose_logging"]) == 0
    finally:
        root.setLevel(level)
    assert "environment: optimizer: none" in caplog.messages
    assert f"environment: torch_version: {torch.__version__}" in caplog.messages
