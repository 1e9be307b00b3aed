"""torch.distributed + megatron-core parallel state, and seeding.

Under torchrun the rank/world come from its environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT). A plain `python -m ...` is a world of one: it uses an in-process store, so two
single-process jobs on one machine never compete for a port.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from llmrunner.errors import StageError


@dataclass(frozen=True)
class ParallelInfo:
    """Where this process sits in the parallel layout."""

    rank: int
    world_size: int
    tp_rank: int
    dp_rank: int
    dp_size: int


def init_distributed(tensor_parallel: int = 1, pipeline_parallel: int = 1) -> ParallelInfo:
    """Start the process group (nccl on GPU, gloo on CPU) and megatron's model-parallel groups."""
    from megatron.core import parallel_state

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size % (tensor_parallel * pipeline_parallel):
        raise StageError(f"world size {world_size} is not divisible by tensor_parallel {tensor_parallel} x "
                         f"pipeline_parallel {pipeline_parallel}; change `tensor_parallel` / `pipeline_parallel` or "
                         "the number of processes (`nproc_per_node`, or torchrun --nproc_per_node)")
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if world_size == 1:
            torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(),
                                                 rank=0, world_size=1)
        else:
            torch.distributed.init_process_group(backend, rank=rank, world_size=world_size)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(tensor_model_parallel_size=tensor_parallel,
                                                 pipeline_model_parallel_size=pipeline_parallel)
    return ParallelInfo(rank=rank, world_size=world_size,
                        tp_rank=parallel_state.get_tensor_model_parallel_rank(),
                        dp_rank=parallel_state.get_data_parallel_rank(),
                        dp_size=parallel_state.get_data_parallel_world_size())


def destroy_distributed() -> None:
    """Tear down megatron's groups and the process group (tests build several worlds in turn)."""
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed python, numpy, torch and megatron's model-parallel RNG tracker.

    Call after init_distributed() (the tracker offsets the seed by the tensor-parallel rank).
    """
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    if not torch.cuda.is_available():
        from llmrunner.megatron import cpu_compat

        cpu_compat.enable()  # the tracker seeds "cuda" generators; redirect them to the CPU one
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)
