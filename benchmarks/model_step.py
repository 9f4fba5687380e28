"""Pre-training step of our model vs Hugging Face `transformers`, side by side in one process.

    python -m benchmarks.model_step --config bert_configs/base.json --batch 8 --seq 128 \
        --masked 20 --dtype fp32 --steps 10 [--json results/model_step.json]

One step = forward, loss, backward and `torch.optim.AdamW(fused=True)` (fused on CUDA; foreach
on CPU). Both models get the same config, weights, batch, precision and optimizer; HF runs its
SDPA attention and its own loss over the padded batch. Prints the median step time over
`--steps` steps after `--warmup` steps, sequences/s, the ratio ours / HF and peak CUDA memory.

Inputs are random token ids at full length with `--masked` positions per sequence (the phase-1
shape is 128/20, phase 2 is 512/80). Run from the repository root. Benchmarks on real-text
shards are issue 7's harness.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from checkpoint import load_state_dict_into
from modeling import BertConfig, BertForPreTraining

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="bert_configs/base.json")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--masked", type=int, default=20)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser.parse_args()


def make_batch(args: argparse.Namespace, vocab_size: int, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, vocab_size, (args.batch, args.seq), generator=generator)
    labels = torch.full_like(input_ids, -1)
    for row in range(args.batch):
        positions = torch.randperm(args.seq - 2, generator=generator)[: args.masked] + 1
        labels[row, positions] = input_ids[row, positions]
    batch = {
        "input_ids": input_ids,
        "token_type_ids": (torch.arange(args.seq) >= args.seq // 2).long().expand_as(input_ids),
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "next_sentence_labels": torch.randint(0, 2, (args.batch,), generator=generator),
    }
    return {k: v.contiguous().to(device) for k, v in batch.items()}


def time_steps(step, args: argparse.Namespace, device: torch.device) -> list[float]:
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    args = parse_args()
    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    config = BertConfig.from_json_file(args.config).replace(vocab_pad_multiple=1)
    hf_config = transformers.BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    hf = transformers.BertForPreTraining(hf_config).to(device).train()
    ours = BertForPreTraining(config).to(device).train()
    load_state_dict_into(ours, hf.state_dict(), "hf", strict=True)
    batch = make_batch(args, config.vocab_size, device)
    dtype = DTYPES[args.dtype]
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}

    def make_step(model, forward):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, **fused)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

        def step():
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss = forward(model)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

        return step

    def ours_forward(model):
        return model(
            batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
            batch["labels"], batch["next_sentence_labels"],
        )[0]  # fmt: skip

    def hf_forward(model):
        return model(
            input_ids=batch["input_ids"],
            token_type_ids=batch["token_type_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"].masked_fill(batch["labels"] == -1, -100),
            next_sentence_label=batch["next_sentence_labels"],
        ).loss

    results = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **vars(args),
    }
    for name, model, forward in (("hf", hf, hf_forward), ("ours", ours, ours_forward)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = time_steps(make_step(model, forward), args, device)
        median = statistics.median(times)
        results[name] = {
            "median_step_s": median,
            "sequences_per_s": args.batch / median,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30
            if device.type == "cuda"
            else None,
        }
    results["ratio_ours_over_hf"] = (
        results["ours"]["sequences_per_s"] / results["hf"]["sequences_per_s"]
    )
    print(
        f"device {results['device']}, torch {results['torch']}, {args.config}, batch {args.batch}, "
        f"seq {args.seq}, masked {args.masked}, {args.dtype}, median of {args.steps} steps"
    )
    for name in ("hf", "ours"):
        r = results[name]
        memory = f", peak {r['peak_memory_gib']:.2f} GiB" if r["peak_memory_gib"] else ""
        print(
            f"  {name:5s} {r['sequences_per_s']:9.1f} seq/s  "
            f"({r['median_step_s'] * 1e3:.1f} ms/step{memory})"
        )
    print(f"  ratio ours / hf: {results['ratio_ours_over_hf']:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
