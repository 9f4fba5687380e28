"""BERT model: `BertConfig`, the encoder blocks in reading order, and the task heads.

This module owns the mathematics of BERT and nothing else: no file I/O besides the config JSON,
no training loop, no precision or parallelism wrappers (those are applied from outside by the
entry scripts). Parameter names are NVIDIA's (`dense_act`, ...), so an NGC `ckpt_*.pt` loads
unchanged; `checkpoint.py` maps Hugging Face and Google names onto them. The README lists how
it differs from NVIDIA's `modeling.py`. Shapes use B (batch), S (sequence), H (hidden), nh
(heads), hd (head size), V (padded vocab), M (number of masked positions in a batch).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from errors import BertError
from fileio import JsonError, atomic_write_text, check_regular_file, parse_json

logger = logging.getLogger(__name__)

#: Additive attention bias for padded keys. NVIDIA's value: finite in fp16 and bf16, so a row
#: with every key padded gets uniform weights instead of NaN.
MASKED_ATTENTION_BIAS = -10000.0

#: Bias given to the rows added by vocabulary padding when a checkpoint is padded on load, so the
#: padded model predicts exactly like the unpadded one (exp(-10000) is 0 in every float format).
PADDED_VOCAB_BIAS = -10000.0

ACT2FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact erf form, as Google and NVIDIA 21.11 train with
    "bias_gelu": F.gelu,  # NVIDIA 21.11 name for the same function
    "gelu_new": functools.partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
    "bias_tanh": torch.tanh,
    "swish": F.silu,
    "silu": F.silu,
}

ATTENTION_IMPLS = ("sdpa", "eager")

#: Upper bounds of a config's sizes: each well above any published BERT (large: 30522 tokens,
#: 1024 wide, 24 layers of 16 heads, 4096 FFN, 512 positions, 2 types), and low enough that a
#: typo cannot ask for terabytes before anything is allocated.
CONFIG_LIMITS = {
    "vocab_size": 2**22,
    "hidden_size": 2**15,
    "num_hidden_layers": 2**10,
    "num_attention_heads": 2**10,
    "intermediate_size": 2**17,
    "max_position_embeddings": 2**16,
    "type_vocab_size": 2**10,
    "vocab_pad_multiple": 2**10,
}
#: The most parameters a config may describe: 2**34 (17 billion, 64 GiB in fp32), fifty times
#: BERT-large; the sizes within their own limits can still multiply to terabytes.
MAX_PARAMETERS = 2**34


class ConfigError(BertError, ValueError):
    """An invalid or inconsistent model configuration (the message names the file and field)."""


def _is_number(value: Any) -> bool:
    """An int or float from JSON; true/false are not numbers here (Python counts bools as ints)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= `value`."""
    return ((value + multiple - 1) // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Model hyper-parameters in Google's JSON layout (`bert_config.json`), plus two options.

    `vocab_size` is the tokenizer's vocabulary; the embedding and decoder matrices have
    `padded_vocab_size` rows (rounded up to `vocab_pad_multiple`, 8 as NVIDIA pads for Tensor
    Cores). `attention_impl` picks the attention kernel once, at construction.
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    output_all_encoded_layers: bool = False
    vocab_pad_multiple: int = 8
    attention_impl: str = "sdpa"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def padded_vocab_size(self) -> int:
        return round_up(self.vocab_size, self.vocab_pad_multiple)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def parameter_count(self) -> int:
        """Parameters of the pre-training model (embeddings, encoder, pooler, heads; the
        decoder's matrix is the word embeddings), from the sizes alone: nothing is allocated."""
        hidden, inner = self.hidden_size, self.intermediate_size
        rows = self.padded_vocab_size + self.max_position_embeddings + self.type_vocab_size
        layer = 4 * (hidden * hidden + hidden) + 2 * hidden * inner + inner + 5 * hidden
        heads = (
            2 * (hidden * hidden + hidden) + 2 * hidden + self.padded_vocab_size + 2 * hidden + 2
        )
        return rows * hidden + 2 * hidden + self.num_hidden_layers * layer + heads

    def validate(self) -> None:
        """Raise `ConfigError` naming the field for any invalid or inconsistent value."""
        positive_ints = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "vocab_pad_multiple",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"'{name}' must be a positive integer, got {value!r}")
            limit = CONFIG_LIMITS[name]
            if value > limit:
                raise ConfigError(
                    f"'{name}' must be at most {limit} (2**{limit.bit_length() - 1}), got "
                    f"{value if value < 10**24 else f'a {len(str(value))}-digit number'}"
                )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise ConfigError(f"'{name}' must be a number in [0, 1), got {value!r}")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value < math.inf:
                raise ConfigError(f"'{name}' must be a positive finite number, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.parameter_count() > MAX_PARAMETERS:
            raise ConfigError(
                f"the sizes describe {self.parameter_count():,} parameters, more than the "
                f"{MAX_PARAMETERS:,} (2**34, 64 GiB in fp32) this implementation allows"
            )
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACT2FN:
            raise ConfigError(
                f"unsupported hidden_act {self.hidden_act!r} "
                f"(supported: {', '.join(sorted(ACT2FN))})"
            )
        if not isinstance(self.attention_impl, str) or self.attention_impl not in ATTENTION_IMPLS:
            raise ConfigError(
                f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}"
            )
        if not isinstance(self.output_all_encoded_layers, bool):
            raise ConfigError("'output_all_encoded_layers' must be true or false")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> BertConfig:
        """Build from a Google, NVIDIA or Hugging Face config dict; other keys are ignored.

        Hugging Face options that change the architecture into something this model is not
        (relative positions, decoder, cross-attention) are refused rather than ignored.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(values).__name__}")
        unsupported = {
            "position_embedding_type": lambda v: v not in (None, "absolute"),
            "is_decoder": bool,
            "add_cross_attention": bool,
        }
        for key, is_unsupported in unsupported.items():
            if is_unsupported(values.get(key)):
                raise ConfigError(f"{source}: {key}={values[key]!r} is not supported by this BERT")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [
            name
            for name, field in fields.items()
            if field.default is dataclasses.MISSING and name not in values
        ]
        if missing:
            raise ConfigError(f"{source}: missing required field(s): {', '.join(missing)}")
        kwargs = {name: values[name] for name in fields if name in values}
        try:
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        """Read a config JSON file; one clear `ConfigError` (or FileNotFoundError) if it is bad."""
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, expected a model config JSON file")
        check_regular_file(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not a UTF-8 text file ({err.reason})") from None
        try:
            values = parse_json(text, str(path))
        except JsonError as err:
            raise ConfigError(str(err)) from None
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically (a crash leaves no half-written file)."""
        atomic_write_text(path, self.to_json_string())

    def replace(self, **changes: Any) -> BertConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # [S]
        embeddings = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )  # [B, S, H]
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention over the whole sequence.

    `attention_impl` "sdpa" calls `F.scaled_dot_product_attention` (flash / memory-efficient
    kernels where they apply); "eager" is the explicit softmax(QK^T / sqrt(hd) + bias) V of the
    paper, kept as the reference path and for debugging.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob
        self.use_sdpa = config.attention_impl == "sdpa"

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_size).transpose(1, 2)  # [B, nh, S, hd]

    def forward(
        self, hidden_states: torch.Tensor, attention_bias: torch.Tensor | None
    ) -> torch.Tensor:
        """hidden_states [B, S, H]; attention_bias [B, 1, 1, S] additive, or None (no padding)."""
        query = self._split_heads(self.query(hidden_states))
        key = self._split_heads(self.key(hidden_states))
        value = self._split_heads(self.value(hidden_states))
        dropout_prob = self.dropout_prob if self.training else 0.0
        if self.use_sdpa:
            if attention_bias is not None:
                attention_bias = attention_bias.to(query.dtype)
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_bias, dropout_p=dropout_prob
            )  # [B, nh, S, hd]
        else:
            scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_size)  # [B, nh, S, S]
            if attention_bias is not None:
                scores = scores + attention_bias.to(scores.dtype)
            probs = F.dropout(scores.softmax(dim=-1), p=dropout_prob, training=self.training)
            context = probs @ value  # [B, nh, S, hd]
        batch, _, seq, _ = context.shape
        return context.transpose(1, 2).reshape(batch, seq, -1)  # [B, S, H]


class BertOutput(nn.Module):
    """Projection back to H, dropout, residual add and LayerNorm (post-LN).

    Closes both sub-blocks of a layer: after attention (`attention.output`, in_features H) and
    after the feed-forward expansion (`output`, in_features I).
    """

    def __init__(self, config: BertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertOutput(config, config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, attention_bias: torch.Tensor | None
    ) -> torch.Tensor:
        return self.output(self.self(hidden_states, attention_bias), hidden_states)


class LinearActivation(nn.Linear):
    """A Linear layer followed by an activation.

    It exists for checkpoint compatibility: NVIDIA names these modules `dense_act` (Google and
    Hugging Face say `dense`), so the parameters are `...dense_act.weight` / `.bias`.
    """

    def __init__(self, in_features: int, out_features: int, act: str) -> None:
        super().__init__(in_features, out_features)
        self.act_fn = ACT2FN[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_fn(super().forward(x))


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense_act = LinearActivation(
            config.hidden_size, config.intermediate_size, config.hidden_act
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense_act(hidden_states)  # [B, S, I]


class BertLayer(nn.Module):
    """One Transformer block: attention, add & norm; feed-forward, add & norm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config, config.intermediate_size)

    def forward(
        self, hidden_states: torch.Tensor, attention_bias: torch.Tensor | None
    ) -> torch.Tensor:
        attention_output = self.attention(hidden_states, attention_bias)
        return self.output(self.intermediate(attention_output), attention_output)


class BertEncoder(nn.Module):
    """The stack of layers.

    With `checkpoint_activations` set (by the training utilities, not by the model), the layers
    run in chunks of ceil(sqrt(L)) under `torch.utils.checkpoint`, as NVIDIA's 21.11 does, and
    are recomputed in backward; dropout masks are replayed, so gradients are unchanged.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.checkpoint_activations = False

    def _run_layers(
        self, start: int, end: int, hidden_states: torch.Tensor, attention_bias: torch.Tensor | None
    ) -> torch.Tensor:
        for layer in self.layer[start:end]:
            hidden_states = layer(hidden_states, attention_bias)
        return hidden_states

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor | None,
        output_all_encoded_layers: bool = False,
    ) -> list[torch.Tensor]:
        """Return the output of every layer (all_encoded) or only of the last one, as a list."""
        num_layers = len(self.layer)
        chunk = 1
        use_checkpoint = self.checkpoint_activations and torch.is_grad_enabled()
        if use_checkpoint and not output_all_encoded_layers:
            chunk = math.ceil(math.sqrt(num_layers))
        encoded = []
        for start in range(0, num_layers, chunk):
            end = min(start + chunk, num_layers)
            if use_checkpoint:
                hidden_states = checkpoint(
                    self._run_layers,
                    start,
                    end,
                    hidden_states,
                    attention_bias,
                    use_reentrant=False,
                )
            else:
                hidden_states = self._run_layers(start, end, hidden_states, attention_bias)
            if output_all_encoded_layers:
                encoded.append(hidden_states)
        return encoded if output_all_encoded_layers else [hidden_states]


class BertPooler(nn.Module):
    """The [CLS] token through a dense layer with tanh."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense_act = LinearActivation(config.hidden_size, config.hidden_size, "tanh")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense_act(hidden_states[:, 0])  # [B, H]


def init_bert_weights(module: nn.Module, initializer_range: float = 0.02) -> None:
    """Google/NVIDIA initialisation: N(0, 0.02) weights, zero biases, LayerNorm (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=initializer_range)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def attention_bias_from_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0/1 attention_mask [B, S] -> additive attention_bias [B, 1, 1, S] (0 or -10000)."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * MASKED_ATTENTION_BIAS


class BertModel(nn.Module):
    """The BERT encoder: embeddings, L Transformer layers and the pooler."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        logger.debug("BertModel: attention_impl=%s", config.attention_impl)
        self.apply(functools.partial(init_bert_weights, initializer_range=config.initializer_range))

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_all_encoded_layers: bool | None = None,
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        """Encode a batch.

        Args:
            input_ids: [B, S] token ids.
            token_type_ids: [B, S] segment ids (0 for sentence A, 1 for B); zeros when None.
            attention_mask: [B, S], 1 for real tokens and 0 for padding; all ones when None.
            output_all_encoded_layers: overrides `config.output_all_encoded_layers`.

        Returns:
            (sequence_output [B, S, H], pooled_output [B, H]). With output_all_encoded_layers,
            the first element is the list of every layer's [B, S, H] output (NVIDIA's behaviour).
        """
        if output_all_encoded_layers is None:
            output_all_encoded_layers = self.config.output_all_encoded_layers
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        attention_bias = None
        if attention_mask is not None:
            attention_bias = attention_bias_from_mask(
                attention_mask, self.embeddings.word_embeddings.weight.dtype
            )
        hidden_states = self.embeddings(input_ids, token_type_ids)
        all_outputs = self.encoder(hidden_states, attention_bias, output_all_encoded_layers)
        pooled_output = self.pooler(all_outputs[-1])
        if output_all_encoded_layers:
            return all_outputs, pooled_output
        return all_outputs[-1], pooled_output


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense_act = LinearActivation(config.hidden_size, config.hidden_size, config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense_act(hidden_states))


class BertLMPredictionHead(nn.Module):
    """Transform, then the decoder tied to the word embeddings, plus a per-token bias."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        # Built on the meta device, then tied: one Parameter, listed once, never allocated twice.
        self.decoder = nn.Linear(
            config.hidden_size, config.padded_vocab_size, bias=False, device="meta"
        )
        self.decoder.weight = word_embeddings.weight
        self.bias = nn.Parameter(torch.zeros(config.padded_vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states)) + self.bias  # [..., V]


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(
        self, sequence_output: torch.Tensor, pooled_output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


def _masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over predicted tokens (labels != -1); 0, not NaN, when there are none."""
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1)
    total = F.cross_entropy(logits, labels, ignore_index=-1, reduction="sum")
    return total / (labels != -1).sum().clamp(min=1)


class BertForPreTraining(nn.Module):
    """BERT with the masked-LM and next-sentence heads (the pre-training objective).

    `sequence_output_is_dense=True` (NVIDIA HEAD's default) projects onto the vocabulary only the
    rows whose label is not -1, which saves most of the [B, S, V] decoder work; `False` is the
    plain path that scores every position (NVIDIA 21.11, `--no_dense_sequence_output`).
    """

    def __init__(self, config: BertConfig, sequence_output_is_dense: bool = True) -> None:
        super().__init__()
        self.config = config
        self.sequence_output_is_dense = sequence_output_is_dense
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config, self.bert.embeddings.word_embeddings)
        self.apply(functools.partial(init_bert_weights, initializer_range=config.initializer_range))
        logger.debug("BertForPreTraining: sequence_output_is_dense=%s", sequence_output_is_dense)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        masked_lm_labels: torch.Tensor | None = None,
        next_sentence_labels: torch.Tensor | None = None,
        num_masked: int | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Pre-training forward.

        Args:
            masked_lm_labels: [B, S] original token id at masked positions, -1 elsewhere.
            next_sentence_labels: [B], 1 when sentence B is random.
            num_masked: the number M of labels that are not -1, when the caller knows it (the
                training loop counts it on the CPU batch), or any larger row count (a fixed one
                keeps the shapes static for torch.compile; the extra rows have label -1 and
                do not count); the dense head then needs no host synchronisation.

        Returns:
            With both label tensors: (total_loss, masked_lm_loss, next_sentence_loss), scalars;
            total = MLM mean over the predicted tokens + NSP mean over the batch.
            Otherwise: (prediction_scores, seq_relationship_score), where prediction_scores is
            [M, V] for the M rows with a label when masked_lm_labels is given and the dense path
            is on, else [B, S, V]; seq_relationship_score is [B, 2].
        """
        sequence_output, pooled_output = self.bert(
            input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False
        )
        labels = masked_lm_labels
        if self.sequence_output_is_dense and labels is not None:
            flat_labels = labels.reshape(-1)  # [B*S]
            if num_masked is None:
                # Boolean indexing learns M with one host sync; nonzero().squeeze() at HEAD
                # gave a 0-d index when M == 1.
                rows = (flat_labels != -1).nonzero().reshape(-1)  # [M]
            else:
                # M known on the host: a stable sort puts the masked rows first, in order,
                # without waiting for the device.
                rows = torch.argsort((flat_labels == -1).to(torch.int8), stable=True)[:num_masked]
            sequence_output = sequence_output.reshape(-1, sequence_output.shape[-1])[rows]
            labels = flat_labels[rows]  # [M]
        prediction_scores, seq_relationship_score = self.cls(sequence_output, pooled_output)
        if masked_lm_labels is None or next_sentence_labels is None:
            return prediction_scores, seq_relationship_score
        masked_lm_loss = _masked_lm_loss(prediction_scores, labels)
        next_sentence_loss = F.cross_entropy(
            seq_relationship_score.float(), next_sentence_labels.reshape(-1)
        )
        return masked_lm_loss + next_sentence_loss, masked_lm_loss, next_sentence_loss


class BertForQuestionAnswering(nn.Module):
    """BERT with a span head: a start and an end logit for every token (SQuAD)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.apply(functools.partial(init_bert_weights, initializer_range=config.initializer_range))

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Return (start_logits [B, S], end_logits [B, S]).

        With start_positions and end_positions [B] given, return (loss, start_logits,
        end_logits), where loss is NVIDIA's (positions clamped to [0, S], positions equal to S
        ignored, mean of the start and end cross-entropies) except that padded positions are
        excluded from the softmax, so a batch trimmed to its longest sequence has the same loss.
        """
        sequence_output, _ = self.bert(
            input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False
        )
        logits = self.qa_outputs(sequence_output)  # [B, S, 2]
        start_logits, end_logits = logits.float().unbind(dim=-1)
        if start_positions is None or end_positions is None:
            return start_logits, end_logits
        ignored = start_logits.shape[1]
        padding = None if attention_mask is None else attention_mask == 0  # [B, S]
        start_loss, end_loss = (
            F.cross_entropy(
                logits if padding is None else logits.masked_fill(padding, MASKED_ATTENTION_BIAS),
                positions.clamp(0, ignored),
                ignore_index=ignored,
            )
            for logits, positions in ((start_logits, start_positions), (end_logits, end_positions))
        )
        return (start_loss + end_loss) / 2, start_logits, end_logits


class BertForSequenceClassification(nn.Module):
    """BERT with a classifier on the pooled [CLS] output (GLUE).

    `num_labels == 1` makes it a regression head (STS-B): the loss is mean squared error.
    """

    def __init__(self, config: BertConfig, num_labels: int) -> None:
        super().__init__()
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        self.config = config
        self.num_labels = num_labels
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.apply(functools.partial(init_bert_weights, initializer_range=config.initializer_range))

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return logits [B, num_labels]; with labels [B], return (loss, logits)."""
        _, pooled_output = self.bert(
            input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False
        )
        logits = self.classifier(self.dropout(pooled_output)).float()
        if labels is None:
            return logits
        return classification_loss(logits, labels), logits


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean loss of classifier logits [B, num_labels] against labels [B]: cross-entropy,
    or mean squared error for a single-output regression head (STS-B)."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.reshape(-1), labels.reshape(-1).float())
    return F.cross_entropy(logits, labels.reshape(-1).long())
