"""The benchmark harness: ours vs Hugging Face `transformers` (SDPA), side by side, one process.

    python -m benchmarks.harness [--config bert_configs/base.json] [--dtype fp32|bf16|fp16]
        [--sections pretrain squad_train squad_infer loader tokenizer] [--steps 10]
        [--json benchmarks/results/harness.json]

Owns the comparison: each section (`SECTIONS`) times the same config, weights (transformers'
seeded init copied into ours), batch, precision and data on both sides, as the median of
`--steps` steps after `--warmup`, with peak CUDA memory on a GPU. Ours runs as shipped (trimmed
batches, masked-only MLM head) against transformers on padded batches. CPU default: BERT-base
fp32; GPU: `--config bert_configs/large.json --dtype bf16` (or fp16). The models, loader and
tokenizer are the library's; `benchmarks.squad_inference` times the SQuAD prediction path.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import cli
from benchmarks import sync
from checkpoint import load_state_dict_into
from fileio import atomic_write_text
from modeling import BertConfig, BertForPreTraining, BertForQuestionAnswering
from optimization import make_adamw, make_lamb, parameter_groups
from pretraining_data import PretrainingDataLoader, training_files
from training import (
    configure_tf32,
    make_precision,
    maybe_compile,
    padding_multiple,
    trim_multiple,
    trim_padding,
)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
#: pretrain: forward, loss, backward and AdamW (fused on CUDA, foreach on CPU) at the phase-1
#: (128, 20 masked) and phase-2 (512, 80) shapes on shards of the bundled real text (whose phase-2
#: sequences are often much shorter than 512), transformers' BertForPreTraining with its own loss,
#: plus ours with LAMB (and with --compile: compiled layers, with AdamW and the compiled LAMB);
#: squad_train: a fine-tuning step at 384 on the bundled training sample's features; squad_infer:
#: features to answers on the real dev set (`--squad_questions` first questions, 0 for all
#: 10,570), predictions must match; loader: our HDF5 loader's samples/s at both shapes;
#: tokenizer: tokens/s of our Python and fast backends vs transformers' BertTokenizer.
SECTIONS = ("pretrain", "squad_train", "squad_infer", "loader", "tokenizer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "bert_configs" / "base.json"))
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--steps", type=cli.positive_int, default=10)
    parser.add_argument("--warmup", type=cli.non_negative_int, default=2)
    parser.add_argument("--batch_p1", type=cli.batch_size, default=8)
    parser.add_argument("--batch_p2", type=cli.batch_size, default=4)
    parser.add_argument("--batch_squad", type=cli.batch_size, default=8)
    parser.add_argument(
        "--squad_questions", type=cli.non_negative_int, default=300, help="0: the whole dev set"
    )
    parser.add_argument("--shards", type=Path, default=REPO / "results" / "sample_shards")
    parser.add_argument(
        "--squad_dev", type=Path, default=SHARED / "squad" / "v1.1" / "dev-v1.1.json"
    )
    parser.add_argument(
        "--bin_size", type=cli.seq_length, help="phase 2: batches from bins of lengths"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="pretrain: add rows for ours with compiled layers (AdamW, and the compiled LAMB)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--profile", type=Path, help="write a torch.profiler table of ours' phase-1 step here"
    )
    parser.add_argument(
        "--profile_row", default="ours + AdamW", help="the phase-1 row --profile profiles"
    )
    return parser.parse_args(argv)


class Bench:
    """Shared state: device, precision, the result rows."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        configure_tf32(True)
        self.precision = make_precision(args.dtype, self.device)
        self.config = BertConfig.from_json_file(args.config).replace(vocab_pad_multiple=1)
        self.rows: list[dict] = []
        name = torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu"
        self.info = {
            "device": name,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "config": args.config,
            "dtype": args.dtype,
        }

    def time(self, step: Callable[[int], None]) -> tuple[float, float | None]:
        """Median seconds of a step over the timed steps; peak GiB on CUDA."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(self.args.warmup + self.args.steps):
            sync(self.device)
            start = time.perf_counter()
            step(i)
            sync(self.device)
            if i >= self.args.warmup:
                times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else None
        return statistics.median(times), peak

    def add(self, section: str, name: str, rate: float, unit: str, peak=None, **extra) -> None:
        row = {
            "section": section,
            "name": name,
            "rate": rate,
            "unit": unit,
            "peak_gib": peak,
            **extra,
        }
        self.rows.append(row)
        memory = f"  peak {peak:.2f} GiB" if peak else ""
        print(f"{section:12s} {name:34s} {rate:12,.1f} {unit}{memory}", flush=True)

    def hf_config(self):
        import transformers

        c = self.config
        return transformers.BertConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            max_position_embeddings=c.max_position_embeddings,
            attn_implementation="sdpa",
        )

    def optimizer(self, model, lamb: bool | str = False):
        """AdamW, or LAMB (`lamb` True: the multi-tensor step; a string: that implementation)."""
        groups = parameter_groups(model)
        if not lamb:
            return make_adamw(groups, 1e-5, self.device)
        return make_lamb(groups, 1e-5, lamb if isinstance(lamb, str) else "torch")

    def step_fn(self, model, optimizer, loss_of: Callable[[int], torch.Tensor]) -> Callable:
        def step(i: int) -> None:
            with self.precision.autocast():
                loss = loss_of(i)
            self.precision.backward(loss)
            if self.precision.scaler:
                self.precision.scaler.step(optimizer)
                self.precision.scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    def ratio(self, section: str, ours: str, theirs: str) -> float:
        rates = {row["name"]: row["rate"] for row in self.rows if row["section"] == section}
        value = rates[ours] / rates[theirs]
        self.rows.append({"section": section, "name": f"ratio {ours} / {theirs}", "rate": value})
        print(f"{section:12s} {'ratio ' + ours + ' / ' + theirs:34s} {value:12.2f}x", flush=True)
        return value


# ------------------------------------------------------------------------------- sections


def ensure_sample_shards(folder: Path) -> Path:
    if not (folder / "phase1").is_dir() or not (folder / "phase2").is_dir():
        subprocess.run(
            ["bash", str(REPO / "scripts" / "make_sample_shards.sh"), str(folder)],
            check=True,
            capture_output=True,
        )
    return folder


def pretrain_section(bench: Bench) -> None:
    import transformers

    shards = ensure_sample_shards(bench.args.shards)
    # As shipped, no length bins (the launcher's default); --bin_size tries them at phase 2.
    for phase, batch_size, bins in (
        ("phase1", bench.args.batch_p1, None),
        ("phase2", bench.args.batch_p2, bench.args.bin_size),
    ):
        files = training_files(shards / phase)
        loader = PretrainingDataLoader(files, batch_size, seed=3, bin_size=bins)
        stream = iter(loader)
        count = bench.args.warmup + bench.args.steps
        batches = [next(stream) for _ in range(count)]
        multiple = padding_multiple(bench.device)
        torch.manual_seed(0)
        hf = transformers.BertForPreTraining(bench.hf_config()).to(bench.device).train()
        ours = BertForPreTraining(bench.config).to(bench.device).train()
        load_state_dict_into(ours, hf.state_dict(), "hf")
        padded = [[t.to(bench.device) for t in b] for b in batches]
        trimmed = [[t.to(bench.device) for t in trim_padding(b, b[2], multiple)] for b in batches]
        masked = [int((b[3] != -1).sum()) for b in batches]
        tokens = sum(int(b[2].sum()) for b in batches) / count
        width = sum(t[0].shape[1] for t in trimmed) / count

        def hf_loss(i, hf=hf, padded=padded):
            ids, seg, mask, labels, nsp = padded[i]
            labels = labels.masked_fill(labels == -1, -100)  # transformers' ignore index
            return hf(
                input_ids=ids,
                token_type_ids=seg,
                attention_mask=mask,
                labels=labels,
                next_sentence_label=nsp,
            ).loss

        def ours_loss(i, ours=ours, trimmed=trimmed, masked=masked):
            return ours(*trimmed[i], num_masked=masked[i])[0]

        rows = [
            ("transformers + AdamW", hf, hf_loss, False),
            ("ours + AdamW", ours, ours_loss, False),
            ("ours + LAMB", ours, ours_loss, True),
        ]
        if bench.args.compile:  # run_pretraining's --compile: compiled layers, widths of 64
            compiled = maybe_compile(copy.deepcopy(ours), True)
            wide = trim_multiple(bench.device, compiled=True)
            static = [[t.to(bench.device) for t in trim_padding(b, b[2], wide)] for b in batches]

            def compiled_loss(i, compiled=compiled, static=static, masked=masked):
                return compiled(*static[i], num_masked=masked[i])[0]

            rows.append(("ours compiled + AdamW", compiled, compiled_loss, False))
            rows.append(("ours compiled + compiled LAMB", compiled, compiled_loss, "compiled"))
        for name, model, loss_of, lamb in rows:
            step = bench.step_fn(model, bench.optimizer(model, lamb), loss_of)
            seconds, peak = bench.time(step)
            bench.add(
                f"pretrain {phase}",
                name,
                batch_size / seconds,
                "seq/s",
                peak,
                batch=batch_size,
                mean_real_tokens=tokens,
                mean_trimmed_width=width,
            )
            if bench.args.profile and phase == "phase1" and name == bench.args.profile_row:
                profile(bench, step, bench.args.profile)
        bench.ratio(f"pretrain {phase}", "ours + AdamW", "transformers + AdamW")
        del hf, ours


def profile(bench: Bench, step: Callable[[int], None], path: Path) -> None:
    """Three profiled steps; the operators by self time (CUDA time on a GPU) go to `path`."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if bench.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync(bench.device)
    with torch_profile(activities=activities) as prof:
        for i in range(3):
            step(i)
        sync(bench.device)
    key = "self_cuda_time_total" if bench.device.type == "cuda" else "self_cpu_time_total"
    atomic_write_text(path, prof.key_averages().table(sort_by=key, row_limit=30))


def squad_train_features():
    import squad
    from tokenization import BertTokenizer

    path = REPO / "data" / "sample" / "squad" / "v1.1" / "train-v1.1.json"
    examples = squad.read_squad_examples(path, is_training=True)
    tokenizer = BertTokenizer(REPO / "vocab" / "vocab")
    return squad.convert_examples_to_features(examples, tokenizer, is_training=True)


def squad_train_section(bench: Bench) -> None:
    import transformers

    import squad

    features = squad_train_features()
    arrays = {k: torch.from_numpy(v) for k, v in squad.features_to_arrays(features).items()}
    generator = torch.Generator().manual_seed(0)
    count = bench.args.warmup + bench.args.steps
    rows = [
        torch.randperm(len(features), generator=generator)[: bench.args.batch_squad]
        for _ in range(count)
    ]
    keys = ("input_ids", "segment_ids", "input_mask", "start_positions", "end_positions")
    padded = [[arrays[k][r].to(bench.device) for k in keys] for r in rows]
    multiple = padding_multiple(bench.device)
    trimmed = [trim_padding(b, b[2], multiple) for b in padded]
    torch.manual_seed(0)
    hf = transformers.BertForQuestionAnswering(bench.hf_config()).to(bench.device).train()
    ours = BertForQuestionAnswering(bench.config).to(bench.device).train()
    load_state_dict_into(ours, hf.state_dict(), "hf")

    def hf_loss(i):
        ids, seg, mask, start, end = padded[i]
        return hf(
            input_ids=ids,
            token_type_ids=seg,
            attention_mask=mask,
            start_positions=start,
            end_positions=end,
        ).loss

    def ours_loss(i):
        ids, seg, mask, start, end = trimmed[i]
        return ours(ids, seg, mask, start_positions=start, end_positions=end)[0]

    for name, model, loss_of in (
        ("transformers (padded 384)", hf, hf_loss),
        ("ours (trimmed)", ours, ours_loss),
    ):
        step = bench.step_fn(model, bench.optimizer(model), loss_of)
        seconds, peak = bench.time(step)
        bench.add("squad_train", name, bench.args.batch_squad / seconds, "seq/s", peak)
    bench.ratio("squad_train", "ours (trimmed)", "transformers (padded 384)")


def squad_infer_section(bench: Bench) -> None:
    from benchmarks import squad_inference

    if not bench.args.squad_dev.is_file():
        print(f"squad_infer: {bench.args.squad_dev} not found; skipped")
        return
    argv = [
        "--predict_file",
        str(bench.args.squad_dev),
        "--model",
        "random",
        "--config",
        bench.args.config,
        "--hf",
        "--skip_padded",
        "--limit",
        str(bench.args.squad_questions),
        "--dtype",
        bench.args.dtype,
        "--batch",
        str(bench.args.batch_squad),
    ]
    results = squad_inference.run(squad_inference.parse_args(argv))
    for name in ("ours (trimmed)", "transformers (padded 384)"):
        bench.add(
            "squad_infer",
            name,
            results[name]["sequences_per_second"],
            "seq/s",
            identical=results[name]["identical_predictions"],
        )
    bench.ratio("squad_infer", "ours (trimmed)", "transformers (padded 384)")


def loader_section(bench: Bench) -> None:
    from benchmarks import loader_speed

    shards = ensure_sample_shards(bench.args.shards)
    for phase in ("phase1", "phase2"):
        rate, samples = loader_speed.measure(training_files(shards / phase), 64)
        bench.add("loader", f"{phase} (bundled shards)", rate, "samples/s", samples=samples)


def tokenizer_section(bench: Bench) -> None:
    import transformers

    from tokenization import BertTokenizer, fast_backend_available

    text = SHARED / "text" / "wiki.valid.raw"
    if not text.is_file():
        text = REPO / "data" / "sample" / "wikitext2_valid_sentences.txt"
    lines = [line for line in text.read_text(encoding="utf-8").splitlines() if line.strip()]
    vocab = REPO / "vocab" / "vocab"
    candidates = [("ours (python)", BertTokenizer(vocab).tokenize_batch)]
    if fast_backend_available():
        candidates.append(("ours (fast)", BertTokenizer(vocab, backend="fast").tokenize_batch))
    hf = transformers.BertTokenizer(str(vocab), do_lower_case=True)
    candidates.append(("transformers BertTokenizer", lambda texts: [hf.tokenize(t) for t in texts]))
    for name, tokenize in candidates:
        start = time.perf_counter()
        tokens = sum(len(t) for t in tokenize(lines))
        bench.add("tokenizer", name, tokens / (time.perf_counter() - start), "tokens/s")
    bench.ratio("tokenizer", "ours (python)", "transformers BertTokenizer")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    bench = Bench(args)
    print(json.dumps(bench.info))
    sections = {
        "pretrain": pretrain_section,
        "squad_train": squad_train_section,
        "squad_infer": squad_infer_section,
        "loader": loader_section,
        "tokenizer": tokenizer_section,
    }
    for name in args.sections:
        sections[name](bench)
    if args.json:
        atomic_write_text(args.json, json.dumps({"info": bench.info, "rows": bench.rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
