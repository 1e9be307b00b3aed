"""RMSNorm for the local layer spec that also runs with sequence parallelism.

megatron-core's local spec builds torch's RMSNorm through WrappedTorchNorm, which refuses sequence
parallelism: there each tensor-parallel rank normalises its 1/TP slice of the sequence, so a norm
weight's gradient is partial on each rank and must be summed over the ranks, which megatron's
finalize_model_grads does for parameters marked `sequence_parallel` (Apex's FusedLayerNorm and
Transformer Engine's norms mark theirs). This is torch's RMSNorm with that mark: the module,
parameter name and numbers of WrappedTorchNorm's, so checkpoints do not change.
"""
from __future__ import annotations

import torch


class RMSNorm(torch.nn.RMSNorm):
    """torch.nn.RMSNorm built from megatron's norm arguments (config, hidden_size, eps)."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **kwargs) -> None:
        super().__init__(hidden_size, eps=eps)
        self.weight.sequence_parallel = config.sequence_parallel
