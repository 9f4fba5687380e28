"""Quick-start demo of the foundation: tokenizer, model, checkpoint and Hugging Face export.

    python demo.py [--output_dir results/demo] [--steps 30]

On the bundled sample text (`data/sample/demo.txt`) it tokenizes sentences, builds sentence pairs
with masked tokens, trains a tiny BERT for a few steps on the CPU (the loss must fall), saves an
NVIDIA-layout checkpoint, reloads it through the universal loader and checks the outputs match,
then exports a Hugging Face folder. It runs in seconds and needs no download.

The pair and masking logic here is deliberately minimal (consecutive or random sentence pairs,
[MASK] only); the real instance generation is `create_pretraining_data.py` (spec §4.1).
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

import torch

from checkpoint import load_model_weights, save_hf_folder, save_nvidia_checkpoint
from modeling import BertConfig, BertForPreTraining
from tokenization import BertTokenizer

REPO_ROOT = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_file", default=str(REPO_ROOT / "data/sample/demo.txt"))
    parser.add_argument("--vocab_file", default=str(REPO_ROOT / "vocab/vocab"))
    parser.add_argument("--config_file", default=str(REPO_ROOT / "bert_configs/tiny.json"))
    parser.add_argument("--output_dir", default="results/demo")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def make_batch(
    sentences: list[list[str]], tokenizer: BertTokenizer, rng: random.Random, max_len: int = 64
) -> dict[str, torch.Tensor]:
    """Sentence pairs `[CLS] A [SEP] B [SEP]`, half with a random B, 15% of tokens masked."""
    rows = []
    for i in range(len(sentences) - 1):
        is_random = rng.random() < 0.5
        second = sentences[rng.randrange(len(sentences))] if is_random else sentences[i + 1]
        first, second = sentences[i][: max_len // 2 - 2], second[: max_len // 2 - 1]
        tokens = ["[CLS]", *first, "[SEP]", *second, "[SEP]"]
        segments = [0] * (len(first) + 2) + [1] * (len(second) + 1)
        ids = tokenizer.convert_tokens_to_ids(tokens)
        labels = [-1] * len(ids)
        candidates = [j for j, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]")]
        for j in rng.sample(candidates, max(1, round(0.15 * len(tokens)))):
            labels[j] = ids[j]
            ids[j] = tokenizer.vocab["[MASK]"]
        rows.append((ids, segments, labels, int(is_random)))
    seq = max(len(r[0]) for r in rows)

    def padded(values: list[int], fill: int) -> list[int]:
        return values + [fill] * (seq - len(values))

    return {
        "input_ids": torch.tensor([padded(r[0], 0) for r in rows]),
        "token_type_ids": torch.tensor([padded(r[1], 0) for r in rows]),
        "attention_mask": torch.tensor([padded([1] * len(r[0]), 0) for r in rows]),
        "masked_lm_labels": torch.tensor([padded(r[2], -1) for r in rows]),
        "next_sentence_labels": torch.tensor([r[3] for r in rows]),
    }


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    started = time.perf_counter()

    tokenizer = BertTokenizer(args.vocab_file, do_lower_case=True)
    lines = [line.strip() for line in Path(args.input_file).read_text("utf-8").splitlines()]
    sentences = [tokenizer.tokenize(line) for line in lines if line]
    print(f"tokenized {len(sentences)} sentences, {sum(map(len, sentences))} WordPiece tokens")
    print(f"  {lines[0][:60]}...\n  -> {sentences[0][:12]}...")

    config = BertConfig.from_json_file(args.config_file)
    model = BertForPreTraining(config)
    count = sum(p.numel() for p in model.parameters())
    print(
        f"model: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"vocab {config.vocab_size} padded to {config.padded_vocab_size}, {count:,} parameters"
    )

    batch = make_batch(sentences, tokenizer, rng)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model.train()
    losses = []
    for _ in range(args.steps):
        loss, _, _ = model(**batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    print(
        f"trained {args.steps} steps on {len(batch['input_ids'])} pairs: "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    )
    if not losses[-1] < losses[0]:
        raise SystemExit("demo: the loss did not fall; something is wrong with this install")

    output_dir = Path(args.output_dir)
    checkpoint_file = output_dir / "ckpt_demo.pt"
    save_nvidia_checkpoint(checkpoint_file, model.state_dict(), config)
    reloaded = BertForPreTraining(config)
    load_model_weights(reloaded, checkpoint_file, strict=True)
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        same = torch.equal(model(**batch)[0], reloaded(**batch)[0])
    print(f"saved {checkpoint_file} and reloaded it: identical loss = {same}")

    hf_dir = output_dir / "hf"
    shutil.rmtree(hf_dir, ignore_errors=True)  # the demo's own previous export
    save_hf_folder(hf_dir, model.state_dict(), config, vocab_file=args.vocab_file)
    print(f"exported a Hugging Face folder to {hf_dir}")
    print(f"demo finished in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
