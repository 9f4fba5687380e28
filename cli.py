"""The command-line layer every CLI shares: one-line flag errors, checked flag types, path checks
and the `main()` wrapper.

Owns `ArgumentParser` (a bad flag is one line and exit status 2; `RefusedFlag` for NVIDIA's
flags that have no counterpart here), the flag types that refuse
impossible values while parsing (`positive_int`, `proportion`, `seed_value`, ...), the path
checks run before any data is read (`check_input_file`, `check_output_dir`,
`check_not_overwriting`, `check_model_files`, ...), `require` for optional packages, and
`run_main`, which turns whatever ends a run into one line and an exit status. It starts nothing:
torch is never imported at module level, so the data CLIs parse and report errors without it.
Run setup (precision, distributed, the runtime flags) is `runtime.py`'s.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import stat
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

import storage
from errors import BertError, MissingDependency, UsageError
from fileio import probe_writable

if TYPE_CHECKING:
    from modeling import BertConfig

DEBUG_ENV = "BERT_DEBUG"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the flag, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class RefusedFlag(argparse.Action):
    """A flag of NVIDIA's that has no counterpart here: listed in --help, and refused while
    parsing with one line saying what to use instead (`instead`), rather than argparse's
    "unrecognized arguments"."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, instead: str, **kwargs) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help")
        )
        self.instead = instead

    def __call__(self, parser, namespace, values, option_string=None) -> NoReturn:
        parser.error(f"{option_string}: {self.instead}")


#: Upper bounds of the sizes flags give: generous for any real run, low enough that an absurd
#: value (an extra digit, a wrapped-around shell number) is refused before anything is allocated.
MAX_BATCH = 2**20  # samples per process per step: far beyond any accelerator's memory
MAX_SEQ = 2**16  # tokens per sequence: BERT's position table is 512
MAX_COUNT = 2**40  # steps, samples, shards and other counts: beyond any run's lifetime
MAX_PROCESSES = 2**12  # GPUs, processes or workers on one machine
MAX_EPOCHS = 2**20  # passes over a fine-tuning set
MAX_SHARDS = 2**20  # shard files of one data set
MAX_DUPE_FACTOR = 1000  # copies of the corpus, each masked anew (NVIDIA's 5 or 10)
MAX_LEARNING_RATE = 1000  # no optimizer converges near it; float32 overflows at 3.4e38
MAX_LOSS_SCALE = 2**32  # fp16 losses overflow far below it; NVIDIA starts at 2**20

_SHOWN = 24  # characters of a refused value quoted back: a 5,000-digit value stays one line


def _shown(text: str) -> str:
    text = str(text)
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text)} characters)"


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        digits = str(text).strip().lstrip("+-").replace("_", "")
        if digits.isdigit() and len(digits) > _SHOWN:  # beyond int()'s digit limit
            raise argparse.ArgumentTypeError(f"is far too large, got {_shown(text)}") from None
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {name}, got {_shown(text)}") from None
    if kind is float and not math.isfinite(value):
        if not any(word in str(text).lower() for word in ("nan", "inf")):  # 1e400: overflowed
            raise argparse.ArgumentTypeError(f"is far too large, got {_shown(text)}")
        raise argparse.ArgumentTypeError(f"must be a finite number, got {_shown(text)}")
    return value


def _limit(value: int | float, maximum: int | float, text: str, note: str = "") -> None:
    if value > maximum:
        exact = isinstance(maximum, int) and maximum & (maximum - 1) == 0
        power = f"2**{maximum.bit_length() - 1}" if exact else ""
        words = " ".join(part for part in (power, note) if part)
        words = f" ({words})" if words else ""
        raise argparse.ArgumentTypeError(f"must be at most {maximum}{words}, got {_shown(text)}")


def int_between(low: int, high: int, note: str = "") -> Callable[[str], int]:
    """A flag type for an integer in [low, high]; `note` says what the upper limit stands for."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low:
            words = "a positive integer" if low == 1 else f"{low} or more"
            raise argparse.ArgumentTypeError(f"must be {words}, got {_shown(text)}")
        _limit(value, high, text, note)
        return value

    parse.__name__ = f"int_between_{low}_{high}"
    return parse


def finite_float(text: str) -> float:
    """Any finite number (NaN and infinities refused)."""
    return _number(text, float)


def positive_int(text: str) -> int:
    """A count of 1 or more, up to MAX_COUNT."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {_shown(text)}")
    _limit(value, MAX_COUNT, text)
    return value


def non_negative_int(text: str) -> int:
    """A count of 0 or more, up to MAX_COUNT."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {_shown(text)}")
    _limit(value, MAX_COUNT, text)
    return value


batch_size = int_between(1, MAX_BATCH, "samples per process per step")
batch_size.__doc__ = "Samples per process per step (or per prediction batch), up to MAX_BATCH."
seq_length = int_between(1, MAX_SEQ, "tokens per sequence")
seq_length.__doc__ = "A length in tokens (sequence, query, answer, stride), up to MAX_SEQ."
process_count = int_between(1, MAX_PROCESSES, "processes on one machine")
process_count.__doc__ = "GPUs or processes on one machine, up to MAX_PROCESSES."
worker_count = int_between(0, MAX_PROCESSES, "workers on one machine")
worker_count.__doc__ = "Worker threads or processes (0: none), up to MAX_PROCESSES."
shard_count = int_between(1, MAX_SHARDS, "shard files")
shard_count.__doc__ = "A number of shard files, up to MAX_SHARDS."
dupe_factor = int_between(1, MAX_DUPE_FACTOR, "copies of the text")
dupe_factor.__doc__ = "Copies of the corpus to mask, up to MAX_DUPE_FACTOR."


def positive_float_up_to(high: float, note: str = "") -> Callable[[str], float]:
    """A flag type for a number in (0, high]; `note` says what the upper limit stands for."""

    def parse(text: str) -> float:
        value = positive_float(text)
        _limit(value, high, text, note)
        return value

    parse.__name__ = f"positive_float_up_to_{high}"
    return parse


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {_shown(text)}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {_shown(text)}")
    return value


def learning_rate(text: str) -> float:
    """A positive learning rate, up to MAX_LEARNING_RATE."""
    value = positive_float(text)
    _limit(value, MAX_LEARNING_RATE, text)
    return value


def loss_scale(text: str) -> float:
    """An fp16 loss scale, 0 (dynamic from the default) or more, up to MAX_LOSS_SCALE."""
    value = non_negative_float(text)
    _limit(value, MAX_LOSS_SCALE, text)
    return value


def positive_loss_scale(text: str) -> float:
    """An fp16 loss scale above 0, up to MAX_LOSS_SCALE (`--init_loss_scale`)."""
    value = positive_float(text)
    _limit(value, MAX_LOSS_SCALE, text)
    return value


def epoch_count(text: str) -> float:
    """A positive number of passes over the data, up to MAX_EPOCHS (steps are counted from it)."""
    value = positive_float(text)
    _limit(value, MAX_EPOCHS, text, "passes over the data")
    return value


def proportion(text: str) -> float:
    """A fraction in [0, 1] (warm-up proportions, probabilities)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {_shown(text)}")
    return value


def steps_or_minus_one(text: str) -> float:
    """NVIDIA's float step counts where -1 (or any value <= 0) means "not set"; a positive value
    must be a whole number of steps, up to MAX_COUNT."""
    value = _number(text, float)
    if value > 0 and value != int(value):
        raise argparse.ArgumentTypeError(f"must be a whole number of steps, got {_shown(text)}")
    _limit(value, MAX_COUNT, text, "steps")
    return value


def positive_steps(text: str) -> float:
    """A whole, positive number of steps given as a float (NVIDIA's `--max_steps 7038`), up to
    MAX_COUNT."""
    value = _number(text, float)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(
            f"must be a whole number of steps >= 1, got {_shown(text)}"
        )
    _limit(value, MAX_COUNT, text, "steps")
    return value


def positive_int_or_minus_one(text: str) -> int:
    """A positive integer up to MAX_COUNT, or -1 for "not set" (NVIDIA's `--steps_this_run`)."""
    value = _number(text, int)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or -1, got {_shown(text)}")
    _limit(value, MAX_COUNT, text)
    return value


def step_or_minus_one(text: str) -> int:
    """A step number (0 up to MAX_COUNT), or -1 for "the newest" (NVIDIA's `--resume_step`)."""
    value = _number(text, int)
    if value < -1:
        raise argparse.ArgumentTypeError(f"must be a step number or -1, got {_shown(text)}")
    _limit(value, MAX_COUNT, text)
    return value


def seed_value(text: str) -> int:
    """A seed numpy and torch accept: 0 <= seed < 2**32 (ranks are added to it)."""
    value = _number(text, int)
    if not 0 <= value < 2**32 - 4096:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 4097, got {_shown(text)}")
    return value


# Every path a CLI takes is checked before it reads data or takes a step. A path that cannot
# work (missing, a file where a folder is needed or the reverse, not writable, one of the run's
# own inputs) is a flag value that cannot work: a UsageError naming the flag, exit status 2.

PathArg = str | os.PathLike | None


def _label(flag: str, path: str | os.PathLike) -> str:
    return f"{flag} {os.fspath(path)}" if flag else os.fspath(path)


def _path(path: str | os.PathLike, flag: str) -> tuple[Path, str]:
    """(`path` as a Path, how to name it in a message); an empty path (`--x=""`, or `--x=$UNSET`
    in a launcher) is refused instead of meaning the current folder."""
    text = os.fspath(path)
    if not text.strip():
        raise UsageError(f"{flag or 'a path'}: empty path (an unset variable?)")
    return Path(text), _label(flag, text)


def _stat(path: Path, label: str) -> os.stat_result | None:
    """os.stat of `path` (links followed); None when nothing is there. A path the system cannot
    even look up (a NUL byte, a name too long, a link loop, no permission) is a UsageError."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:  # an embedded NUL byte
        raise UsageError(f"{label}: not a usable path (it holds a NUL byte)") from None
    except OSError as err:
        raise UsageError(f"{label}: {err.strerror or err}") from None


def check_input_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` must be a readable regular file."""
    path, label = _path(path, flag)
    status = _stat(path, label)
    if status is None:
        raise UsageError(f"{label}: no such file")
    if stat.S_ISDIR(status.st_mode):
        raise UsageError(f"{label}: is a folder, expected a file")
    if not stat.S_ISREG(status.st_mode):
        raise UsageError(f"{label}: not a regular file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{label}: cannot be read (permission denied)")
    return path


def check_input_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` must be an existing folder."""
    path, label = _path(path, flag)
    status = _stat(path, label)
    if status is None:
        raise UsageError(f"{label}: no such folder")
    if not stat.S_ISDIR(status.st_mode):
        raise UsageError(f"{label}: is a file, expected a folder")
    return path


def check_input_path(path: str | os.PathLike, flag: str) -> Path:
    """`path` must exist: a file or a folder (a folder of inputs)."""
    path, label = _path(path, flag)
    if _stat(path, label) is None:
        raise UsageError(f"{label}: no such file or folder")
    return path


def _existing_parent(path: Path, label: str) -> Path:
    """The nearest existing folder above `path`: where its missing folders would be made."""
    for parent in path.absolute().parents:
        status = _stat(parent, label)
        if status is None:
            continue
        if not stat.S_ISDIR(status.st_mode):
            raise UsageError(f"{label}: {parent} is a file, not a folder")
        return parent
    raise UsageError(f"{label}: no existing folder above it")  # only on a vanished root


def _probe(folder: Path, label: str) -> None:
    try:
        probe_writable(folder)
    except OSError as err:
        raise UsageError(f"{label}: cannot write in {folder} ({err.strerror or err})") from None


def check_weights_path(path: str | os.PathLike, flag: str) -> None:
    """Weights in any format the loaders read: a file, a folder (Hugging Face, Google TF), a TF
    checkpoint prefix (`model.ckpt` beside `model.ckpt.index`), or s3:// (checked when fetched)."""
    if storage.is_remote(path):
        return
    path, label = _path(path, flag)
    status = _stat(path, label)
    if status is None and _stat(Path(f"{path}.index"), label) is None:
        raise UsageError(f"{label}: no such file or folder")
    if status is not None and not (stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode)):
        raise UsageError(f"{label}: not a regular file or a folder (a pipe, device or socket)")


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` is a folder, or can be made one, and a file can be written in it (tried for real
    with a temporary file, removed at once). Creates nothing."""
    path, label = _path(path, flag)
    status = _stat(path, label)
    if status is not None and not stat.S_ISDIR(status.st_mode):
        raise UsageError(f"{label}: exists and is not a folder")
    _probe(path if status is not None else _existing_parent(path, label), label)
    return path


def check_output_file(path: str | os.PathLike, flag: str, *, append: bool = False) -> Path:
    """`path` can be written as a file: not a folder (nor a name ending in a separator), its
    parent a folder or makeable, and writable (tried for real). With `append` (a log), an
    existing file is written in place, so a device such as /dev/null is fine too; otherwise an
    existing non-regular file is refused (the atomic rename would replace the device node)."""
    text = os.fspath(path)  # as typed: Path() would drop a trailing separator
    path, label = _path(text, flag)
    if text.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        raise UsageError(f"{label}: names a folder, expected a file name")
    status = _stat(path, label)
    if status is not None:
        if stat.S_ISDIR(status.st_mode):
            raise UsageError(f"{label}: is a folder, expected a file name")
        if append:
            if not os.access(path, os.W_OK):
                raise UsageError(f"{label}: cannot be written (permission denied)")
            return path
        if not stat.S_ISREG(status.st_mode):
            raise UsageError(f"{label}: exists and is not a regular file")
    _probe(_existing_parent(path, label), label)
    return path


def _local(path: PathArg) -> bool:
    return path is not None and os.fspath(path) != "" and not storage.is_remote(path)


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name one file: the same inode when both exist (symbolic and hard
    links), else the same resolved path (`./x/../y` spellings, links above a missing file)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        pass
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop: not comparable, so not the same
        return False


def _inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def check_not_overwriting(
    inputs: Mapping[str, PathArg],
    outputs: Mapping[str, PathArg],
    folders: Mapping[str, PathArg] | None = None,
) -> None:
    """A UsageError when an output file is one of the inputs (compared as files: links and other
    spellings are caught), or an input lies in an output folder that the run replaces whole.
    Keys are how the user named each path (a flag); None values and s3:// URLs are skipped."""
    inputs = {label: path for label, path in inputs.items() if _local(path)}
    for out_label, output in outputs.items():
        for in_label, source in inputs.items():
            if _local(output) and same_path(output, source):
                raise UsageError(
                    f"{_label(out_label, output)} is {_label(in_label, source)}: writing it "
                    "would overwrite an input; choose another output"
                )
    for out_label, folder in (folders or {}).items():
        for in_label, source in inputs.items():
            if _local(folder) and _inside(source, folder):
                raise UsageError(
                    f"{_label(in_label, source)} lies in {_label(out_label, folder)}, which the "
                    f"run replaces whole; move the input or choose another output"
                )


def check_distinct_outputs(
    files: Mapping[str, PathArg], folders: Mapping[str, PathArg] | None = None
) -> None:
    """A UsageError when two outputs of one run are one path (links and other spellings are
    caught): two files, which the run would write over each other (or interleave, for a log),
    or a file that is a folder the run writes in. Keys are how the user named each path (a
    flag, or "--output_dir's predictions.json"); None values and s3:// URLs are skipped."""
    named = [(label, path) for label, path in files.items() if _local(path)]
    named += [(label, path) for label, path in (folders or {}).items() if _local(path)]
    for index, (label, path) in enumerate(named):
        for other_label, other in named[index + 1 :]:
            if same_path(path, other):
                raise UsageError(
                    f"{_label(other_label, other)} is {_label(label, path)}, another output of "
                    "this run: one would destroy the other; give them different paths"
                )


def check_model_files(
    config_file: str | os.PathLike,
    vocab_file: PathArg = None,
    max_seq_length: int | None = None,
    *,
    seq_flag: str = "--max_seq_length",
    config_flag: str = "--config_file",
) -> BertConfig:
    """The model config of `--config_file` (read and validated: a ConfigError names the field),
    checked against the vocabulary and the sequence length the run will use: every token id of
    `--vocab_file` needs an embedding row (`vocab_size` padded up to a multiple of 8, as the
    model is built), and `max_seq_length` positions need as many position embeddings."""
    from modeling import BertConfig

    check_input_file(config_file, config_flag)
    config = BertConfig.from_json_file(config_file)
    if vocab_file is not None:
        from tokenization import load_vocab

        check_input_file(vocab_file, "--vocab_file")
        tokens = max(load_vocab(vocab_file).values()) + 1  # ids are line numbers
        if tokens > config.padded_vocab_size:
            raise UsageError(
                f"--vocab_file {vocab_file} has {tokens} tokens, more than the "
                f"{config.padded_vocab_size} embedding rows of {config_flag} {config_file} "
                f"(vocab_size {config.vocab_size}); use the vocabulary the model was made for"
            )
    if max_seq_length is not None and max_seq_length > config.max_position_embeddings:
        raise UsageError(
            f"{seq_flag} {max_seq_length} is longer than the model's "
            f"{config.max_position_embeddings} positions (max_position_embeddings of "
            f"{config_flag} {config_file})"
        )
    return config


def require(module: str, install: str) -> ModuleType:
    """Import an optional package, or raise a MissingDependency saying how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0]:
            raise  # the package is there but broken: a bug to see with --debug
        raise MissingDependency(f"needs the {module} package ({install})") from None


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


def describe(err: BaseException) -> str:
    """An unexpected exception in one line: its type and message (an OSError with its file)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, FileNotFoundError) and str(err):  # ours: "checkpoint not found: PATH"
        return str(err)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else 'no message'}"


def run_main(
    prog: str,
    parse: Callable[[Sequence[str] | None], argparse.Namespace],
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
    *,
    log_level: int = logging.INFO,
) -> int:
    """Parse, run `body(args)`, and turn whatever ends it into an exit status.

    0 on success (or what `body` returns); 2 for a bad flag (argparse or `UsageError`); 1 for
    an expected error (`BertError`), one line on stderr; 130 on Ctrl-C; 1 for anything else,
    one line plus how to see the traceback (not for a FileNotFoundError: a missing file, not a
    bug). Progress bars left open are closed first, so the line starts a line of its own. The
    process group is destroyed in every case.
    `log_level` is where logging starts (a quiet CLI passes logging.WARNING)."""
    configure_logging(log_level)
    try:
        args = parse(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a bad flag (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    except BertError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        describe_env = getattr(args, "print_env", None)  # set by --print_env, like --help
        if describe_env is not None:
            import environment

            environment.print_report(describe_env(args))
            return 0
        status = body(args)
        return 0 if status is None else int(status)
    except BertError as err:
        _end_progress_bars()
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        _end_progress_bars()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        _end_progress_bars()
        if debug:
            traceback.print_exc()
            hint = ""
        elif isinstance(err, FileNotFoundError):  # a missing file, not a bug to debug
            hint = ""
        else:
            hint = f" (rerun with --debug or {DEBUG_ENV}=1 for the traceback)"
        print(f"{prog}: error: {describe(err)}{hint}", file=sys.stderr)
        return 1
    finally:
        _destroy_process_group()


def _end_progress_bars() -> None:
    """Close the tqdm bars an error left open, so the error starts a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _destroy_process_group() -> None:
    """Tear down the process group, if the run made one (only a run that imported torch can)."""
    if "torch" in sys.modules:
        import distributed

        distributed.cleanup()
