"""SDPAttention gives megatron's DotProductAttention's outputs and gradients (fresh interpreter: it sets up
megatron's parallel state and, on a CPU, the CUDA redirections)."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import torch
from llmrunner.megatron import parallel
from llmrunner.megatron.model import ModelShape, transformer_config
from llmrunner.megatron.attention import SDPAttention
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType

parallel.init_distributed()
parallel.seed_everything(0)
checked = []
for heads, groups in ((4, 4), (4, 2), (4, 1)):
    shape = ModelShape(vocab_size=64, hidden_size=64, num_layers=1, num_attention_heads=heads,
                       num_key_value_heads=groups, head_dim=16, ffn_hidden_size=128, rope_theta=1e4,
                       norm_eps=1e-6, tie_embeddings=True, max_position_embeddings=64, eos_token_id=0,
                       pad_token_id=0)
    config = transformer_config(shape)
    s, b = 24, 3
    # Packed conversations: segments 0..9, 10..23 in every row (True = masked, megatron's convention).
    seg = torch.tensor([0] * 10 + [1] * 14)
    causal = torch.ones(s, s, dtype=torch.bool).tril()
    block_mask = (~(causal & (seg[:, None] == seg[None, :]))).expand(b, 1, s, s)
    for mask in (None, block_mask):
        inputs = [torch.randn(s, b, n, 16, requires_grad=True) for n in (heads, groups, groups)]
        results = []
        for cls in (DotProductAttention, SDPAttention):
            attention = cls(config, 1, AttnMaskType.causal, "self")
            grads_in = [t.detach().clone().requires_grad_() for t in inputs]
            out = attention(*grads_in, mask)
            assert out.shape == (s, b, heads * 16), out.shape
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            results.append([out.detach(), *(t.grad for t in grads_in)])
        for name, ref, got in zip(("output", "dq", "dk", "dv"), *results):
            diff = (ref - got).abs().max().item()
            assert diff < 1e-5, (heads, groups, mask is not None, name, diff)
        checked.append((heads, groups, mask is not None))
print("ok", len(checked))
"""


def test_sdpa_attention_matches_megatrons_dot_product_attention() -> None:
    """Causal without a mask, a packed block-causal mask (SFT), plain, grouped and multi-query heads: outputs and
    input gradients within 1e-5 in fp32."""
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok 6")
