"""The environment report: what a run runs on, for bug reports and for comparing runs.

Owns gathering it (software versions, devices, the precision path and which fast kernels the run
uses), writing it to a log (one line per key through `logging`, and one dllogger `PARAMETER`
record with the same keys), printing it for `--print_env`, and that flag itself. The keys are
`KEYS`, always all of them, in that order. What the run chose comes in a `RunChoices`, filled
from the functions the run itself uses (`runtime.setup_run`, `inference.py`); the optimizer and
attention kernel are worked out with the functions that build them. Every query is defensive: a
failed one gives "unavailable" and never stops a run (`_ask`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from logger import MetricLogger
    from modeling import BertConfig

logger = logging.getLogger("bert")

UNAVAILABLE = "unavailable"

#: Every key of the report, in order (the JSON record and the printed lines).
KEYS = (
    "python_version",
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "nccl_version",
    "git_commit",
    "device",
    "device_names",
    "device_capability",
    "torch_threads",
    "world_size",
    "dist_backend",
    "precision",
    "tf32",
    "optimizer",
    "compile",
    "attention",
    "sdpa_backends",
    "sdpa_kernel",
    "apex_version",
    "torchao_version",
    "dllogger_version",
)

#: The most of a config file read for the report (real configs are under 1 kB).
CONFIG_BYTES_LIMIT = 1 << 20

REPOSITORY = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class RunChoices:
    """What a run decided, as the report shows it, filled by each script from the same
    functions its run uses (`runtime.setup_run` for the training scripts, `inference.py` for
    itself); the optimizer and attention kernel are asked of `optimization.lamb_impl`,
    `optimization.adamw_fused`, the config's `attention_impl` and the SDPA dispatcher (a batch
    shaped like the run's).

    `precision` is the autocast path ("fp32", "bf16", "fp16", "fp8"); `tf32` whether fp32
    matmuls may use TF32; `optimizer` a description ("none" when the script trains nothing);
    `compile` the torch.compile backend of the encoder layers, or "off"; `config` the model
    config when known (for the attention path); `training` whether attention runs with dropout.
    """

    device: torch.device
    precision: str
    tf32: bool
    world_size: int = 1
    dist_backend: str = "none"
    optimizer: str = "none"
    compile: str = "off"
    config: BertConfig | None = None
    training: bool = True


# ------------------------------------------------------------------------------- choices


def default_device(no_cuda: bool) -> torch.device:
    """The device a single process picks (`distributed.init_distributed`'s rule)."""
    if not no_cuda and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def read_config(path: str | os.PathLike | None) -> BertConfig | None:
    """The model config at `path`, or None when there is none or it cannot be read (the run's
    own checks report a bad config; the report only says it does not know)."""
    from modeling import BertConfig

    if not path:
        return None
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > CONFIG_BYTES_LIMIT:
            return None
        return BertConfig.from_json_file(path)
    except Exception:  # the report never fails: a config it cannot read is "unknown"
        return None


def optimizer_of(args: argparse.Namespace, device: torch.device) -> str:
    """The optimizer the training scripts build: LAMB in pre-training (the script with
    `--optimizer_impl`), AdamW in fine-tuning; a reason instead when the choice cannot run."""
    from errors import BertError
    from optimization import adamw_fused, lamb_impl

    impl = getattr(args, "optimizer_impl", None)
    if impl is None:
        return "AdamW (fused)" if adamw_fused(device) else "AdamW (foreach)"
    try:
        chosen = lamb_impl(impl, device.type == "cuda", _installed("apex"))
    except (BertError, ValueError) as err:
        return f"{UNAVAILABLE} ({err})"
    return {
        "apex": "LAMB (apex FusedLAMB)",
        "compiled": "LAMB (compiled step)",
        "torch": "LAMB (torch multi-tensor)",
    }[chosen]


def training_choices(
    args: argparse.Namespace,
    device: torch.device,
    precision: str,
    tf32: bool,
    world_size: int = 1,
    dist_backend: str = "none",
) -> RunChoices:
    """The choices of a training script from its runtime flags and what its setup decided."""
    from training import compile_backend

    return RunChoices(
        device=device,
        precision=precision,
        tf32=tf32,
        world_size=world_size,
        dist_backend=dist_backend,
        optimizer=optimizer_of(args, device),
        compile=compile_backend() if getattr(args, "compile", False) else "off",
        config=read_config(getattr(args, "config_file", None)),
        training=True,
    )


# ------------------------------------------------------------------------------- queries


def _ask(query: Callable[[], Any]) -> Any:
    """`query()`, or "unavailable" when it fails in any way."""
    try:
        return query()
    except Exception:  # a report about a broken installation must still be written
        return UNAVAILABLE


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def package_version(name: str) -> str:
    """The installed version of an optional package, "none" when it is not installed; found
    without importing it."""
    if not _installed(name):
        return "none"
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:  # importable, but installed without metadata
        return "installed (version unknown)"


def nccl_version() -> str:
    if not (torch.distributed.is_available() and torch.distributed.is_nccl_available()):
        return "none"
    version = torch.cuda.nccl.version()
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def cudnn_version() -> str:
    version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return "none" if version is None else str(version)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_names(device: torch.device) -> list[str]:
    """Every visible GPU's name on a CUDA run (the run uses `device`); the CPU's otherwise."""
    if device.type == "cuda":
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [cpu_name()]


def device_capability(device: torch.device) -> str:
    if device.type != "cuda":
        return "none"
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}.{minor}"


#: SDPA backends per device type, with the torch switch that enables each (the CPU dispatcher
#: reads the flash and math switches too).
SDPA_SWITCHES = {
    "cuda": (
        ("flash", "flash_sdp_enabled"),
        ("mem_efficient", "mem_efficient_sdp_enabled"),
        ("cudnn", "cudnn_sdp_enabled"),
        ("math", "math_sdp_enabled"),
    ),
    "cpu": (("flash", "flash_sdp_enabled"), ("math", "math_sdp_enabled")),
}


def sdpa_backends(device: torch.device) -> list[str]:
    """The SDPA backends torch has enabled for the device type (`torch.backends.cuda.*`)."""
    switches = SDPA_SWITCHES.get(device.type, ())
    return [name for name, switch in switches if getattr(torch.backends.cuda, switch, bool)()]


#: BERT's attention dropout, for a report without a config (BertConfig's default too).
DEFAULT_ATTENTION_DROPOUT = 0.1


def sdpa_kernel(choices: RunChoices) -> str:
    """The kernel torch's SDPA dispatcher picks for the run's attention call: the run's dtype,
    heads and head size, a padding mask [B, 1, 1, S] and the training dropout, on its device.
    The choice is asked for, not computed, so nothing runs; it depends on the sequence length
    and batch only at the margins (the probe uses 128 tokens)."""
    from torch.nn.attention import SDPBackend

    from training import PrecisionStack

    config = choices.config
    heads, head_size = (config.num_attention_heads, config.head_size) if config else (12, 64)
    dropout = config.attention_probs_dropout_prob if config else DEFAULT_ATTENTION_DROPOUT
    dropout = dropout if choices.training else 0.0
    dtype = PrecisionStack(choices.precision, choices.device, None).dtype or torch.float32
    batch, seq = 2, 128
    query = torch.zeros(batch, seq, heads, head_size, dtype=dtype, device=choices.device)
    query = query.transpose(1, 2)  # [B, nh, S, hd], strided as the model's heads are
    mask = torch.zeros(batch, 1, 1, seq, dtype=dtype, device=choices.device)
    chosen = torch._fused_sdp_choice(
        query, query, query, attn_mask=mask, dropout_p=dropout, is_causal=False
    )
    names = {int(value): name.lower() for name, value in SDPBackend.__members__.items()}
    return names.get(int(chosen), str(chosen))


def attention_impl(config: BertConfig | None) -> str:
    return config.attention_impl if config is not None else "unknown"


# ------------------------------------------------------------------------------- git


_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def _read_small(path: Path, limit: int = 1 << 16) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read(limit)


def _git_dir(root: Path) -> Path:
    """`root/.git`, or where a worktree's or submodule's `.git` file points."""
    git = root / ".git"
    if git.is_file():
        text = _read_small(git).strip()
        if not text.startswith("gitdir:"):
            raise ValueError("not a gitdir file")
        git = (root / text.removeprefix("gitdir:").strip()).resolve()
    return git


def git_commit(root: str | os.PathLike = REPOSITORY) -> str:
    """The commit checked out at `root`, read from its `.git` files (loose refs, packed refs,
    worktrees, a detached HEAD) without running git; "unknown" when it cannot be told. Nothing
    read is returned unless it looks like a commit id, and a ref leaving `refs/` is not
    followed."""
    try:
        git = _git_dir(Path(root))
        head = _read_small(git / "HEAD").strip()
        if _COMMIT.fullmatch(head):
            return head
        ref = head.removeprefix("ref:").strip()
        if not head.startswith("ref:") or not ref.startswith("refs/") or ".." in ref.split("/"):
            return "unknown"
        common = git
        if (git / "commondir").is_file():  # a worktree: branches live in the main .git
            common = (git / _read_small(git / "commondir").strip()).resolve()
        for base in dict.fromkeys((git, common)):
            if (base / ref).is_file():
                commit = _read_small(base / ref).strip()
                return commit if _COMMIT.fullmatch(commit) else "unknown"
        if (common / "packed-refs").is_file():
            for line in _read_small(common / "packed-refs", 1 << 24).splitlines():
                commit, _, name = line.partition(" ")
                if name.strip() == ref and _COMMIT.fullmatch(commit):
                    return commit
    except (OSError, ValueError, RuntimeError):
        pass
    return "unknown"


# ------------------------------------------------------------------------------- report


def collect(choices: RunChoices) -> dict[str, Any]:
    """The report of `choices` on this machine: every key of `KEYS`, JSON-ready values."""
    device = choices.device
    sdpa = choices.config is None or choices.config.attention_impl == "sdpa"
    report = {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
        "cudnn_version": _ask(cudnn_version),
        "nccl_version": _ask(nccl_version),
        "git_commit": _ask(git_commit),
        "device": str(device),
        "device_names": _ask(lambda: device_names(device)),
        "device_capability": _ask(lambda: device_capability(device)),
        "torch_threads": _ask(torch.get_num_threads),
        "world_size": choices.world_size,
        "dist_backend": choices.dist_backend,
        "precision": choices.precision,
        "tf32": choices.tf32,
        "optimizer": choices.optimizer,
        "compile": choices.compile,
        "attention": attention_impl(choices.config),
        "sdpa_backends": _ask(lambda: sdpa_backends(device)) if sdpa else "unused",
        "sdpa_kernel": _ask(lambda: sdpa_kernel(choices)) if sdpa else "unused",
        "apex_version": _ask(lambda: package_version("apex")),
        "torchao_version": _ask(lambda: package_version("torchao")),
        "dllogger_version": _ask(lambda: package_version("dllogger")),
    }
    return {key: report[key] for key in KEYS}


def format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def format_lines(report: Mapping[str, Any]) -> list[str]:
    """`key: value` per key, lists joined by commas."""
    return [f"{key}: {format_value(value)}" for key, value in report.items()]


def log_environment(choices: RunChoices, metrics: MetricLogger | None = None) -> None:
    """The report as log lines (INFO), and as one dllogger PARAMETER record when there is a
    metrics log (its stdout line left out: the log lines say the same). Nothing is gathered
    when neither would show it."""
    if metrics is None and not logger.isEnabledFor(logging.INFO):
        return
    report = collect(choices)
    for line in format_lines(report):
        logger.info("environment: %s", line)
    if metrics is not None:
        metrics.log("PARAMETER", report, verbose=False)


# ------------------------------------------------------------------------------- --print_env


class PrintEnvironment(argparse.Action):
    """`--print_env`: like `--help`, it works without the required flags, which it makes
    optional; the other flags still parse, so the report shows the run they describe.
    The parsed `print_env` is `describe`; `cli.run_main` prints the report instead of
    running."""

    def __init__(self, option_strings, dest, describe, help=None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)
        self.describe = describe

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        for action in parser._actions:
            action.required = False
        for group in parser._mutually_exclusive_groups:
            group.required = False
        setattr(namespace, self.dest, self.describe)


def add_print_env_argument(
    parser: argparse.ArgumentParser, describe: Callable[[argparse.Namespace], RunChoices]
) -> None:
    """Declare `--print_env` (also `--print-env`); `describe(args)` gives what the run would
    choose for the other flags, without starting anything."""
    parser.add_argument(
        "--print_env",
        "--print-env",
        dest="print_env",
        action=PrintEnvironment,
        describe=describe,
        help="print the environment report (versions, devices, precision, fast kernels) for "
        "these flags and exit; the required flags may be left out",
    )


def print_report(choices: RunChoices) -> None:
    print("\n".join(format_lines(collect(choices))), flush=True)
