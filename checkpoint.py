"""Checkpoint files: atomic saving, and reading weights in every format users bring.

One loader, one key map. Whatever the source (an NGC or NVIDIA `ckpt_*.pt`, one of ours, a bare
state_dict, a Hugging Face folder, a Google TensorFlow checkpoint, local or `s3://`), weights are
renamed to the canonical names of `modeling.py`, then fitted to the model: vocabulary rows padded
or trimmed, shapes, kinds (floating, integer...) and finiteness checked, missing and unexpected
keys reported (encoder mismatches are errors). Files are read with `weights_only=True`
(`torch_load`). Exporting to Hugging Face applies the same map backwards. Training-state
checkpoints are assembled by the training code (`pretraining_checkpoints.py`); this module
writes them atomically and reads them back safely. The README lists how loading differs from
NVIDIA's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import storage
from errors import BertError
from fileio import JsonError, atomic_folder, atomic_write, check_regular_file, read_json
from modeling import PADDED_VOCAB_BIAS, BertConfig, ConfigError, round_up

logger = logging.getLogger(__name__)


class CheckpointError(BertError, ValueError):
    """A checkpoint that cannot be read or does not fit the model (the message names the file)."""


# --------------------------------------------------------------------------------------------
# The key map: Hugging Face / Google names -> canonical (NVIDIA) names.
# --------------------------------------------------------------------------------------------

#: Wrapper prefixes added by DDP (`module.`) and torch.compile (`_orig_mod.`).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

#: The only three modules whose names differ between Hugging Face/Google and NVIDIA.
HF_TO_NVIDIA_MODULES = (
    (".intermediate.dense.", ".intermediate.dense_act."),
    ("bert.pooler.dense.", "bert.pooler.dense_act."),
    ("cls.predictions.transform.dense.", "cls.predictions.transform.dense_act."),
)

#: Top-level modules of the encoder; a checkpoint of a bare HF `BertModel` has no `bert.` prefix.
ENCODER_MODULES = ("embeddings.", "encoder.", "pooler.")

#: Keys that carry no weights of their own: HF's position/token-type buffers, and the decoder
#: bias that HF keeps as an alias of `cls.predictions.bias`.
IGNORED_KEYS = (
    "bert.embeddings.position_ids",
    "bert.embeddings.token_type_ids",
    "cls.predictions.decoder.bias",
)

WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"
DECODER = "cls.predictions.decoder.weight"
MLM_BIAS = "cls.predictions.bias"
#: Tensors whose first dimension is the (padded) vocabulary.
VOCAB_KEYS = (WORD_EMBEDDINGS, DECODER, MLM_BIAS)


def canonical_key(key: str) -> str:
    """Map one parameter name from any supported layout to the canonical NVIDIA name."""
    for prefix in WRAPPER_PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix) :]
    if key.startswith(ENCODER_MODULES):
        key = "bert." + key
    # Pre-2019 names of the LayerNorm parameters (Google TF and early pytorch-pretrained-bert).
    key = re.sub(r"(LayerNorm)\.gamma$", r"\1.weight", key)
    key = re.sub(r"(LayerNorm)\.beta$", r"\1.bias", key)
    for hf_name, nvidia_name in HF_TO_NVIDIA_MODULES:
        key = key.replace(hf_name, nvidia_name)
    return key


def hf_key(key: str, with_bert_prefix: bool = True) -> str:
    """The Hugging Face name of a canonical key (the key map backwards)."""
    for hf_name, nvidia_name in HF_TO_NVIDIA_MODULES:
        key = key.replace(nvidia_name, hf_name)
    if not with_bert_prefix and key.startswith("bert."):
        key = key[len("bert.") :]
    return key


def canonical_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Rename every key to its canonical name and drop the alias keys (tied or buffers)."""
    result: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        name = canonical_key(key)
        if name in result:
            raise CheckpointError(f"{source}: keys collide after renaming: {name!r}")
        result[name] = value
    if DECODER in result and WORD_EMBEDDINGS in result:
        decoder, embeddings = result.pop(DECODER), result[WORD_EMBEDDINGS]
        if decoder.shape != embeddings.shape or not torch.equal(decoder, embeddings):
            raise CheckpointError(
                f"{source}: {DECODER} differs from {WORD_EMBEDDINGS}; BERT ties them, "
                "so an untied decoder cannot be loaded"
            )
    for key in IGNORED_KEYS:
        result.pop(key, None)
    return result


# --------------------------------------------------------------------------------------------
# Reading files.
# --------------------------------------------------------------------------------------------


class _InertObject:
    """Stands in for a pickled object of a foreign class (never imported, never executed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def torch_load(path: str | os.PathLike) -> Any:
    """`torch.load(weights_only=True)` with clear errors.

    NVIDIA 21.11 checkpoints pickle a whole DataLoader (and apex objects); those foreign classes
    are loaded as inert stubs, so their weights remain readable without running any of their code.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    check_regular_file(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder without config.json and model weights")
    # A corrupt file can make the unpickler raise almost anything (IndexError, KeyError, ...):
    # at this boundary every failure means "unreadable".
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if "Unsupported global" not in str(err):
            raise _unreadable(path, err) from None
    try:
        foreign = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        with torch.serialization.safe_globals([(_InertObject, name) for name in foreign]):
            value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise _unreadable(path, err) from None
    logger.warning(
        "%s: pickled objects of %d foreign classes were not loaded (replaced by stubs): %s",
        path,
        len(foreign),
        ", ".join(sorted(foreign)),
    )
    return value


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(
        f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {detail[:200]}"
    )


@dataclasses.dataclass
class Weights:
    """Weights read from a file, in canonical names, with the config found beside them."""

    state_dict: dict[str, torch.Tensor]
    config: BertConfig | None
    source: str
    format: str  # "nvidia" (also ours and bare state_dicts), "hf" or "tf"


def _hf_weight_file(folder: Path) -> Path | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def _tf_prefix(path: Path) -> Path | None:
    """The checkpoint prefix of a Google TF checkpoint given as a prefix, `.index` or folder."""
    if path.is_dir():
        indexes = sorted(path.glob("*.ckpt*.index"))
        return indexes[0].with_suffix("") if indexes else None
    if path.suffix == ".index" and path.is_file():
        return path.with_suffix("")
    if Path(str(path) + ".index").is_file():
        return path
    return None


def local_path(path: str | os.PathLike) -> Path:
    """`path` itself, or a local copy of an `s3://` object or prefix (see storage.py)."""
    if not storage.is_remote(path):
        return Path(path)
    with _storage_errors():
        return storage.fetch(str(path))


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    """S3 failures as CheckpointErrors, which every entry script reports in one line."""
    try:
        yield
    except storage.StorageError as err:
        raise CheckpointError(str(err)) from None


def read_weights(path: str | os.PathLike) -> Weights:
    """Read weights from any supported format (see the module docstring), local or s3://."""
    path = local_path(path)
    tf_prefix = _tf_prefix(path)
    if path.is_dir() and (path / "config.json").is_file() and _hf_weight_file(path):
        return _read_hf_folder(path)
    if tf_prefix is not None:
        return _read_tf_checkpoint(tf_prefix, path)
    if path.is_dir():
        raise CheckpointError(
            f"{path}: folder holds no Hugging Face model (config.json + model.safetensors or "
            "pytorch_model.bin) and no TensorFlow checkpoint (*.ckpt.index)"
        )
    if path.suffix == ".safetensors":
        return Weights(_read_safetensors(path), None, str(path), "hf")
    loaded = torch_load(path)
    config = None
    if isinstance(loaded, Mapping) and "model" in loaded:
        if isinstance(loaded.get("config"), Mapping):
            config = BertConfig.from_dict(dict(loaded["config"]), source=f"{path} [config]")
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(
            f"{path}: expected a state_dict or a dict with a 'model' state_dict, "
            f"found {type(loaded).__name__}"
        )
    return Weights(canonical_state_dict(loaded, str(path)), config, str(path), "nvidia")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_regular_file(path)
    try:
        state_dict = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file: {err}") from None
    return canonical_state_dict(state_dict, str(path))


def _read_hf_folder(folder: Path) -> Weights:
    config_file = folder / "config.json"
    check_regular_file(config_file)
    try:
        values = read_json(config_file)
    except JsonError as err:
        raise CheckpointError(str(err)) from None
    model_type = values.get("model_type") if isinstance(values, dict) else None
    if model_type not in (None, "bert"):
        raise CheckpointError(f"{folder}: model_type is {model_type!r}, not a BERT checkpoint")
    try:
        config = BertConfig.from_dict(values, source=str(config_file))
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    weight_file = _hf_weight_file(folder)
    assert weight_file is not None
    if weight_file.suffix == ".safetensors":
        state_dict = _read_safetensors(weight_file)
    else:
        state_dict = canonical_state_dict(torch_load(weight_file), str(weight_file))
    return Weights(state_dict, config, str(folder), "hf")


def tf_variable_to_key(name: str) -> str | None:
    """Canonical key of a Google BERT TensorFlow variable, or None for optimizer/bookkeeping ones.

    Examples: `bert/encoder/layer_3/intermediate/dense/kernel` ->
    `bert.encoder.layer.3.intermediate.dense_act.weight`; `cls/predictions/output_bias` ->
    `cls.predictions.bias`; `cls/squad/output_weights` -> `qa_outputs.weight`.
    """
    parts = name.split("/")
    if parts[-1] in ("adam_m", "adam_v") or name in ("global_step", "bad_steps", "good_steps"):
        return None
    if name.startswith("cls/squad/"):
        parts = ["qa_outputs", parts[-1]]
    elif name in ("output_weights", "output_bias"):
        parts = ["classifier", name]
    elif name == "cls/predictions/output_bias":
        return MLM_BIAS
    names = {"kernel": "weight", "gamma": "weight", "beta": "bias"}
    names |= {"output_weights": "weight", "output_bias": "bias"}
    converted = []
    for part in parts:
        match = re.fullmatch(r"layer_(\d+)", part)
        converted.append(f"layer.{match.group(1)}" if match else names.get(part, part))
    if converted[-1].endswith("_embeddings"):
        converted.append("weight")
    return canonical_key(".".join(converted))


def tf_state_dict(
    variables: Iterable[str], read: Callable[[str], Any], source: str
) -> dict[str, torch.Tensor]:
    """Canonical state_dict from TF variable names and a reader (`kernel`s are transposed)."""
    state_dict = {}
    for name in variables:
        key = tf_variable_to_key(name)
        if key is None:
            continue
        tensor = torch.as_tensor(read(name))
        if name.endswith("/kernel"):
            tensor = tensor.t()
        state_dict[key] = tensor.contiguous()
    if not state_dict:
        raise CheckpointError(f"{source}: no BERT variables found in the TensorFlow checkpoint")
    return canonical_state_dict(state_dict, source)


def _read_tf_checkpoint(prefix: Path, given: Path) -> Weights:
    try:
        import tensorflow as tf
    except ImportError:
        raise CheckpointError(
            f"{given}: reading a Google TensorFlow checkpoint needs TensorFlow "
            "(pip install tensorflow-cpu), or convert it once on a machine that has it"
        ) from None
    reader = tf.train.load_checkpoint(str(prefix))
    names = sorted(reader.get_variable_to_shape_map())
    state_dict = tf_state_dict(names, reader.get_tensor, str(given))
    config = None
    config_file = prefix.parent / "bert_config.json"
    if config_file.is_file():
        config = BertConfig.from_json_file(config_file)
    return Weights(state_dict, config, str(given), "tf")


# --------------------------------------------------------------------------------------------
# Fitting weights to a model.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LoadReport:
    """What loading did: keys the model kept from its own init, keys it ignored, vocab resizing."""

    source: str
    missing: list[str]
    unexpected: list[str]
    vocab_resized: tuple[int, int] | None = None

    def log(self) -> None:
        if self.vocab_resized:
            old, new = self.vocab_resized
            logger.info("%s: vocabulary rows %d -> %d (padding)", self.source, old, new)
        if self.missing:
            logger.warning(
                "%s: %d weights not in the checkpoint keep their initial values: %s",
                self.source,
                len(self.missing),
                _summarise(self.missing),
            )
        if self.unexpected:
            logger.warning(
                "%s: %d checkpoint weights not used by this model: %s",
                self.source,
                len(self.unexpected),
                _summarise(self.unexpected),
            )


def check_head_loaded(
    report: LoadReport, prefixes: tuple[str, ...], path: str | os.PathLike, purpose: str
) -> None:
    """A CheckpointError when the weights under `prefixes` (a task head) were not in the
    checkpoint at `path`: a head left at its random initialisation makes every output
    meaningless, so the run stops instead of answering."""
    missing = [key for key in report.missing if key.startswith(prefixes)]
    if missing:
        raise CheckpointError(f"{path}: no {', '.join(missing)} in it; {purpose}")


def _summarise(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def resize_vocab(
    state_dict: dict[str, torch.Tensor], rows: int, vocab_size: int
) -> tuple[int, int] | None:
    """Pad or trim the vocabulary tensors in place to `rows` (the model's padded size).

    Allowed only where the change touches padding alone: the checkpoint must hold at least the
    `vocab_size` real tokens. Padded embedding rows are zero and their MLM bias is -10000, so
    the padded model predicts exactly as the unpadded one.
    """
    present = [key for key in VOCAB_KEYS if key in state_dict]
    if not present:
        return None
    old = state_dict[present[0]].shape[0]
    if old == rows:
        return None
    if old < vocab_size or old > round_up(vocab_size, 128):
        return None  # a real vocabulary mismatch: the shape check reports it
    for key in present:
        tensor = state_dict[key]
        if old > rows:
            state_dict[key] = tensor[:rows].clone()
        else:
            fill = PADDED_VOCAB_BIAS if key == MLM_BIAS else 0.0
            pad = tensor.new_full((rows - old, *tensor.shape[1:]), fill)
            state_dict[key] = torch.cat([tensor, pad])
    return old, rows


def fit_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, strict: bool = False
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Fit weights in any naming to a model of `modeling.py`, without loading them.

    Returns the weights under the model's own keys (vocabulary padded or trimmed, tied decoder
    filled in) and a report. Always an error (CheckpointError naming `source`): a shape
    mismatch, any missing encoder weight, any encoder weight the model has no place for
    (another size or depth), a weight with NaN or infinite values. With `strict`, missing or
    unused head weights are errors too;
    otherwise they are reported. `model` may live on the meta device.
    """
    state_dict = canonical_state_dict(state_dict, source)
    config = getattr(model, "config", None)
    resized = None
    if isinstance(config, BertConfig):
        resized = resize_vocab(state_dict, config.padded_vocab_size, config.vocab_size)
    expected = model.state_dict()
    bare_encoder = not any(key.startswith("bert.") for key in expected)
    if bare_encoder:  # a BertModel: its keys have no `bert.` prefix
        state_dict = {
            (key[len("bert.") :] if key.startswith("bert.") else key): value
            for key, value in state_dict.items()
        }
    elif DECODER in expected and WORD_EMBEDDINGS in state_dict:
        state_dict[DECODER] = state_dict[WORD_EMBEDDINGS]  # tied in the model

    def is_encoder(key: str) -> bool:
        # The pooler is optional: HF question-answering checkpoints have none, and QA never uses it.
        key = key if bare_encoder else key.removeprefix("bert.")
        return key.startswith(("embeddings.", "encoder."))

    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    for key in sorted(set(expected) & set(state_dict)):
        if state_dict[key].shape != expected[key].shape:
            raise CheckpointError(
                f"{source}: {key} has shape {list(state_dict[key].shape)} in the checkpoint "
                f"but {list(expected[key].shape)} in the model (another model size, or another "
                "vocabulary / config?)"
            )
    check_weight_types(state_dict, expected, source)
    missing_encoder = [key for key in missing if is_encoder(key)]
    unexpected_encoder = [key for key in unexpected if is_encoder(key) or key.startswith("bert.")]
    if missing_encoder and len(missing_encoder) == sum(map(is_encoder, expected)):
        sample = _summarise(sorted(state_dict), 3) if state_dict else "none"
        raise CheckpointError(
            f"{source}: no BERT encoder weights found (its keys look like: {sample}); "
            "is this a BERT checkpoint?"
        )
    if missing_encoder:
        raise CheckpointError(
            f"{source}: {len(missing_encoder)} encoder weights missing from the checkpoint "
            f"(another depth or architecture?): {_summarise(missing_encoder)}"
        )
    if unexpected_encoder:
        raise CheckpointError(
            f"{source}: the checkpoint has {len(unexpected_encoder)} encoder weights this model "
            f"has no place for (another depth?): {_summarise(unexpected_encoder)}"
        )
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{source}: strict loading failed: missing {_summarise(missing) or 'none'}; "
            f"unexpected {_summarise(unexpected) or 'none'}"
        )
    fitted = {key: value for key, value in state_dict.items() if key in expected}
    check_weights_finite(fitted, source)
    return fitted, LoadReport(source, missing, unexpected, resized)


def _kind(tensor: torch.Tensor) -> str:
    if tensor.dtype == torch.bool:
        return "bool"
    if tensor.is_complex():
        return "complex"
    return "floating" if tensor.is_floating_point() else "integer"


def check_weight_types(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str
) -> None:
    """Refuse a tensor whose kind (floating, integer, bool, complex) differs from the model's:
    `load_state_dict` would cast integers or booleans into weights without a word (an integer
    copy of float weights is all zeros and ones)."""
    for key in sorted(set(expected) & set(state_dict)):
        found, wanted = _kind(state_dict[key]), _kind(expected[key])
        if found != wanted:
            raise CheckpointError(
                f"{source}: {key} holds {found} values ({state_dict[key].dtype}), but the model's "
                f"are {wanted}; the file does not hold BERT weights as they are saved"
            )


def check_weights_finite(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or infinity (a diverged run's), naming the first such tensor:
    loaded, they would train or predict nothing but NaN, far from where they came from."""
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{source}: {key} holds {count} non-finite values (NaN or infinity); refusing "
                "weights from a diverged run"
            )


def load_state_dict_into(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, strict: bool = False
) -> LoadReport:
    """Load weights in any naming into `model` (checked as `fit_state_dict` says) and log."""
    fitted, report = fit_state_dict(model, state_dict, source, strict)
    model.load_state_dict(fitted, strict=False)
    report.log()
    return report


def model_for_weights(
    state_dict: Mapping[str, torch.Tensor], config: BertConfig, device: str = "meta"
) -> nn.Module:
    """The `modeling.py` class whose heads match the weights (built on `device`)."""
    import modeling

    architecture = infer_architecture(state_dict)
    with torch.device(device):
        if architecture == "BertForSequenceClassification":
            return modeling.BertForSequenceClassification(
                config, state_dict["classifier.weight"].shape[0]
            )
        return getattr(modeling, architecture)(config)


def load_model_weights(
    model: nn.Module, path: str | os.PathLike, strict: bool = False
) -> LoadReport:
    """Read weights from any supported format and load them into `model` (see above)."""
    weights = read_weights(path)
    return load_state_dict_into(model, weights.state_dict, weights.source, strict=strict)


# --------------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------------


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through a temporary file in the same folder, then an atomic rename."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


class CheckpointFolder:
    """Where `ckpt_<N>.pt` files live: a local folder, or an `s3://` prefix.

    A remote folder is listed in the bucket itself, never in the local download cache, so stale
    cached files can neither fake nor hide a checkpoint. Local checkpoints are written
    atomically; remote ones are uploaded as one object, which S3 shows only once complete.
    Only the main process may call `create`, `save` and `delete`.
    """

    def __init__(self, location: str | os.PathLike) -> None:
        self.remote = storage.is_remote(location)
        self.location = str(location).rstrip("/") if self.remote else str(location)
        with _storage_errors():
            self.bucket, prefix = storage.split_url(self.location) if self.remote else ("", "")
        self.prefix = prefix + "/" if prefix else ""

    def create(self) -> None:
        """Make the local folder (an S3 prefix needs no creating)."""
        if not self.remote:
            Path(self.location).mkdir(parents=True, exist_ok=True)

    def names(self) -> list[str]:
        """File names in the folder (for remote folders, the objects directly under it)."""
        if not self.remote:
            folder = Path(self.location)
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        with _storage_errors():
            keys = storage.list_keys(f"s3://{self.bucket}/{self.prefix}", recursive=False)
        return sorted(key[len(self.prefix) :] for key in keys if not key.endswith("/"))

    def numbers(self) -> list[int]:
        """The N of every `ckpt_N.pt`, ascending. Only names as they are written count (no
        leading zeros), so that `ckpt_{N}.pt` names the file: `ckpt_007.pt` is not step 7."""
        matches = (re.fullmatch(r"ckpt_(0|[1-9][0-9]*)\.pt", name) for name in self.names())
        return sorted(int(m.group(1)) for m in matches if m)

    def url(self, name: str) -> str:
        """Where the file `name` lives: a local path or an s3:// URL."""
        return f"{self.location}/{name}" if self.remote else str(Path(self.location) / name)

    def path(self, name: str) -> Path:
        """A readable local path of a file in the folder (downloaded when remote)."""
        if not self.remote:
            return Path(self.location) / name
        with _storage_errors():
            path = storage.fetch(self.url(name))
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {self.url(name)}")  # a prefix
        return path

    def save(self, payload: Any, name: str) -> None:
        if not self.remote:
            atomic_torch_save(payload, Path(self.location) / name)
            return
        with _storage_errors():
            storage.upload(self.url(name), lambda handle: torch.save(payload, handle))

    def delete(self, name: str) -> None:
        if not self.remote:
            (Path(self.location) / name).unlink(missing_ok=True)
            return
        with _storage_errors():
            storage.delete(self.url(name))

    def __str__(self) -> str:
        return self.location


def nvidia_state_dict(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict:
    """A state_dict in canonical NVIDIA form: `bert.` prefix, tied decoder key present."""
    if isinstance(model_or_state, nn.Module):
        model_or_state = model_or_state.state_dict()
    state_dict = canonical_state_dict(model_or_state, "model")
    if MLM_BIAS in state_dict and WORD_EMBEDDINGS in state_dict:
        state_dict[DECODER] = state_dict[WORD_EMBEDDINGS]  # NGC checkpoints carry both names
    return state_dict


def save_nvidia_checkpoint(
    path: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    config: BertConfig | None = None,
) -> None:
    """Write `{'model': state_dict, 'config': ...}` as NVIDIA's `ckpt_*.pt` / NGC files are."""
    atomic_torch_save(nvidia_checkpoint_payload(state_dict, config), path)


def nvidia_checkpoint_payload(
    state_dict: Mapping[str, torch.Tensor], config: BertConfig | None = None
) -> dict[str, Any]:
    """`{'model': state_dict in NVIDIA's form, 'config': ...}`, what `save_nvidia_checkpoint`
    writes."""
    payload: dict[str, Any] = {"model": nvidia_state_dict(state_dict)}
    if config is not None:
        payload["config"] = config.to_dict()
    return payload


#: Hugging Face class -> the prefix of the head weights it carries besides `bert.`.
HF_HEADS = {
    "BertModel": "",
    "BertForPreTraining": "cls.",
    "BertForQuestionAnswering": "qa_outputs.",
    "BertForSequenceClassification": "classifier.",
}
HF_ARCHITECTURES = tuple(HF_HEADS)


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The Hugging Face class whose heads match the canonical weights."""
    if any(key.startswith("cls.") for key in state_dict):
        return "BertForPreTraining"
    if "qa_outputs.weight" in state_dict:
        return "BertForQuestionAnswering"
    if "classifier.weight" in state_dict:
        return "BertForSequenceClassification"
    return "BertModel"


def hf_config_dict(config: BertConfig, architecture: str, state_dict: Mapping) -> dict[str, Any]:
    """A `config.json` that `transformers` reads, with the vocabulary padding undone."""
    values = {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": config.hidden_act if config.hidden_act != "bias_gelu" else "gelu",
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
    }
    if architecture == "BertForSequenceClassification":
        num_labels = state_dict["classifier.weight"].shape[0]
        values["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        values["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
        if num_labels == 1:
            values["problem_type"] = "regression"
    return values


def hf_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: BertConfig, architecture: str
) -> dict[str, torch.Tensor]:
    """Canonical weights -> Hugging Face names, vocab rows trimmed to `config.vocab_size`.

    The tied decoder is left out (transformers re-ties it); a bare `BertModel` has no prefix.
    """
    state_dict = canonical_state_dict(state_dict, "model")
    head = HF_HEADS[architecture]
    result = {}
    for key, tensor in state_dict.items():
        if not key.startswith("bert.") and not (head and key.startswith(head)):
            continue
        if architecture == "BertForQuestionAnswering" and key.startswith("bert.pooler."):
            continue  # transformers builds its QA model without a pooler
        if key in VOCAB_KEYS:
            tensor = tensor[: config.vocab_size]
        result[hf_key(key, with_bert_prefix=architecture != "BertModel")] = (
            tensor.detach().contiguous().clone()
        )
    return result


def save_hf_folder(
    out_dir: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    config: BertConfig,
    architecture: str | None = None,
    vocab_file: str | os.PathLike | None = None,
    do_lower_case: bool = True,
) -> Path:
    """Write a Hugging Face folder (config.json, model.safetensors, vocab and tokenizer config).

    The folder is assembled beside `out_dir` and renamed into place, so an interrupted export
    never leaves a half-written model; an existing non-empty `out_dir` is refused.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CheckpointError(f"{out_dir}: output exists and is not an empty folder")
    canonical = canonical_state_dict(state_dict, "model")
    architecture = architecture or infer_architecture(canonical)
    if architecture not in HF_ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {architecture!r} (one of {HF_ARCHITECTURES})")
    head = HF_HEADS[architecture]
    if head and not any(key.startswith(head) for key in canonical):
        raise CheckpointError(f"cannot export as {architecture}: the weights have no {head}* head")
    with atomic_folder(out_dir) as tmp:  # replaces an empty out_dir
        tensors = hf_state_dict(canonical, config, architecture)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config_values = hf_config_dict(config, architecture, canonical)
        (tmp / "config.json").write_text(json.dumps(config_values, indent=2) + "\n")
        if vocab_file is not None:
            shutil.copyfile(vocab_file, tmp / "vocab.txt")
            tokenizer_config = {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": do_lower_case,
                "model_max_length": config.max_position_embeddings,
            }
            (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return out_dir
