"""export_onnx.py: the exported QA and classification graphs, run by onnxruntime, match a freshly
loaded PyTorch model at several padded shapes; the batch and sequence axes are symbolic; bad
input ends with one line, exit code 1 and no file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import export_onnx
from checkpoint import load_model_weights, save_nvidia_checkpoint
from modeling import BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification
from tests.support import TINY_CONFIG, random_batch, tiny_config

SHAPES = ((1, 8), (3, 37), (8, 128), (2, 200))  # random_batch pads rows 1.. by 5 per row
NUM_LABELS = 3


def _checkpoint(model: torch.nn.Module, folder) -> str:
    path = folder / "model.pt"
    save_nvidia_checkpoint(path, model.state_dict(), model.config)
    return str(path)


def _export(tmp_path_factory, task: str, model: torch.nn.Module, *extra: str) -> dict:
    folder = tmp_path_factory.mktemp(task)
    checkpoint, output = _checkpoint(model, folder), folder / "out" / "bert.onnx"
    argv = [
        "--init_checkpoint",
        checkpoint,
        "--config_file",
        str(TINY_CONFIG),
        "--task",
        task,
        "--output",
        str(output),
        "--json",
        str(folder / "report.json"),
        "--repeats",
        "1",
        *extra,
    ]
    assert export_onnx.main(argv) == 0
    return {"checkpoint": checkpoint, "output": output, "report": folder / "report.json"}


@pytest.fixture(scope="module")
def qa_export(tmp_path_factory) -> dict:
    torch.manual_seed(1)
    return _export(tmp_path_factory, "qa", BertForQuestionAnswering(tiny_config()))


@pytest.fixture(scope="module")
def classification_export(tmp_path_factory) -> dict:
    torch.manual_seed(2)
    model = BertForSequenceClassification(tiny_config(), NUM_LABELS)
    return _export(tmp_path_factory, "classification", model, "--num_labels", str(NUM_LABELS))


def _max_diff_from_pytorch(exported: dict, model: torch.nn.Module) -> float:
    """Run the .onnx file and `model` (loaded from the same checkpoint) on padded batches."""
    load_model_weights(model, exported["checkpoint"])
    model.eval()
    session = onnxruntime.InferenceSession(str(exported["output"]))
    diffs = []
    for batch, seq in SHAPES:
        inputs = random_batch(batch, seq, seed=batch + seq)
        with torch.no_grad():
            expected = model(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        feed = dict(zip(export_onnx.INPUT_NAMES, (t.numpy() for t in inputs), strict=True))
        got = session.run(None, feed)
        assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
        diffs += [float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True)]
    return max(diffs)


def _dims(values) -> dict[str, list]:
    return {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in values
    }


@pytest.mark.slow
def test_qa_export_matches_pytorch(qa_export):
    model = BertForQuestionAnswering(tiny_config())  # SDPA: the path users run in PyTorch
    assert _max_diff_from_pytorch(qa_export, model) <= 1e-4
    report = json.loads(qa_export["report"].read_text())
    assert report["passed"] and report["max_abs_diff"] <= 1e-4
    assert [(r["batch"], r["sequence"]) for r in report["shapes"]] == [(1, 8), (3, 37), (8, 128)]
    assert all(
        r["torch_seq_per_s"] > 0 and r["onnxruntime_seq_per_s"] > 0 for r in report["shapes"]
    )
    assert report["shapes"][-1]["padded_fraction"] > 0


@pytest.mark.slow
def test_classification_export_matches_pytorch(classification_export):
    model = BertForSequenceClassification(tiny_config(), NUM_LABELS)
    assert _max_diff_from_pytorch(classification_export, model) <= 1e-4


@pytest.mark.slow
def test_axes_are_dynamic(qa_export, classification_export):
    qa = onnx.load(str(qa_export["output"]))
    onnx.checker.check_model(qa)
    expected = {name: ["batch", "sequence"] for name in export_onnx.INPUT_NAMES}
    assert _dims(qa.graph.input) == expected
    assert _dims(qa.graph.output) == {
        "start_logits": ["batch", "sequence"],
        "end_logits": ["batch", "sequence"],
    }
    classification = onnx.load(str(classification_export["output"]))
    assert _dims(classification.graph.input) == expected
    assert _dims(classification.graph.output) == {"logits": ["batch", NUM_LABELS]}


def _run_failing(capsys, tmp_path, *argv: str, status: int = 1) -> str:
    output = tmp_path / "out" / "bert.onnx"
    args = ["--config_file", str(TINY_CONFIG), "--task", "qa", "--output", str(output), *argv]
    assert export_onnx.main(args) == status
    assert not output.parent.exists() or not any(output.parent.iterdir())
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export_onnx.py: error: ")
    return lines[0]


def test_missing_checkpoint_is_one_line_and_no_file(capsys, tmp_path):
    missing = tmp_path / "nowhere.pt"
    line = _run_failing(capsys, tmp_path, "--init_checkpoint", str(missing), status=2)
    assert f"--init_checkpoint {missing}: no such file or folder" in line


def test_corrupt_checkpoint_is_one_line_and_no_file(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    line = _run_failing(capsys, tmp_path, "--init_checkpoint", str(corrupt))
    assert str(corrupt) in line


def test_checkpoint_without_the_task_head_is_refused(capsys, tmp_path):
    pretrained = _checkpoint(BertForPreTraining(tiny_config()), tmp_path)
    line = _run_failing(capsys, tmp_path, "--init_checkpoint", pretrained)
    assert pretrained in line and "qa_outputs.weight" in line


def test_bad_config_and_output_paths(capsys, tmp_path):
    missing_config = tmp_path / "missing.json"
    line = _run_failing(capsys, tmp_path, "--config_file", str(missing_config), status=2)
    assert str(missing_config) in line
    (tmp_path / "folder.onnx").mkdir()
    line = _run_failing(capsys, tmp_path, "--output", str(tmp_path / "folder.onnx"), status=2)
    assert "folder.onnx" in line and "folder" in line
    line = _run_failing(capsys, tmp_path, "--check_shapes", "8x9999", status=2)
    assert "--check_shapes" in line


@pytest.mark.slow
def test_failed_check_writes_no_file(qa_export, capsys, tmp_path, monkeypatch):
    onnx_bytes = qa_export["output"].read_bytes()
    monkeypatch.setattr(export_onnx, "export", lambda *args: onnx_bytes)
    real_compare = export_onnx.compare

    def off_by_one(*args):  # a graph that disagrees with PyTorch
        return [row | {"max_abs_diff": row["max_abs_diff"] + 1.0} for row in real_compare(*args)]

    monkeypatch.setattr(export_onnx, "compare", off_by_one)
    line = _run_failing(
        capsys,
        tmp_path,
        "--init_checkpoint",
        qa_export["checkpoint"],
        "--check_shapes",
        "2x8",
        "--repeats",
        "1",
    )
    assert "differs from PyTorch" in line
