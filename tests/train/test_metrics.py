"""The speed figures of a training step line: model FLOPs per token (Megatron-LM's count) against a hand count,
the bf16 peak table by device name, and MFU from tokens/s."""
from __future__ import annotations

import pytest
import torch

from llmrunner.megatron.model import ModelShape
from llmrunner.train.metrics import Throughput, flops_per_token, peak_bf16_flops

# Qwen3-1.7B (its config.json): 28 layers, hidden 2048, 16 query heads and 8 key/value heads of 128, FFN 6144.
QWEN3_1_7B = ModelShape(vocab_size=151936, hidden_size=2048, num_layers=28, num_attention_heads=16,
                        num_key_value_heads=8, head_dim=128, ffn_hidden_size=6144, rope_theta=1e6, norm_eps=1e-6,
                        tie_embeddings=True, max_position_embeddings=40960, eos_token_id=151643,
                        pad_token_id=151643)


def hand_count(shape: ModelShape, seq: int) -> float:
    """Every matrix product one token goes through, 2 FLOPs a multiply-add, 3x for forward + backward."""
    heads, kv_heads, d, h = shape.num_attention_heads, shape.num_key_value_heads, shape.head_dim, shape.hidden_size
    per_layer = {
        "q": h * heads * d, "k": h * kv_heads * d, "v": h * kv_heads * d, "out": heads * d * h,
        # a token attends to (seq + 1) / 2 positions on average; Megatron rounds that to seq / 2
        "q.k": heads * d * seq / 2, "scores.v": heads * seq / 2 * d,
        "gate": h * shape.ffn_hidden_size, "up": h * shape.ffn_hidden_size, "down": shape.ffn_hidden_size * h,
    }
    multiply_adds = shape.num_layers * sum(per_layer.values()) + h * shape.vocab_size  # + logits
    return 3 * 2 * multiply_adds


def test_flops_per_token_is_the_hand_count() -> None:
    assert flops_per_token(QWEN3_1_7B, 4096) == hand_count(QWEN3_1_7B, 4096) == 11_731_992_576
    small = ModelShape(vocab_size=1000, hidden_size=64, num_layers=3, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=32, ffn_hidden_size=96, rope_theta=1e4, norm_eps=1e-6, tie_embeddings=False,
                       max_position_embeddings=256, eos_token_id=0, pad_token_id=0)
    assert flops_per_token(small, 256) == hand_count(small, 256)


def test_flops_per_token_is_megatrons_formula() -> None:
    """Megatron-LM's `num_floating_point_operations` (dense, GQA, SwiGLU) for one sequence, divided by its length."""
    s, h, layers = 4096, QWEN3_1_7B.hidden_size, QWEN3_1_7B.num_layers
    query = QWEN3_1_7B.num_attention_heads * QWEN3_1_7B.head_dim
    groups_ratio = QWEN3_1_7B.num_key_value_heads / QWEN3_1_7B.num_attention_heads
    attention = 12 * layers * h * h * ((1 + groups_ratio + s / h / 2) * query / h)
    megatron = s * (12 * layers * h * QWEN3_1_7B.ffn_hidden_size * 3 / 2 + attention + 6 * h * QWEN3_1_7B.vocab_size)
    assert flops_per_token(QWEN3_1_7B, s) == pytest.approx(megatron / s, rel=1e-12)


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA H100 NVL", None), ("NVIDIA H200 NVL", None), ("NVIDIA GeForce RTX 4090", None),
])
def test_peak_by_device_name(name: str, peak: float | None) -> None:
    assert peak_bf16_flops(name) == peak


def test_mfu_is_per_device_flops_over_the_peak() -> None:
    figures = Throughput(flops_per_token=1e10, devices=4, peak_flops=1e15).figures(tokens_per_s=200_000)
    assert figures["tflops_per_device"] == pytest.approx(500.0)
    assert figures["mfu"] == pytest.approx(0.5)
    assert ("peak_gpu_memory_gib" in figures) == torch.cuda.is_available()
    assert "mfu" not in Throughput(flops_per_token=1e10, devices=1, peak_flops=None).figures(tokens_per_s=1.0)


def test_no_mfu_off_a_gpu_or_outside_bf16() -> None:
    assert Throughput.of_run(QWEN3_1_7B, 4096, "fp32", 1).peak_flops is None
    if not torch.cuda.is_available():
        assert Throughput.of_run(QWEN3_1_7B, 4096, "bf16", 1).peak_flops is None
