"""Run megatron-core on a CPU-only torch build.

megatron-core assumes CUDA in a few places (each one and its redirection: docs/megatron-on-cpu.md):
rotary embeddings ask for `torch.cuda.current_device()`, the default causal mask is built on
"cuda", attention always enters the CUDA RNG tracker, and DDP / the optimizer / pipeline
schedules create ~150 tensors with `device="cuda"` or `.cuda()`. `enable()` redirects all of
that to the CPU. Model-building code calls it only when `torch.cuda.is_available()` is False;
on a GPU nothing here is touched.

Megatron's optimizer and gradient clipping also assert tensor type names such as
'torch.cuda.FloatTensor'; under the same mode, `Tensor.type()` reports the CUDA name.

Two settings for speed on a CPU, neither of which changes a number: the cross-entropy's row maximum without the
indices nobody reads, and (`keep_freed_memory`, called by the training entry point) a C allocator that keeps the
memory a step frees for the next step (bench/README.md, bench_train.py).
"""
from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import MutableMapping

import torch
from torch.overrides import TorchFunctionMode

_enabled = False


def _cpu_device(device):
    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites every cuda device argument to cpu, makes `Tensor.cuda()` a no-op and names CPU
    tensor types as their CUDA twins.

    One mode instead of patching each of megatron's literal `device="cuda"` sites and type-name
    checks, which move between releases.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name.replace("torch.", "torch.cuda.", 1) if ".cuda." not in name else name
        if "device" in kwargs:
            kwargs = {**kwargs, "device": _cpu_device(kwargs["device"])}
        if kwargs.get("pin_memory"):
            kwargs = {**kwargs, "pin_memory": False}
        if func is torch.Tensor.to and len(args) > 1:
            args = (args[0], _cpu_device(args[1]), *args[2:])
        return func(*args, **kwargs)


class _NoStream:
    """Stand-in for torch.cuda.Stream: a class (transformers uses it in type annotations)."""

    def __init__(self, *args, **kwargs):
        pass

    def wait_event(self, *args, **kwargs):
        pass

    def wait_stream(self, *args, **kwargs):
        pass

    def synchronize(self):
        pass

    def record_event(self, *args, **kwargs):
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@functools.lru_cache(maxsize=None)
def _cpu_causal_mask(seq_len: int) -> torch.Tensor:
    return torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=1)


def _patch_torch_cuda() -> None:
    # Rotary embeddings and DDP buffers pass current_device() as a device: "cpu" is valid there.
    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda *args, **kwargs: None
    torch.cuda.empty_cache = lambda *args, **kwargs: None
    torch.cuda.current_stream = lambda *args, **kwargs: _NoStream()
    torch.cuda.default_stream = lambda *args, **kwargs: _NoStream()
    torch.cuda.stream = lambda *args, **kwargs: _NoStream()
    torch.cuda.Stream = _NoStream
    # The RNG tracker (entered by every attention call, even with dropout 0) and
    # model_parallel_cuda_manual_seed() use the CUDA generator: back them with the CPU one.
    torch.cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()
    torch.cuda.manual_seed = torch.manual_seed


def _logits_max(vocab_parallel_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """megatron's VocabParallelCrossEntropy.calculate_logits_max with amax: the same maximum, without the argmax
    that torch.max(dim=) also computes (half the time of that [tokens, vocabulary] pass on a CPU)."""
    vocab_parallel_logits = vocab_parallel_logits.float()
    return vocab_parallel_logits, torch.amax(vocab_parallel_logits, dim=-1)


def _patch_megatron() -> None:
    import megatron.core.fusions.fused_softmax as fused_softmax
    import megatron.core.transformer.utils as transformer_utils
    from megatron.core.tensor_parallel import random as mp_random
    from megatron.core.tensor_parallel.cross_entropy import VocabParallelCrossEntropy

    # Both modules bind get_default_causal_mask at import time, so patch both names.
    fused_softmax.get_default_causal_mask = _cpu_causal_mask
    transformer_utils.get_default_causal_mask = _cpu_causal_mask
    mp_random._get_cuda_rng_state = lambda *args, **kwargs: torch.get_rng_state()
    mp_random._set_cuda_rng_state = lambda new_state, *args, **kwargs: torch.set_rng_state(new_state)
    VocabParallelCrossEntropy.calculate_logits_max = staticmethod(_logits_max)


# MKL's default CPU branch (AVX-512 here) now and then switches a process, mid-run, to a kernel that rounds
# differently: measured in SLURM jobs on a 2-core VM, 3 of 8 processes changed a layer's attention output within
# 150 identical forward passes; with the AVX2 branch pinned, 0 of 12. Training on a CPU promises bit-identical
# resumes, so it pins the branch (training ~20% slower here, bench/README.md); a user's own MKL_CBWR wins.
MKL_BRANCH = "AVX2"


def pin_mkl_branch(env: MutableMapping[str, str] = os.environ) -> None:
    """Pin MKL's code branch for reproducible CPU math. MKL reads MKL_CBWR at its first computation:
    call before any (importing torch is fine); processes started later inherit it."""
    env.setdefault("MKL_CBWR", MKL_BRANCH)


# mallopt(3) parameters (malloc.h). By default glibc serves every block of 32 MiB or more (a step's logits and the
# cross-entropy's exp of them: 64 MiB each in the demo step) with its own mmap and unmaps it when freed, and hands
# the top of its heap back beyond 128 KiB free: each step then faults those pages in again, zeroed by the kernel
# (~30 ms per 64 MiB on a 2-core VM, ~10% of the demo step; bench/README.md).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Have glibc's malloc take large blocks from its heap and never shrink the heap, so the memory one training
    step frees serves the next one. The process keeps its per-step peak, which it reaches every step anyway.
    False (nothing changed) where the C library has no mallopt."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # -1 as the trim threshold: never trim (mallopt(3)).
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))


def enable() -> None:
    """Apply the CPU redirections once per process; later calls do nothing."""
    global _enabled
    if _enabled:
        return
    _patch_torch_cuda()
    _patch_megatron()
    # Entered for the rest of the process (the mode stack is per thread: the training loop and
    # checkpoint saving run on the main thread).
    _CudaToCpuMode().__enter__()
    _enabled = True


def is_enabled() -> bool:
    """Whether enable() has run in this process."""
    return _enabled
