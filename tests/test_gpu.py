"""GPU checks of the model (skipped without CUDA): the fused attention kernels agree with the
explicit path, bf16 and fp16 training steps stay finite, outputs match Hugging Face on the
device, the compiled LAMB step equals the multi-tensor one, and fp8 training (Hopper and newer,
with torchao) tracks bf16. `scripts/gpu_check.sh` runs these on a GPU machine."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from checkpoint import load_state_dict_into
from logger import read_dllogger_file
from modeling import BertConfig, BertForPreTraining, BertForQuestionAnswering, BertModel
from optimization import CompiledLamb, Lamb, parameter_groups
from tests.support import NEEDS_CUDA, REPO_ROOT, random_batch
from training import fp8_unavailable

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason=NEEDS_CUDA),
]


def base_config(**changes) -> BertConfig:
    return BertConfig.from_json_file(REPO_ROOT / "bert_configs" / "base.json").replace(**changes)


def cuda_batch(batch: int = 8, seq: int = 128):
    return tuple(t.cuda() for t in random_batch(batch, seq))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sdpa_kernels_match_eager_path_under_autocast(dtype):
    torch.manual_seed(0)
    sdpa = BertModel(base_config()).cuda().eval()
    eager = BertModel(base_config(attention_impl="eager")).cuda().eval()
    eager.load_state_dict(sdpa.state_dict())
    input_ids, token_type_ids, attention_mask = cuda_batch()
    with torch.no_grad():
        reference = eager.float()(input_ids, token_type_ids, attention_mask)[0]
        with torch.autocast("cuda", dtype=dtype):
            fused = sdpa(input_ids, token_type_ids, attention_mask)[0]
    real = attention_mask.bool()
    error = (fused.float() - reference)[real].abs().max().item()
    assert error < (0.15 if dtype == torch.bfloat16 else 0.03), error


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_training_steps_are_finite_and_learn(dtype):
    torch.manual_seed(0)
    model = BertForPreTraining(base_config()).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    input_ids, token_type_ids, attention_mask = cuda_batch()
    labels = torch.full_like(input_ids, -1)
    labels[:, 1:20] = input_ids[:, 1:20]
    nsp = torch.zeros(input_ids.shape[0], dtype=torch.long, device="cuda")
    losses = []
    for _ in range(8):
        with torch.autocast("cuda", dtype=dtype):
            loss = model(input_ids, token_type_ids, attention_mask, labels, nsp)[0]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0], losses


def test_masked_only_head_matches_dense_head_on_gpu():
    torch.manual_seed(0)
    model = BertForPreTraining(base_config()).cuda().eval()
    input_ids, token_type_ids, attention_mask = cuda_batch()
    labels = torch.full_like(input_ids, -1)
    labels[:, 5] = input_ids[:, 5]
    with torch.no_grad():
        sparse, _ = model(input_ids, token_type_ids, attention_mask, labels)
        model.sequence_output_is_dense = False
        dense, _ = model(input_ids, token_type_ids, attention_mask)
    torch.testing.assert_close(sparse, dense[labels != -1], rtol=1e-4, atol=1e-4)


def test_question_answering_matches_hugging_face_on_gpu():
    import transformers

    torch.manual_seed(0)
    config = base_config(vocab_pad_multiple=1)
    hf_config = transformers.BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        attn_implementation="sdpa",
    )
    reference = transformers.BertForQuestionAnswering(hf_config).cuda().eval()
    ours = BertForQuestionAnswering(config).cuda().eval()
    load_state_dict_into(ours, reference.state_dict(), "hf")
    input_ids, token_type_ids, attention_mask = cuda_batch(4, 384)
    with torch.no_grad():
        start, end = ours(input_ids, token_type_ids, attention_mask)
        expected = reference(
            input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask
        )
    real = attention_mask.bool()
    assert (start - expected.start_logits)[real].abs().max() < 1e-3
    assert (end - expected.end_logits)[real].abs().max() < 1e-3


def test_compiled_lamb_equals_lamb_on_the_gpu():
    torch.manual_seed(0)
    model = BertForPreTraining(base_config()).cuda()
    twin = BertForPreTraining(base_config()).cuda()
    twin.load_state_dict(model.state_dict())
    optimizers = [
        Lamb(parameter_groups(model), lr=1e-3),
        CompiledLamb(parameter_groups(twin), lr=1e-3),
    ]
    for step in range(4):
        generator = torch.Generator(device="cuda").manual_seed(step)
        for a, b in zip(model.parameters(), twin.parameters(), strict=True):
            a.grad = torch.randn(a.shape, device="cuda", generator=generator) * 1e-2
            b.grad = a.grad.clone()
        for optimizer in optimizers:
            optimizer.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)


@pytest.mark.skipif(
    torch.cuda.is_available() and fp8_unavailable(torch.device("cuda")) is not None,
    reason="fp8 needs compute capability 9.0 and torchao",
)
def test_fp8_training_tracks_bf16(tmp_path, sample_shards):
    """BERT-base, 300 LAMB steps of batch 32 on the sample's phase-1 shards, in bf16 and in fp8
    with the same seed and data: the mean loss of the last 50 steps differs by at most 3% and
    both fall by more than 1.0 from the start."""
    curves = {}
    for precision in ("bf16", "fp8"):
        out = tmp_path / precision
        result = subprocess.run(
            [
                sys.executable,
                "run_pretraining.py",
                "--do_train",
                "--disable_progress_bar",
                f"--input_dir={sample_shards / 'phase1'}",
                f"--output_dir={out}",
                f"--config_file={REPO_ROOT / 'bert_configs' / 'base.json'}",
                f"--json-summary={out}/log.json",
                "--train_batch_size=32",
                "--max_steps=300",
                "--learning_rate=2e-3",
                "--warmup_proportion=0.1",
                "--log_freq=10",
                "--skip_checkpoint",
                f"--precision={precision}",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        events = read_dllogger_file(out / "log.json")
        curves[precision] = [
            e["data"]["average_loss"] for e in events if "average_loss" in e.get("data", {})
        ]
    bf16, fp8 = (sum(c[-5:]) / 5 for c in (curves["bf16"], curves["fp8"]))
    assert abs(fp8 - bf16) <= 0.03 * bf16, curves
    assert all(c[-1] < c[0] - 1.0 for c in curves.values()), curves
