"""checkpoint.py and convert_checkpoint.py: every input format, the key map both ways, vocabulary
padding, Hugging Face export checked by `transformers` itself, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest
import torch

import convert_checkpoint
from checkpoint import (
    CheckpointError,
    atomic_torch_save,
    canonical_key,
    load_model_weights,
    load_state_dict_into,
    read_weights,
    save_hf_folder,
    save_nvidia_checkpoint,
    tf_state_dict,
    tf_variable_to_key,
)
from fileio import WriteError
from modeling import BertConfig, BertForPreTraining, BertForQuestionAnswering, BertModel
from tests.support import (
    REPO_ROOT,
    TINY_CONFIG,
    UNCASED_VOCAB,
    random_batch,
    run_main,
    tiny_config,
)


def outputs_equal(a: torch.nn.Module, b: torch.nn.Module, columns: int | None = None) -> None:
    """Same outputs on a padded batch (only the first `columns` vocabulary logits if given)."""
    batch = random_batch()
    with torch.no_grad():
        for x, y in zip(a.eval()(*batch), b.eval()(*batch), strict=True):
            torch.testing.assert_close(x[..., :columns], y[..., :columns], rtol=0, atol=0)


@pytest.fixture
def pretraining_model() -> BertForPreTraining:
    torch.manual_seed(5)
    model = BertForPreTraining(tiny_config())
    with torch.no_grad():  # non-zero heads, so a lost tensor cannot go unnoticed
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return model


# ----------------------------------------------------------------------------- key map


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight"),
        (
            "module.bert.encoder.layer.3.intermediate.dense.weight",
            "bert.encoder.layer.3.intermediate.dense_act.weight",
        ),
        ("_orig_mod.bert.pooler.dense.bias", "bert.pooler.dense_act.bias"),
        ("pooler.dense.weight", "bert.pooler.dense_act.weight"),
        ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense_act.weight"),
        (
            "bert.encoder.layer.0.attention.output.LayerNorm.gamma",
            "bert.encoder.layer.0.attention.output.LayerNorm.weight",
        ),
        ("bert.embeddings.LayerNorm.beta", "bert.embeddings.LayerNorm.bias"),
        ("bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.0.output.dense.weight"),
        (
            "bert.encoder.layer.1.intermediate.dense_act.bias",
            "bert.encoder.layer.1.intermediate.dense_act.bias",
        ),
        ("qa_outputs.weight", "qa_outputs.weight"),
    ],
)
def test_canonical_key(key, expected):
    assert canonical_key(key) == expected
    assert canonical_key(expected) == expected  # idempotent


def google_tf_variables(model: BertForPreTraining) -> dict:
    """The variables of a Google BERT TF checkpoint, built from a model (kernels transposed)."""
    config = model.config
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    names = {
        "bert/embeddings/word_embeddings": state["bert.embeddings.word_embeddings.weight"],
        "bert/embeddings/position_embeddings": state["bert.embeddings.position_embeddings.weight"],
        "bert/embeddings/token_type_embeddings": state[
            "bert.embeddings.token_type_embeddings.weight"
        ],
        "bert/embeddings/LayerNorm/gamma": state["bert.embeddings.LayerNorm.weight"],
        "bert/embeddings/LayerNorm/beta": state["bert.embeddings.LayerNorm.bias"],
        "bert/pooler/dense/kernel": state["bert.pooler.dense_act.weight"].T,
        "bert/pooler/dense/bias": state["bert.pooler.dense_act.bias"],
        "cls/predictions/transform/dense/kernel": state[
            "cls.predictions.transform.dense_act.weight"
        ].T,
        "cls/predictions/transform/dense/bias": state["cls.predictions.transform.dense_act.bias"],
        "cls/predictions/transform/LayerNorm/gamma": state[
            "cls.predictions.transform.LayerNorm.weight"
        ],
        "cls/predictions/transform/LayerNorm/beta": state[
            "cls.predictions.transform.LayerNorm.bias"
        ],
        "cls/predictions/output_bias": state["cls.predictions.bias"],
        "cls/seq_relationship/output_weights": state["cls.seq_relationship.weight"],
        "cls/seq_relationship/output_bias": state["cls.seq_relationship.bias"],
        "global_step": 1000,
    }
    for i in range(config.num_hidden_layers):
        tf, pt = f"bert/encoder/layer_{i}/", f"bert.encoder.layer.{i}."
        for tf_name, pt_name in [
            ("attention/self/query", "attention.self.query"),
            ("attention/self/key", "attention.self.key"),
            ("attention/self/value", "attention.self.value"),
            ("attention/output/dense", "attention.output.dense"),
            ("intermediate/dense", "intermediate.dense_act"),
            ("output/dense", "output.dense"),
        ]:
            names[tf + tf_name + "/kernel"] = state[pt + pt_name + ".weight"].T
            names[tf + tf_name + "/bias"] = state[pt + pt_name + ".bias"]
            names[tf + tf_name + "/kernel/adam_m"] = state[pt + pt_name + ".weight"].T * 0
        for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
            pt_ln = pt + ln.replace("/", ".")
            names[tf + ln + "/gamma"] = state[pt_ln + ".weight"]
            names[tf + ln + "/beta"] = state[pt_ln + ".bias"]
    return names


def test_google_tf_variables_map_onto_the_model(pretraining_model):
    variables = google_tf_variables(pretraining_model)
    state_dict = tf_state_dict(sorted(variables), variables.__getitem__, "fake.ckpt")
    fresh = BertForPreTraining(pretraining_model.config)
    report = load_state_dict_into(fresh, state_dict, "fake.ckpt", strict=True)
    assert report.missing == [] and report.unexpected == []
    outputs_equal(fresh, pretraining_model)
    assert tf_variable_to_key("cls/squad/output_weights") == "qa_outputs.weight"
    assert tf_variable_to_key("output_bias") == "classifier.bias"
    assert tf_variable_to_key("bert/encoder/layer_0/output/dense/kernel/adam_v") is None


def test_tf_checkpoint_without_tensorflow_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "bert_model.ckpt.index").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(CheckpointError, match=r"needs TensorFlow \(pip install tensorflow-cpu\)"):
        read_weights(tmp_path / "bert_model.ckpt")


# ----------------------------------------------------------------------------- NVIDIA layouts


def test_nvidia_checkpoint_layouts_load(tmp_path, pretraining_model):
    """NGC `{'model': ...}` with DDP prefixes and fp16 weights, and a bare state_dict."""
    fp16_state = {
        "module." + k: v.half() for k, v in pretraining_model.state_dict().items()
    }  # NGC files carry both the embedding and the tied decoder name
    assert "module.cls.predictions.decoder.weight" in fp16_state
    torch.save({"model": fp16_state, "epoch": 2}, tmp_path / "ngc.pt")
    torch.save(pretraining_model.state_dict(), tmp_path / "bare.pt")
    qa = BertForQuestionAnswering(pretraining_model.config)
    report = load_model_weights(qa, tmp_path / "ngc.pt")
    assert report.missing == ["qa_outputs.bias", "qa_outputs.weight"]
    assert all(key.startswith("cls.") for key in report.unexpected)
    expected = pretraining_model.state_dict()["bert.encoder.layer.1.output.dense.weight"].half()
    assert torch.equal(
        qa.state_dict()["bert.encoder.layer.1.output.dense.weight"], expected.float()
    )
    same = BertForPreTraining(pretraining_model.config)
    load_model_weights(same, tmp_path / "bare.pt", strict=True)
    outputs_equal(same, pretraining_model)
    encoder = BertModel(pretraining_model.config)  # a bare BertModel takes the bert.* weights
    assert load_model_weights(encoder, tmp_path / "bare.pt").missing == []


def test_nvidia_2111_checkpoint_with_pickled_data_loader(tmp_path, pretraining_model, caplog):
    """21.11 checkpoints pickle the DataLoader of a class that is not importable here."""
    module = types.ModuleType("nvidia_run_pretraining")

    class pretraining_dataset(torch.utils.data.Dataset):  # NVIDIA's class name
        def __init__(self):
            self.inputs = [torch.zeros(4, 8).numpy()]

        def __len__(self):
            return 4

    pretraining_dataset.__module__ = module.__name__
    pretraining_dataset.__qualname__ = "pretraining_dataset"
    module.pretraining_dataset = pretraining_dataset
    sys.modules[module.__name__] = module
    try:
        loader = torch.utils.data.DataLoader(pretraining_dataset(), batch_size=2)
        payload = {
            "model": pretraining_model.state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 6e-3, "step": 10, "params": []}]},
            "files": [3, "a_training_0.hdf5", "a_training_1.hdf5"],
            "epoch": 1,
            "data_loader": loader,
        }
        torch.save(payload, tmp_path / "ckpt_10.pt")
    finally:
        del sys.modules[module.__name__]
    model = BertForPreTraining(pretraining_model.config)
    load_model_weights(model, tmp_path / "ckpt_10.pt", strict=True)
    outputs_equal(model, pretraining_model)
    assert "nvidia_run_pretraining.pretraining_dataset" in caplog.text


def test_our_checkpoint_carries_its_config(tmp_path, pretraining_model):
    config = pretraining_model.config.replace(hidden_act="gelu")
    save_nvidia_checkpoint(tmp_path / "ours.pt", pretraining_model.state_dict(), config)
    weights = read_weights(tmp_path / "ours.pt")
    assert weights.config == config and weights.format == "nvidia"
    raw = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert raw["model"]["cls.predictions.decoder.weight"].shape == (30528, 128)


# ----------------------------------------------------------------------------- vocab padding


def test_vocab_padding_both_ways_keeps_predictions(pretraining_model):
    unpadded_config = pretraining_model.config.replace(vocab_pad_multiple=1)
    unpadded = BertForPreTraining(unpadded_config)
    report = load_state_dict_into(unpadded, pretraining_model.state_dict(), "padded", strict=True)
    assert report.vocab_resized == (30528, 30522)
    repadded = BertForPreTraining(pretraining_model.config)
    report = load_state_dict_into(repadded, unpadded.state_dict(), "unpadded", strict=True)
    assert report.vocab_resized == (30522, 30528)
    state = repadded.state_dict()
    assert torch.all(state["cls.predictions.bias"][30522:] == -10000.0)
    assert torch.all(state["bert.embeddings.word_embeddings.weight"][30522:] == 0)
    batch = random_batch()
    labels = torch.full_like(batch[0], -1)
    labels[:, 2] = batch[0][:, 2]
    nsp = torch.tensor([1, 0, 0])
    with torch.no_grad():
        loss_unpadded = unpadded.eval()(*batch, labels, nsp)[0]
        loss_repadded = repadded.eval()(*batch, labels, nsp)[0]
    torch.testing.assert_close(loss_repadded, loss_unpadded, rtol=0, atol=1e-6)


def test_real_vocab_mismatch_is_refused(pretraining_model):
    cased = BertForPreTraining(pretraining_model.config.replace(vocab_size=28996))
    with pytest.raises(CheckpointError) as info:
        load_state_dict_into(cased, pretraining_model.state_dict(), "uncased.pt")
    message = str(info.value)
    assert "uncased.pt" in message and "bert.embeddings.word_embeddings.weight" in message
    assert "[30528, 128]" in message and "[29000, 128]" in message


# ----------------------------------------------------------------------------- Hugging Face


def test_hf_folder_round_trip_is_identical(tmp_path, minilm_dir):
    """HF folder -> our checkpoint -> HF folder gives identical tensors."""
    from safetensors.torch import load_file

    assert (
        convert_checkpoint.main(["--input", str(minilm_dir), "--output", str(tmp_path / "m.pt")])
        == 0
    )
    assert (
        convert_checkpoint.main(
            [
                "--input",
                str(tmp_path / "m.pt"),
                "--output",
                str(tmp_path / "hf"),
                "--vocab_file",
                str(minilm_dir / "vocab.txt"),
            ]
        )
        == 0
    )
    original = load_file(str(minilm_dir / "model.safetensors"))
    exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
    position_ids = original.pop("embeddings.position_ids")  # a buffer, not a weight
    assert torch.equal(position_ids.view(-1), torch.arange(512))
    assert sorted(exported) == sorted(original)
    for key, tensor in original.items():
        assert torch.equal(exported[key], tensor), key
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["vocab_size"] == 30522 and config["architectures"] == ["BertModel"]
    ours = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ours["model"]["bert.embeddings.word_embeddings.weight"].shape[0] == 30528


@pytest.mark.parametrize("architecture", ["BertForPreTraining", "BertForQuestionAnswering"])
def test_hf_export_loads_in_transformers_with_identical_outputs(
    transformers, tmp_path, architecture
):
    torch.manual_seed(2)
    config = tiny_config()
    ours = (
        BertForPreTraining(config)
        if architecture == "BertForPreTraining"
        else BertForQuestionAnswering(config)
    )
    ours.eval()
    save_hf_folder(tmp_path / "hf", ours.state_dict(), config, vocab_file=UNCASED_VOCAB)
    hf_class = getattr(transformers, architecture)
    hf, info = hf_class.from_pretrained(
        tmp_path / "hf", output_loading_info=True, attn_implementation="sdpa"
    )
    hf.eval()
    assert info["missing_keys"] == set() or info["missing_keys"] == []
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    input_ids, token_type_ids, attention_mask = random_batch()
    with torch.no_grad():
        mine = ours(input_ids, token_type_ids, attention_mask)
        theirs = hf(
            input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask
        )
    real = attention_mask.bool()
    if architecture == "BertForPreTraining":
        scores, nsp = mine
        assert (scores[..., :30522] - theirs.prediction_logits)[real].abs().max() < 1e-5
        assert (nsp - theirs.seq_relationship_logits).abs().max() < 1e-5
    else:
        assert (mine[0] - theirs.start_logits)[real].abs().max() < 1e-5
        assert (mine[1] - theirs.end_logits)[real].abs().max() < 1e-5
    tokenizer = transformers.BertTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer.tokenize("Hello World") == ["hello", "world"]


# ----------------------------------------------------------------------------- bad input


def test_missing_truncated_and_garbage_files(tmp_path, pretraining_model):
    model = BertForPreTraining(pretraining_model.config)
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nope\.pt"):
        load_model_weights(model, tmp_path / "nope.pt")
    atomic_torch_save({"model": pretraining_model.state_dict()}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint" * 10)
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("truncated.pt", "garbage.pt", "empty.pt"):
        with pytest.raises(CheckpointError, match=f"{name}: not a readable PyTorch checkpoint"):
            load_model_weights(model, tmp_path / name)
    torch.save({"model": {"step": 3}}, tmp_path / "no_tensors.pt")
    with pytest.raises(CheckpointError, match="'step' is a int, not a tensor"):
        load_model_weights(model, tmp_path / "no_tensors.pt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match="folder holds no Hugging Face model"):
        load_model_weights(model, tmp_path / "folder")


def test_other_architecture_or_size_is_refused(tmp_path, pretraining_model):
    gpt_like = {"transformer.h.0.attn.c_attn.weight": torch.zeros(4, 4)}
    torch.save(gpt_like, tmp_path / "gpt.pt")
    with pytest.raises(CheckpointError, match=r"gpt\.pt: no BERT encoder weights found"):
        load_model_weights(BertModel(tiny_config()), tmp_path / "gpt.pt")

    torch.save(pretraining_model.state_dict(), tmp_path / "two_layers.pt")
    deeper = BertForPreTraining(tiny_config(num_hidden_layers=3))
    with pytest.raises(CheckpointError, match=r"two_layers\.pt: 16 encoder weights missing"):
        load_model_weights(deeper, tmp_path / "two_layers.pt")
    shallower = BertForPreTraining(tiny_config(num_hidden_layers=1))
    with pytest.raises(CheckpointError, match="16 encoder weights this model has no place for"):
        load_model_weights(shallower, tmp_path / "two_layers.pt")
    wider = BertForPreTraining(tiny_config(hidden_size=256))
    with pytest.raises(
        CheckpointError, match=r"two_layers.pt: bert.embeddings.LayerNorm.bias has shape \[128\]"
    ):
        load_model_weights(wider, tmp_path / "two_layers.pt")
    qa = BertForQuestionAnswering(tiny_config())
    with pytest.raises(CheckpointError, match=r"strict loading failed: missing qa_outputs\.bias"):
        load_model_weights(qa, tmp_path / "two_layers.pt", strict=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_wherever_weights_load(
    tmp_path, pretraining_model, bad, capsys
):
    state = {k: v.clone() for k, v in pretraining_model.state_dict().items()}
    state["bert.encoder.layer.1.output.dense.weight"][3, 4] = bad  # the first one in key order
    state["cls.seq_relationship.bias"] = state["cls.seq_relationship.bias"].half()
    state["cls.seq_relationship.bias"][0] = bad
    atomic_torch_save({"model": state}, tmp_path / "diverged.pt")
    first = r"diverged\.pt: bert\.encoder\.layer\.1\.output\.dense\.weight holds 1 non-finite"
    for model in (BertForPreTraining(tiny_config()), BertForQuestionAnswering(tiny_config())):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(CheckpointError, match=first):
            load_model_weights(model, tmp_path / "diverged.pt")
        with pytest.raises(CheckpointError, match="diverged run"):
            load_state_dict_into(model, state, str(tmp_path / "diverged.pt"))
        after = model.state_dict()  # refused before anything was loaded
        assert all(torch.equal(before[k], after[k]) for k in before)
    save_hf_folder(tmp_path / "hf", state, tiny_config())  # exporting is not loading
    with pytest.raises(CheckpointError, match="non-finite"):
        load_model_weights(BertModel(tiny_config()), tmp_path / "hf")
    assert (
        convert_checkpoint.main(
            [
                "--input",
                str(tmp_path / "diverged.pt"),
                "--output",
                str(tmp_path / "out.pt"),
                "--config_file",
                str(TINY_CONFIG),
            ]
        )
        == 1
    )
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "layer.1.output.dense.weight holds 1 non-finite" in errors[0]
    assert not (tmp_path / "out.pt").exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "ckpt_1.pt"
    atomic_torch_save({"a": torch.ones(2)}, target)

    def failing_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(WriteError, match=f"cannot write {target}: disk full; what was there"):
        atomic_torch_save({"a": torch.zeros(2)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_1.pt"]  # no temporary file left


# ----------------------------------------------------------------------------- the CLI


def run_cli(capsys, *args: str) -> subprocess.CompletedProcess:
    return run_main("convert_checkpoint", args, capsys)  # in-process: no interpreter start-up


def test_cli_errors_are_one_clear_line(tmp_path, pretraining_model, capsys):
    result = run_cli(
        capsys, "--input", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "o")
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"convert_checkpoint.py: error: --input {tmp_path / 'missing.pt'}: no such file or folder"
    ]
    torch.save({"model": pretraining_model.state_dict()}, tmp_path / "ngc.pt")
    result = run_cli(capsys, "--input", str(tmp_path / "ngc.pt"), "--output", str(tmp_path / "hf"))
    assert result.returncode == 1 and "pass --config_file" in result.stderr
    (tmp_path / "bad.json").write_text("{")
    result = run_cli(
        capsys,
        "--input",
        str(tmp_path / "ngc.pt"),
        "--output",
        str(tmp_path / "hf"),
        "--config_file",
        str(tmp_path / "bad.json"),
    )
    assert result.returncode == 1 and f"{tmp_path / 'bad.json'}: not valid JSON" in result.stderr
    assert not (tmp_path / "hf").exists()  # nothing half-written


def test_cli_nvidia_to_hf_with_config_and_vocab(tmp_path, pretraining_model, capsys):
    torch.save({"model": pretraining_model.state_dict()}, tmp_path / "ckpt_8601.pt")
    result = run_cli(
        capsys,
        "--input",
        str(tmp_path / "ckpt_8601.pt"),
        "--output",
        str(tmp_path / "hf"),
        "--config_file",
        str(TINY_CONFIG),
        "--vocab_file",
        str(UNCASED_VOCAB),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    back = BertForPreTraining(BertConfig.from_json_file(TINY_CONFIG))
    report = load_model_weights(back, tmp_path / "hf", strict=True)
    assert report.vocab_resized == (30522, 30528)  # trimmed on export, padded again on load
    outputs_equal(back, pretraining_model, columns=30522)
    result = run_cli(
        capsys,
        "--input",
        str(tmp_path / "ckpt_8601.pt"),
        "--output",
        str(tmp_path / "hf"),
        "--config_file",
        str(TINY_CONFIG),
    )
    assert result.returncode == 2 and "a folder with files in it" in result.stderr


def test_hf_folder_of_another_model_type_is_refused(tmp_path, minilm_dir):
    import shutil

    folder = tmp_path / "roberta"
    shutil.copytree(minilm_dir, folder)
    values = json.loads((folder / "config.json").read_text()) | {"model_type": "roberta"}
    (folder / "config.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match="model_type is 'roberta', not a BERT checkpoint"):
        read_weights(folder)
    (folder / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        read_weights(folder)


# Wrong content in a valid container: 4 dtypes x 3 containers, and the resume path's
# optimizer state (test_run_pretraining_checkpoints.py).
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_non_floating_weights_are_refused_naming_file_and_key(tmp_path, pretraining_model, dtype):
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in pretraining_model.state_dict().items()}
    key = "bert.encoder.layer.0.attention.self.query.weight"
    state[key] = state[key].to(dtype)
    files = {"state.pt": {"model": state}, "bare.pt": state}
    for name, payload in files.items():
        atomic_torch_save(payload, tmp_path / name)
    if dtype != torch.complex64:  # safetensors has no complex type everywhere
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
        files["w.safetensors"] = None
    for name in files:
        model = BertForPreTraining(tiny_config())
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(CheckpointError) as raised:
            load_model_weights(model, tmp_path / name)
        message = str(raised.value)
        assert name in message and key in message and str(dtype).split(".")[1] in message
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_all_integer_state_dict_is_refused_not_loaded_as_zeros(tmp_path, pretraining_model):
    state = {k: v.long() for k, v in pretraining_model.state_dict().items()}
    atomic_torch_save(state, tmp_path / "ints.pt")
    with pytest.raises(
        CheckpointError, match=r"ints\.pt: bert\.\S+ holds integer values \(torch\.int64\)"
    ):
        load_model_weights(BertForPreTraining(tiny_config()), tmp_path / "ints.pt")


def test_every_entry_script_refuses_integer_init_weights_in_one_line(
    tmp_path, pretraining_model, capsys
):
    """The example of the issue: an int64 state dict through --init_checkpoint used to give a
    model of zeros and ones and exit 0; each script now exits 1 naming the file and key."""
    import inference
    import run_glue
    import run_pretraining
    import run_squad
    from tests.support import write_random_shards

    state = {k: v.long() for k, v in pretraining_model.state_dict().items()}
    bad = tmp_path / "int64.pt"
    save_nvidia_checkpoint(bad, state, pretraining_model.config)
    question = {"id": "q1", "question": "Who?", "answers": [{"text": "Ann", "answer_start": 0}]}
    paragraph = {"context": "Ann sings.", "qas": [question]}
    squad_file = tmp_path / "squad.json"
    squad_file.write_text(json.dumps({"version": "1.1", "data": [{"paragraphs": [paragraph]}]}))
    write_random_shards(tmp_path / "held_out", files=1, rows=8, name="x_test")
    common = [f"--vocab_file={UNCASED_VOCAB}", f"--config_file={TINY_CONFIG}", "--no_cuda"]
    runs = {
        run_squad: [
            *common,
            f"--init_checkpoint={bad}",
            "--do_predict",
            f"--predict_file={squad_file}",
            f"--output_dir={tmp_path / 'squad'}",
            f"--json-summary={tmp_path / 'squad.log'}",
            "--skip_cache",
        ],
        run_glue: [
            *common,
            f"--init_checkpoint={bad}",
            "--task_name=mrpc",
            "--do_eval",
            f"--data_dir={REPO_ROOT / 'data' / 'sample' / 'glue' / 'MRPC'}",
            f"--output_dir={tmp_path / 'glue'}",
            f"--json-summary={tmp_path / 'glue.log'}",
        ],
        run_pretraining: [
            *common,
            "--do_eval",
            f"--init_checkpoint={bad}",
            f"--eval_dir={tmp_path / 'held_out'}",
            f"--json-summary={tmp_path / 'pretraining.log'}",
        ],
        inference: [*common, f"--init_checkpoint={bad}"],
    }
    for script, argv in runs.items():
        capsys.readouterr()
        assert script.main(argv) == 1, script.__name__
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if "error:" in line]
        assert f"{bad}: bert.embeddings." in line and "holds integer values (torch.int64)" in line
        assert "Traceback" not in err
    assert not (tmp_path / "squad" / "predictions.json").exists()
    assert not (tmp_path / "glue" / "results.txt").exists()
