"""modeling.py against independent references: Hugging Face `transformers` with real weights
(all-MiniLM-L6-v2), float64 re-computation, hand-built cases, and the parameter counts of
NVIDIA's large and base models (vocabulary padded to 30528)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import modeling
from checkpoint import load_state_dict_into
from modeling import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
    ConfigError,
)
from tests.support import REPO_ROOT, TINY_CONFIG, random_batch, tiny_config

SENTENCES = [
    "Super Bowl 50 was an American football game to determine the champion of the National "
    "Football League (NFL) for the 2015 season.",
    "Which NFL team represented the AFC at Super Bowl 50?",
    "Hi!",
    "The Broncos defeated the Carolina Panthers 24-10 to earn their third Super Bowl title.",
]


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("base", (109_486_848, 110_111_042, 109_488_386)),
        ("large", (335_148_032, 336_232_258, 335_150_082)),
    ],
)
def test_parameter_counts_match_nvidia(name, counts):
    config = BertConfig.from_json_file(REPO_ROOT / "bert_configs" / f"{name}.json")
    assert config.vocab_size == 30522 and config.padded_vocab_size == 30528
    with torch.device("meta"):
        models = (BertModel(config), BertForPreTraining(config), BertForQuestionAnswering(config))
    assert tuple(sum(p.numel() for p in m.parameters()) for m in models) == counts


def test_config_json_round_trip(tmp_path):
    config = tiny_config(hidden_act="relu", vocab_pad_multiple=64)
    config.to_json_file(tmp_path / "c.json")
    assert BertConfig.from_json_file(tmp_path / "c.json") == config
    assert config.padded_vocab_size == 30528  # 30522 rounded up to 64


def test_config_reads_hugging_face_config(minilm_dir):
    config = BertConfig.from_json_file(minilm_dir / "config.json")
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (384, 6, 30522)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "expected a JSON object"),
        ('{"hidden_size": 8}', "missing required field(s): vocab_size"),
    ],
)
def test_config_file_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad_config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        BertConfig.from_json_file(path)
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_size": "128"}, "'hidden_size' must be a positive integer"),
        ({"hidden_size": 129}, "not divisible by num_attention_heads"),
        ({"num_hidden_layers": 0}, "'num_hidden_layers' must be a positive integer"),
        ({"hidden_act": "mish"}, "unsupported hidden_act 'mish'"),
        ({"hidden_dropout_prob": 1.5}, "'hidden_dropout_prob' must be a number in [0, 1)"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"attention_impl": "flash3"}, "attention_impl must be one of"),
        ({"hidden_size": 128.0}, "'hidden_size' must be a positive integer"),
        ({"vocab_size": True}, "'vocab_size' must be a positive integer"),
        ({"max_position_embeddings": 0}, "'max_position_embeddings' must be a positive integer"),
        ({"type_vocab_size": -2}, "'type_vocab_size' must be a positive integer"),
        ({"attention_probs_dropout_prob": float("nan")}, "must be a number in [0, 1)"),
        ({"hidden_dropout_prob": 1.0}, "'hidden_dropout_prob' must be a number in [0, 1)"),
        ({"hidden_dropout_prob": False}, "'hidden_dropout_prob' must be a number in [0, 1)"),
        ({"initializer_range": 0}, "'initializer_range' must be a positive finite number"),
        ({"initializer_range": float("nan")}, "'initializer_range' must be a positive finite"),
        ({"initializer_range": float("inf")}, "'initializer_range' must be a positive finite"),
        ({"layer_norm_eps": "1e-12"}, "'layer_norm_eps' must be a positive finite number"),
        ({"hidden_act": ["gelu"]}, "unsupported hidden_act ['gelu']"),
        ({"hidden_act": None}, "unsupported hidden_act None"),
        ({"output_all_encoded_layers": 1}, "'output_all_encoded_layers' must be true or false"),
    ],
)
def test_config_invalid_fields(tmp_path, change, message):
    values = json.loads(TINY_CONFIG.read_text()) | change
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ConfigError) as info:
        BertConfig.from_json_file(path)
    assert message in str(info.value) and str(path) in str(info.value)


LIMITS = {  # each size's largest accepted value, restated here
    "vocab_size": 4194304,
    "hidden_size": 32768,
    "num_hidden_layers": 1024,
    "num_attention_heads": 1024,
    "intermediate_size": 131072,
    "max_position_embeddings": 65536,
    "type_vocab_size": 1024,
    "vocab_pad_multiple": 1024,
}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_config_sizes_have_a_stated_limit(tmp_path, name):
    path = tmp_path / "config.json"
    tiny = json.loads(TINY_CONFIG.read_text())
    for value in (LIMITS[name] + 1, 10**20):
        path.write_text(json.dumps(tiny | {name: value}))
        with pytest.raises(ConfigError) as info:
            BertConfig.from_json_file(path)
        assert f"'{name}' must be at most {LIMITS[name]}" in str(info.value)
        assert str(path) in str(info.value)
    if name not in ("hidden_size", "num_attention_heads"):  # these two must divide
        BertConfig.from_dict(tiny | {name: LIMITS[name]})  # the limit itself is accepted


def test_config_parameter_count_is_the_model_s_and_bounded(tmp_path):
    config = BertConfig.from_json_file(TINY_CONFIG)
    model = BertForPreTraining(config)
    assert config.parameter_count() == sum(p.numel() for p in model.parameters())
    # each size within its limit, together 142 billion parameters: refused before allocating
    wide = json.loads(TINY_CONFIG.read_text()) | {"hidden_size": 32768, "vocab_size": 4000000}
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(wide))
    with pytest.raises(ConfigError, match=r"parameters, more than the 17,179,869,184 \(2\*\*34"):
        BertConfig.from_json_file(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"vocab_size": 1' + "0" * 5000 + "}",
            "a number of more than 4300 digits, Python's limit",
        ),
        ("[" * 100000 + "]" * 100000, "nested deeper than"),
        ('{"a": ' * 100000 + "1" + "}" * 100000, "nested deeper than"),
    ],
)
def test_config_beyond_the_json_reader_s_limits_is_one_line(tmp_path, text, message):
    path = tmp_path / "hostile.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        BertConfig.from_json_file(path)
    assert str(info.value).startswith(f"{path}: cannot be read as JSON ({message}")


def test_config_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        BertConfig.from_json_file(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="is a folder, expected a model config JSON file"):
        BertConfig.from_json_file(tmp_path)


# ----------------------------------------------------------------------------- structure


def test_initialisation_and_tying():
    torch.manual_seed(0)
    config = tiny_config(hidden_size=256, num_attention_heads=4, intermediate_size=1024)
    model = BertForPreTraining(config)
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.weight is embeddings
    names = [name for name, _ in model.named_parameters()]
    assert "cls.predictions.decoder.weight" not in names  # listed once, as the embedding
    state = model.state_dict()
    assert torch.equal(state["cls.predictions.decoder.weight"], embeddings)  # NGC keeps both
    for name, tensor in state.items():
        if name.endswith("LayerNorm.weight"):
            assert torch.all(tensor == 1), name
        elif name.endswith("bias"):
            assert torch.all(tensor == 0), name
        elif tensor.dim() == 2:  # every Linear and Embedding, dense_act included: N(0, 0.02)
            assert abs(tensor.float().std().item() - 0.02) < 0.002, name
            assert abs(tensor.float().mean().item()) < 0.002, name
    assert "bert.encoder.layer.0.intermediate.dense_act.weight" in state
    assert "bert.pooler.dense_act.weight" in state
    assert "cls.predictions.transform.dense_act.weight" in state


def test_output_all_encoded_layers():
    config = tiny_config(output_all_encoded_layers=True)
    model = BertModel(config).eval()
    layers, pooled = model(*random_batch())
    assert isinstance(layers, list) and len(layers) == config.num_hidden_layers
    assert pooled.shape == (3, config.hidden_size)
    last, _ = model(*random_batch(), output_all_encoded_layers=False)
    assert torch.equal(last, layers[-1])
    heads = BertForQuestionAnswering(config).eval()  # task heads always use the last layer
    assert heads(*random_batch())[0].shape == (3, 24)


def eager_reference(model: BertModel, input_ids, token_type_ids, attention_mask):
    """BERT recomputed in float64 from the weights, by the formulas of the paper."""
    p = {k: v.double() for k, v in model.state_dict().items()}
    config = model.config
    nh, hd = config.num_attention_heads, config.head_size
    positions = torch.arange(input_ids.shape[1])
    x = (
        p["embeddings.word_embeddings.weight"][input_ids]
        + p["embeddings.position_embeddings.weight"][positions]
        + p["embeddings.token_type_embeddings.weight"][token_type_ids]
    )

    def layer_norm(h, prefix):
        mean = h.mean(-1, keepdim=True)
        var = ((h - mean) ** 2).mean(-1, keepdim=True)
        scale, shift = p[prefix + ".weight"], p[prefix + ".bias"]
        return (h - mean) / torch.sqrt(var + config.layer_norm_eps) * scale + shift

    def linear(h, prefix):
        return h @ p[prefix + ".weight"].T + p[prefix + ".bias"]

    x = layer_norm(x, "embeddings.LayerNorm")
    bias = (1.0 - attention_mask.double())[:, None, None, :] * -10000.0
    batch, seq = input_ids.shape
    for i in range(config.num_hidden_layers):
        pre = f"encoder.layer.{i}."

        def heads(h):
            return h.view(batch, seq, nh, hd).transpose(1, 2)

        q, k, v = (heads(linear(x, pre + f"attention.self.{n}")) for n in ("query", "key", "value"))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
        context = (probs @ v).transpose(1, 2).reshape(batch, seq, -1)
        x = layer_norm(
            linear(context, pre + "attention.output.dense") + x, pre + "attention.output.LayerNorm"
        )
        hidden = linear(x, pre + "intermediate.dense_act")
        hidden = 0.5 * hidden * (1.0 + torch.erf(hidden / math.sqrt(2.0)))
        x = layer_norm(linear(hidden, pre + "output.dense") + x, pre + "output.LayerNorm")
    pooled = torch.tanh(linear(x[:, 0], "pooler.dense_act"))
    return x, pooled


@pytest.mark.parametrize("attention_impl", modeling.ATTENTION_IMPLS)
def test_encoder_matches_float64_formulas(attention_impl):
    model = BertModel(tiny_config(attention_impl=attention_impl)).eval()
    batch = random_batch()
    with torch.no_grad():
        sequence_output, pooled_output = model(*batch)
    reference_sequence, reference_pooled = eager_reference(model, *batch)
    assert (sequence_output.double() - reference_sequence).abs().max() < 1e-5
    assert (pooled_output.double() - reference_pooled).abs().max() < 1e-5


def test_sdpa_and_eager_paths_agree_and_padding_is_ignored():
    torch.manual_seed(0)
    sdpa = BertModel(tiny_config()).eval()
    eager = BertModel(tiny_config(attention_impl="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    input_ids, token_type_ids, attention_mask = random_batch()
    with torch.no_grad():
        out_sdpa = sdpa(input_ids, token_type_ids, attention_mask)
        out_eager = eager(input_ids, token_type_ids, attention_mask)
        # Row 1 alone, cut to its real length: padding must not change anything.
        length = int(attention_mask[1].sum())
        alone = sdpa(input_ids[1:2, :length], token_type_ids[1:2, :length])
    for a, b in zip(out_sdpa, out_eager, strict=True):
        assert (a - b).abs().max() < 1e-5
    assert (out_sdpa[0][1, :length] - alone[0][0]).abs().max() < 1e-5
    assert (out_sdpa[1][1] - alone[1][0]).abs().max() < 1e-5


def test_activation_checkpointing_gives_same_gradients():
    config = tiny_config(num_hidden_layers=5)
    batch = random_batch()
    labels = torch.full_like(batch[0], -1)
    labels[:, 3] = batch[0][:, 3]
    nsp = torch.tensor([0, 1, 0])
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = BertForPreTraining(config).train()  # dropout on: masks must be replayed
        model.bert.encoder.checkpoint_activations = checkpointing
        torch.manual_seed(123)
        loss = model(*batch, labels, nsp)[0]
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=0, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------- heads and losses


def test_masked_only_head_equals_dense_head():
    torch.manual_seed(0)
    config = tiny_config()
    dense = BertForPreTraining(config, sequence_output_is_dense=True).eval()
    full = BertForPreTraining(config, sequence_output_is_dense=False).eval()
    full.load_state_dict(dense.state_dict())
    input_ids, token_type_ids, attention_mask = random_batch()
    labels = torch.full_like(input_ids, -1)
    labels[0, [2, 5, 9]] = input_ids[0, [2, 5, 9]]
    labels[2, 1] = 7  # exactly one masked token in this row (HEAD's 0-d index edge case)
    nsp = torch.tensor([1, 0, 1])
    with torch.no_grad():
        sparse_scores, _ = dense(input_ids, token_type_ids, attention_mask, labels)
        full_scores, nsp_scores = full(input_ids, token_type_ids, attention_mask)
        assert sparse_scores.shape == (4, config.padded_vocab_size)
        assert full_scores.shape == (3, 24, config.padded_vocab_size)
        torch.testing.assert_close(sparse_scores, full_scores[labels != -1], rtol=0, atol=1e-5)
        no_sync = dense(input_ids, token_type_ids, attention_mask, labels, num_masked=4)[0]
        torch.testing.assert_close(no_sync, sparse_scores, rtol=0, atol=0)
        loss_dense = dense(input_ids, token_type_ids, attention_mask, labels, nsp)
        loss_full = full(input_ids, token_type_ids, attention_mask, labels, nsp)
        # A fixed row count above M (--compile's static shape): the extra rows do not count.
        loss_static = dense(input_ids, token_type_ids, attention_mask, labels, nsp, num_masked=60)
    for static, exact in zip(loss_static, loss_dense, strict=True):
        torch.testing.assert_close(static, exact, rtol=0, atol=1e-6)
    mlm = F.cross_entropy(
        full_scores.view(-1, full_scores.shape[-1]), labels.view(-1), ignore_index=-1
    )
    expected = mlm + F.cross_entropy(nsp_scores, nsp)
    for total, mlm_loss, nsp_loss in (loss_dense, loss_full):
        torch.testing.assert_close(total, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(mlm_loss + nsp_loss, total)


def test_pretraining_loss_without_masked_tokens_is_finite():
    model = BertForPreTraining(tiny_config()).eval()
    input_ids, token_type_ids, attention_mask = random_batch()
    labels = torch.full_like(input_ids, -1)
    for dense in (True, False):
        model.sequence_output_is_dense = dense
        total, mlm, _ = model(
            input_ids, token_type_ids, attention_mask, labels, torch.zeros(3, dtype=torch.long)
        )
        assert mlm.item() == 0.0
        with torch.no_grad():  # the total is then the next-sentence loss alone
            _, nsp_scores = model(input_ids, token_type_ids, attention_mask)
        expected = F.cross_entropy(nsp_scores, torch.zeros(3, dtype=torch.long))
        torch.testing.assert_close(total, expected, rtol=1e-6, atol=1e-6)


def test_question_answering_loss_is_nvidias():
    model = BertForQuestionAnswering(tiny_config()).eval()
    batch = random_batch()
    start = torch.tensor([3, 0, 500])  # 500 is outside the sequence: clamped to S and ignored
    end = torch.tensor([5, 0, 600])
    with torch.no_grad():
        loss, start_logits, end_logits = model(*batch, start_positions=start, end_positions=end)
    assert start_logits.shape == end_logits.shape == (3, 24)
    padding = batch[2] == 0  # padded positions never compete for the answer
    start_masked = start_logits.masked_fill(padding, -10000.0)
    end_masked = end_logits.masked_fill(padding, -10000.0)
    expected = (
        F.cross_entropy(start_masked[:2], start[:2]) + F.cross_entropy(end_masked[:2], end[:2])
    ) / 2
    torch.testing.assert_close(loss, expected)
    with torch.no_grad():  # trimmed to the longest real sequence: the same loss
        width = int(batch[2].sum(1).max())
        trimmed = model(*(t[:, :width] for t in batch), start_positions=start, end_positions=end)
    torch.testing.assert_close(trimmed[0], loss, rtol=0, atol=1e-6)


def test_sequence_classification_and_regression():
    batch = random_batch()
    classifier = BertForSequenceClassification(tiny_config(), 3).eval()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        logits = classifier(*batch)
        loss, logits_with_loss = classifier(*batch, labels=labels)
    assert logits.shape == (3, 3)
    torch.testing.assert_close(logits_with_loss, logits)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    regressor = BertForSequenceClassification(tiny_config(), 1).eval()
    targets = torch.tensor([0.5, 4.2, 3.0])
    with torch.no_grad():
        loss, scores = regressor(*batch, labels=targets)
    assert scores.shape == (3, 1)
    torch.testing.assert_close(loss, ((scores.view(-1) - targets) ** 2).mean())
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification(tiny_config(), 0)


def test_bf16_autocast_forward_backward_on_cpu_tracks_fp32():
    """The same weights and batch under bf16 autocast and in fp32: the loss within 1% and the
    gradients within 2% overall and 5% per tensor (bf16 keeps 8 bits of mantissa, 0.4%); a
    tensor whose fp32 gradient is almost zero (the key biases, which softmax ignores) is left
    out of the per-tensor check."""
    model = BertForPreTraining(tiny_config()).eval()  # no dropout: both runs see one network
    batch = random_batch()
    labels = torch.full_like(batch[0], -1)
    labels[:, 4] = 11
    labels[:, 9] = 500

    def loss_and_gradients(bf16: bool):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            total, _, _ = model(*batch, labels, torch.tensor([0, 1, 1]))
        total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return total.detach().float(), grads

    (loss32, grads32), (loss16, grads16) = loss_and_gradients(False), loss_and_gradients(True)
    assert float(loss16) == pytest.approx(float(loss32), rel=1e-2)
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([grads16[n].float().flatten() for n in grads32])
    overall = float((flat16 - flat32).norm() / flat32.norm())
    assert 0 < overall < 2e-2, overall  # not 0: autocast did compute in bf16
    largest = max(float(g.norm()) for g in grads32.values())
    for name, grad in grads32.items():
        if float(grad.norm()) > 1e-4 * largest:
            error = float((grads16[name].float() - grad).norm() / grad.norm())
            assert error < 5e-2, (name, error)


# ----------------------------------------------------------------------------- HF parity


@pytest.fixture(scope="module")
def hf_batch(transformers, minilm_dir):
    tokenizer = transformers.BertTokenizer(str(minilm_dir / "vocab.txt"), do_lower_case=True)
    pairs = [(SENTENCES[1], SENTENCES[0]), (SENTENCES[2], None), (SENTENCES[3], SENTENCES[2])]
    encoded = tokenizer(
        [a for a, _ in pairs], [b or "" for _, b in pairs], padding=True, return_tensors="pt"
    )
    lengths = encoded["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == 3  # a real padded batch of mixed lengths
    return encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"]


def hf_model(cls, minilm_dir, seed=0, **kwargs):
    torch.manual_seed(seed)  # the heads that MiniLM lacks are initialised randomly
    return cls.from_pretrained(minilm_dir, attn_implementation="sdpa", **kwargs).eval()


@pytest.mark.parametrize("attention_impl", modeling.ATTENTION_IMPLS)
@pytest.mark.parametrize("vocab_pad_multiple", [1, 8])
def test_encoder_parity_with_hugging_face(
    transformers, minilm_dir, hf_batch, attention_impl, vocab_pad_multiple
):
    config = BertConfig.from_json_file(minilm_dir / "config.json").replace(
        attention_impl=attention_impl, vocab_pad_multiple=vocab_pad_multiple
    )
    ours = BertModel(config).eval()
    reference = hf_model(transformers.BertModel, minilm_dir)
    load_state_dict_into(ours, reference.state_dict(), "hf")
    input_ids, token_type_ids, attention_mask = hf_batch
    with torch.no_grad():
        sequence_output, pooled_output = ours(input_ids, token_type_ids, attention_mask)
        expected = reference(
            input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask
        )
    real = attention_mask.bool()
    assert (sequence_output - expected.last_hidden_state)[real].abs().max() <= 1e-5
    assert (pooled_output - expected.pooler_output).abs().max() <= 1e-5


def test_question_answering_and_classification_parity(transformers, minilm_dir, hf_batch):
    config = BertConfig.from_json_file(minilm_dir / "config.json")
    input_ids, token_type_ids, attention_mask = hf_batch
    inputs = dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
    hf_qa = hf_model(transformers.BertForQuestionAnswering, minilm_dir)
    qa = BertForQuestionAnswering(config).eval()
    report = load_state_dict_into(qa, hf_qa.state_dict(), "hf")  # head copied by the key map
    assert report.missing == ["bert.pooler.dense_act.bias", "bert.pooler.dense_act.weight"]
    assert report.unexpected == []  # transformers' QA model has no pooler; QA never uses it
    hf_cls = hf_model(transformers.BertForSequenceClassification, minilm_dir, num_labels=3)
    classifier = BertForSequenceClassification(config, 3).eval()
    load_state_dict_into(classifier, hf_cls.state_dict(), "hf", strict=True)
    with torch.no_grad():
        start, end = qa(input_ids, token_type_ids, attention_mask)
        expected = hf_qa(**inputs)
        logits = classifier(input_ids, token_type_ids, attention_mask)
        expected_logits = hf_cls(**inputs).logits
    real = attention_mask.bool()
    assert (start - expected.start_logits)[real].abs().max() <= 1e-5
    assert (end - expected.end_logits)[real].abs().max() <= 1e-5
    assert (logits - expected_logits).abs().max() <= 1e-5


@pytest.mark.parametrize("dense", [True, False])
def test_pretraining_loss_parity(transformers, minilm_dir, hf_batch, dense):
    config = BertConfig.from_json_file(minilm_dir / "config.json")
    reference = hf_model(transformers.BertForPreTraining, minilm_dir)
    ours = BertForPreTraining(config, sequence_output_is_dense=dense).eval()
    report = load_state_dict_into(ours, reference.state_dict(), "hf", strict=True)
    assert report.vocab_resized == (30522, 30528)  # padded rows must not change the loss
    input_ids, token_type_ids, attention_mask = hf_batch
    generator = torch.Generator().manual_seed(3)
    chosen = (torch.rand(input_ids.shape, generator=generator) < 0.3) & attention_mask.bool()
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -1))
    nsp = torch.tensor([0, 1, 0])
    with torch.no_grad():
        total, mlm, nsp_loss = ours(input_ids, token_type_ids, attention_mask, labels, nsp)
        expected = reference(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            labels=labels.masked_fill(labels == -1, -100),
            next_sentence_label=nsp,
        )
    assert abs(total.item() - expected.loss.item()) <= 1e-5
    hf_mlm = F.cross_entropy(expected.prediction_logits[chosen], input_ids[chosen])
    hf_nsp = F.cross_entropy(expected.seq_relationship_logits, nsp)
    assert abs(mlm.item() - hf_mlm.item()) <= 1e-5 and abs(nsp_loss.item() - hf_nsp.item()) <= 1e-5
    assert mlm.item() > 1.0  # a real loss, not a degenerate zero
