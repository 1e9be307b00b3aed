"""Core attention for the local layer spec through torch's scaled_dot_product_attention.

megatron-core's local `DotProductAttention` materialises the [b, heads, s, s] scores and runs an
unfused masked softmax: on a CPU it is ~45% of a demo training step (profiled in bench/README.md), and
on a GPU without Transformer Engine it keeps two s x s tensors per layer for the backward pass. SDPA
picks a fused kernel instead (flash / memory-efficient on CUDA, flash on CPU) and gives the same
numbers within float rounding. Drop-in: same constructor (head counts and softmax scale come from
DotProductAttention's), same [s, b, heads, dim] inputs and [s, b, hidden] output, no parameters, so
checkpoints do not change.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType


class SDPAttention(DotProductAttention):
    """DotProductAttention computed by F.scaled_dot_product_attention (vanilla softmax, no sliding window)."""

    def __init__(self, config, layer_number, attn_mask_type, attention_type, *args, **kwargs) -> None:
        super().__init__(config, layer_number, attn_mask_type, attention_type, *args, **kwargs)
        if config.softmax_type != "vanilla" or config.window_size is not None or config.apply_query_key_layer_scaling:
            raise ValueError("SDPAttention supports the vanilla softmax without sliding window or query-key "
                             "layer scaling; use megatron's DotProductAttention for the others")
        self.dropout_p = self.attention_dropout.p

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, attn_mask_type: AttnMaskType | None = None,
                attention_bias: torch.Tensor | None = None, packed_seq_params=None) -> torch.Tensor:
        """query [sq, b, heads, dim], key/value [sk, b, groups, dim] -> context [sq, b, heads * dim].

        attention_mask follows megatron: True = masked out (SDPA's boolean mask is the opposite).
        Without a mask a causal layer attends causally, as megatron's default causal mask does.
        """
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("SDPAttention takes neither packed sequences nor an attention bias")
        sq, b = query.shape[:2]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, dim]
        mask_type = attn_mask_type or self.attn_mask_type
        dropout = self.dropout_p if self.training else 0.0
        # The tracker keeps dropout masks apart across tensor-parallel ranks, as DotProductAttention does.
        rng = (tensor_parallel.get_cuda_rng_tracker().fork() if dropout and not self.config.sequence_parallel
               else contextlib.nullcontext())
        with rng:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if attention_mask is None else ~attention_mask, dropout_p=dropout,
                is_causal=attention_mask is None and mask_type == AttnMaskType.causal, scale=self.softmax_scale,
                enable_gqa=self.num_attention_heads_per_partition != self.num_query_groups_per_partition)
        return context.permute(2, 0, 1, 3).reshape(sq, b, self.hidden_size_per_partition)
