"""Megatron-LM checkpoint folders, written and read with megatron-core dist_checkpointing.

Folder contents (the contract shared by hf2mg, training and mg2hf):

    <root>/model.json                        the ModelShape
    <root>/latest_checkpointed_iteration.txt the newest complete iteration, as Megatron-LM writes it
    <root>/iter_0000100/                     dist_checkpointing (torch_dist): .metadata, *.distcp,
                                             common.pt, metadata.json

An iteration folder holds `model` (sharded), optionally `optimizer` (sharded) and `rng_state`
(one object per model-parallel rank, as Megatron-LM stores it), plus plain values in common.pt
(iteration, scheduler and data position, and with an optimizer the content metadata that says how
its state is laid out). The tracker file is replaced only after a save has finished, so a run
killed mid-save resumes from the previous complete iteration.
"""
from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from llmrunner.errors import StageError
from llmrunner.megatron.model import ModelShape

TRACKER = "latest_checkpointed_iteration.txt"
# How megatron-core's distributed optimizer lays out its state (plain optimizers ignore it):
# Megatron-LM's default, each rank writes its own shard of the flat buffers (no gather) and a resume
# may change the data-parallel size. Saved as the checkpoint's content metadata; a load uses what the
# checkpoint says, as Megatron-LM does, so a later change of this default still reads older checkpoints.
OPTIMIZER_METADATA = {"distrib_optim_sharding_type": "dp_reshardable"}
_ITER_RE = re.compile(r"^iter_(\d{7})$")


def iteration_dir(root: str | Path, iteration: int) -> Path:
    """`<root>/iter_{iteration:07d}`."""
    return Path(root) / f"iter_{iteration:07d}"


def list_iterations(root: str | Path) -> list[int]:
    """Iterations whose folder finished saving (dist_checkpointing writes metadata.json last)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _ITER_RE.match(child.name)
        if match and (child / "metadata.json").is_file():
            found.append(int(match.group(1)))
    return sorted(found)


def latest_iteration(root: str | Path) -> int | None:
    """The iteration named by the tracker file, or None when there is none."""
    tracker = Path(root) / TRACKER
    if not tracker.is_file():
        return None
    text = tracker.read_text().strip()
    if not text.isdigit():
        raise StageError(f"{tracker} should hold an iteration number, found {text!r}; delete it to use "
                         f"the newest complete iteration folder instead ({list_iterations(root)})")
    return int(text)


def require_latest_iteration(root: str | Path) -> int:
    """The latest complete iteration, or a StageError saying what the folder holds instead."""
    root = Path(root)
    iteration = latest_iteration(root)
    complete = list_iterations(root)
    if iteration is not None and iteration in complete:
        return iteration
    held = sorted(p.name for p in root.iterdir()) if root.is_dir() else "nothing (no such folder)"
    raise StageError(f"{root} has no usable Megatron checkpoint: tracker {TRACKER} names "
                     f"{iteration}, complete iterations {complete}; the folder holds {held}. "
                     "Point to a folder written by hf2mg or training.")


def stored_weights_dtype(root: str | Path, iteration: int) -> torch.dtype:
    """The dtype the iteration's model weights were saved in: training saves its model's (float32, or
    bfloat16 for bf16 training; the optimizer's fp32 main weights are `optimizer.*`), hf2mg float32."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    folder = iteration_dir(root, iteration)
    stored = FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    dtypes = {meta.properties.dtype for key, meta in stored.items()
              if isinstance(meta, TensorStorageMetadata) and not key.startswith(("optimizer.", "rng_state"))}
    if len(dtypes) != 1:
        raise StageError(f"{folder}: the model's weights are stored in {sorted(map(str, dtypes)) or 'no'} "
                         "dtype(s), not one; set the export `dtype` of the mg2hf step explicitly")
    return dtypes.pop()


def _unwrap(model):
    # DDP and Float16Module keep the GPTModel in `.module`; the state dict keys come from it.
    while hasattr(model, "module"):
        model = model.module
    return model


def _rng_object(with_state: bool):
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    state = {"random": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
             "tracker": get_cuda_rng_tracker().get_states()} if with_state else None
    # Like Megatron-LM: one object per (pp, tp) rank; data-parallel replicas hold copies.
    return ShardedObject("rng_state", state,
                         (ps.get_pipeline_model_parallel_world_size(), ps.get_tensor_model_parallel_world_size()),
                         (ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank()),
                         replica_id=ps.get_data_parallel_rank())


def _set_rng(state: dict) -> None:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    get_cuda_rng_tracker().set_states(state["tracker"])


# megatron-core's distributed optimizer uses torch's AdamW when neither Apex nor Transformer Engine
# is installed (always on CPU). torch keeps Adam's step per parameter, in its state, and megatron-core
# 0.16 loads that combination only with the help of the three functions below.
def _distributed_torch_adams(optimizer) -> list[torch.optim.Optimizer]:
    """The torch Adam(W) inside each DistributedOptimizer part of a megatron optimizer."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    parts = getattr(optimizer, "chained_optimizers", [optimizer])
    return [part.optimizer for part in parts if isinstance(part, DistributedOptimizer)
            and isinstance(part.optimizer, torch.optim.Adam | torch.optim.AdamW)]


def _allocate_adam_state(adam: torch.optim.Optimizer) -> None:
    """Give a never-stepped Adam the state its first step would create (zeros, step 0): building the
    load request reads the step from it. The load replaces all of it."""
    if adam.state:
        return
    for group in adam.param_groups:
        for param in group["params"]:
            adam.state[param] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(param),
                                 "exp_avg_sq": torch.zeros_like(param)}


def _restore_adam_steps(adam: torch.optim.Optimizer) -> None:
    """Set each parameter's step to its group's saved one: loading the dp_reshardable parameter state
    copies the step tensors the load request was built with (those of _allocate_adam_state) over the
    restored ones, so a resumed run would redo Adam's bias correction from step 1."""
    for group in adam.param_groups:
        for param in group["params"]:
            adam.state[param]["step"] = torch.tensor(float(group["step"]))


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _is_rank0() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def save_checkpoint(root: str | Path, iteration: int, shape: ModelShape, model, optimizer=None,
                    state: dict | None = None, keep_last: int | None = None) -> Path:
    """Save model (+ optimizer and RNG when an optimizer is given) as `iter_{iteration}`.

    `state` holds plain values (scheduler state, data position) stored in common.pt. With
    keep_last, older iteration folders beyond the newest keep_last are removed afterwards.
    """
    from megatron.core import dist_checkpointing

    root = Path(root)
    folder = iteration_dir(root, iteration)
    if _is_rank0():
        if folder.exists():  # a save of this iteration that did not finish
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shape.save(root)
    _barrier()
    module = _unwrap(model)
    model_sd = module.sharded_state_dict()
    sharded = {"model": model_sd, "iteration": iteration, **(state or {})}
    metadata = None
    if optimizer is not None:
        metadata = dict(OPTIMIZER_METADATA)
        sharded["optimizer"] = optimizer.sharded_state_dict(model_sd, metadata=metadata)
        sharded["rng_state"] = _rng_object(with_state=True)
    dist_checkpointing.save(sharded, str(folder), content_metadata=metadata)
    _barrier()
    if _is_rank0():
        tmp = root / (TRACKER + ".tmp")
        tmp.write_text(f"{iteration}\n")
        os.replace(tmp, root / TRACKER)
        if keep_last:
            _prune(root, iteration, keep_last)
    _barrier()
    return folder


def _prune(root: Path, latest: int, keep_last: int) -> None:
    keep = set([i for i in list_iterations(root) if i <= latest][-keep_last:])
    for child in root.iterdir():
        match = _ITER_RE.match(child.name)
        if match and int(match.group(1)) not in keep:
            shutil.rmtree(child)


def load_checkpoint(root: str | Path, model, optimizer=None, iteration: int | None = None,
                    restore_rng: bool = False) -> dict:
    """Load model weights (and optimizer state, RNG) in place; return the plain values saved.

    `iteration` defaults to the latest. The returned dict holds `iteration` and whatever `state`
    was given to save_checkpoint.
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.core import CheckpointingException
    from torch.distributed.checkpoint.api import CheckpointException

    root = Path(root)
    if iteration is None:
        iteration = require_latest_iteration(root)
    folder = iteration_dir(root, iteration)
    if iteration not in list_iterations(root):
        raise StageError(f"{folder} is not a complete checkpoint; complete iterations in {root}: "
                         f"{list_iterations(root)}")
    module = _unwrap(model)
    model_sd = module.sharded_state_dict()
    request = {"model": model_sd}
    if optimizer is not None:
        # None for a checkpoint saved without it: megatron-core's own default layout applies.
        metadata = dist_checkpointing.load_content_metadata(str(folder))
        for adam in _distributed_torch_adams(optimizer):
            _allocate_adam_state(adam)
        request["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True, metadata=metadata)
    if restore_rng:
        request["rng_state"] = _rng_object(with_state=False)
    try:
        loaded = dist_checkpointing.load(request, str(folder))
    # torch's reader reports a tensor the checkpoint lacks as CheckpointException (a BaseException).
    except (CheckpointingException, CheckpointException) as err:
        failures = [f[0] if isinstance(f, tuple) else f for f in getattr(err, "failures", {}).values()]
        reason = "; ".join(map(str, failures)) or str(err)
        raise StageError(f"cannot load {folder} into a model of shape {root / 'model.json'}: {reason[:1000]}. "
                         "The optimizer state exists only in training checkpoints.") from err
    loaded.pop("content_metadata", None)  # dist_checkpointing's own entry in common.pt, not a saved value
    module.load_state_dict(loaded.pop("model"), strict=True)
    if optimizer is not None:
        # The distributed optimizer's fp32 main weights are views of the model's weights; megatron-core
        # 0.16 copies into them in place without no_grad for the dp_reshardable layout (autograd refuses).
        with torch.no_grad():
            optimizer.load_state_dict(loaded.pop("optimizer"))
        for adam in _distributed_torch_adams(optimizer):
            _restore_adam_steps(adam)
    if restore_rng:
        _set_rng(loaded.pop("rng_state"))
    return loaded
