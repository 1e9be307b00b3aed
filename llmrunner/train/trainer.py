"""A CPT or SFT run from a Megatron checkpoint: resume-or-fresh, data, the loop, checkpoints, completion.

An interrupted run resumed from its latest checkpoint ends with the same weights as an
uninterrupted one: the checkpoint holds model, optimizer, LR schedule, RNG state and the
iteration, and the data position is a pure function of the iteration (samples consumed =
iteration x global_batch_size over datasets whose order depends only on the seed).
"""
from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import torch

from llmrunner.errors import StageError
from llmrunner.megatron import checkpoint, parallel
from llmrunner.megatron.model import ModelShape
from llmrunner.train import data, run_state
from llmrunner.train.metrics import MetricsLog, Throughput
from llmrunner.train.settings import TrainSettings
from llmrunner.train.steps import build_model_and_optimizer, eval_step, mean_loss, train_step
from llmrunner.train.stop import StopRequest

log = logging.getLogger("llmrunner.train")

KINDS = ("cpt", "sft")
DATA_CACHE = ".data_cache"


def _barrier() -> None:
    torch.distributed.barrier()


def _start_run(kind: str, init_dir: Path, prefixes: list[str], save_dir: Path, s: TrainSettings,
               rank: int) -> int | None:
    """Resume iteration (None: fresh start, folder cleared and run_config.json written), decided by rank 0.

    Launched by our entry point, the launcher has decided already (run_state.prepare before starting the
    ranks) and recorded the input hashes, so rank 0 comes to the same decision without reading the inputs.
    """
    decided: list = [None, ""]  # resume iteration, error message
    if rank == 0:
        try:
            decided[0] = run_state.prepare(kind, init_dir, prefixes, save_dir, s.fingerprint())
        except StageError as err:
            decided[1] = str(err)
    torch.distributed.broadcast_object_list(decided, src=0)  # also: no rank reads the folder before it is ready
    if decided[1]:
        raise StageError(decided[1])
    return decided[0]


def _build_datasets(kind: str, prefixes: list[str], save_dir: Path, shape: ModelShape, s: TrainSettings):
    weighted = [(p, w) for p, w in zip(prefixes, data.blend_weights(prefixes, s.blend)) if w > 0]  # 0: left out
    prefixes, weights = [p for p, _ in weighted], [w for _, w in weighted]
    train_samples = s.train_iters * s.global_batch_size
    valid_samples = s.eval_iters * s.global_batch_size if s.eval_interval and s.eval_iters else 0
    if kind == "cpt":
        return data.build_cpt_datasets(prefixes, weights, seq_length=s.seq_length, seed=s.seed, split=s.split,
                                       train_samples=train_samples, valid_samples=valid_samples,
                                       cache_dir=save_dir / DATA_CACHE, eod=shape.eos_token_id,
                                       pad=shape.pad_token_id, vocab_size=shape.vocab_size)
    from llmrunner.train.sft_data import build_sft_datasets

    return build_sft_datasets(prefixes, weights, seq_length=s.seq_length, seed=s.seed,
                              split_fractions=s.split_fractions(), train_samples=train_samples,
                              valid_samples=valid_samples, pad=shape.pad_token_id)


def _validate(model, valid, s: TrainSettings, info: parallel.ParallelInfo, num_micro: int) -> float:
    totals = torch.zeros(2)
    for k in range(s.eval_iters):
        batches = data.micro_batches(valid, k * s.global_batch_size, s.micro_batch_size, num_micro,
                                     info.dp_rank, info.dp_size)
        totals += eval_step(model, batches, s, num_micro)
    return mean_loss(totals)


def run_training(kind: str, init_dir: Path, prefixes: list[str], save_dir: Path, done_path: Path,
                 s: TrainSettings, stop: StopRequest) -> dict:
    """Train to s.train_iters, saving to save_dir; write done_path last. Returns its content.

    When `stop` is set (a scheduler's signal), save after the current step and exit non-zero.
    """
    if kind not in KINDS:
        raise StageError(f"unknown training kind {kind!r}; use one of {KINDS}")
    torch.set_num_threads(s.threads)
    info = parallel.init_distributed(s.tensor_parallel, s.pipeline_parallel)
    if s.global_batch_size % (s.micro_batch_size * info.dp_size):
        raise StageError(f"global_batch_size {s.global_batch_size} is not a multiple of micro_batch_size "
                         f"{s.micro_batch_size} x data-parallel size {info.dp_size}")
    num_micro = s.global_batch_size // (s.micro_batch_size * info.dp_size)
    if info.rank == 0:
        log.info("%d process(es): tensor %d x pipeline %d x data %d parallel; %d micro-batch(es) of %d per step",
                 info.world_size, s.tensor_parallel, s.pipeline_parallel, info.dp_size, num_micro, s.micro_batch_size)
        if s.use_distributed_optimizer:
            # Not an error: with nproc_per_node 1 the data-parallel size comes from the job's GPUs and nodes.
            log.log(logging.WARNING if info.dp_size == 1 else logging.INFO,
                    "distributed optimizer: optimizer state sharded over %d data-parallel rank(s)%s", info.dp_size,
                    "; with one there is nothing to shard (same memory as without)" if info.dp_size == 1 else "")
    shape = ModelShape.load(init_dir)
    if s.seq_length > shape.max_position_embeddings:
        raise StageError(f"seq_length {s.seq_length} exceeds the model's max_position_embeddings "
                         f"{shape.max_position_embeddings} ({init_dir / 'model.json'})")
    resume = _start_run(kind, init_dir, prefixes, save_dir, s, info.rank)

    parallel.seed_everything(s.seed)
    model, optimizer, scheduler = build_model_and_optimizer(shape, s)
    if resume is None:
        checkpoint.load_checkpoint(init_dir, model)
        # With bf16 the optimizer keeps fp32 main weights, copied from the model when it was built:
        # refresh them from the loaded weights, or the first step writes the random ones back (as
        # Megatron-LM does after a load without optimizer state; a no-op for fp32 weights).
        optimizer.reload_model_params()
        iteration = 0
    else:
        state = checkpoint.load_checkpoint(save_dir, model, optimizer, iteration=resume, restore_rng=True)
        scheduler.load_state_dict(state["opt_param_scheduler"])
        iteration = state["iteration"]
    train, valid = _build_datasets(kind, prefixes, save_dir, shape, s)
    if valid is None and s.eval_interval and s.eval_iters:
        log.warning("the split %r leaves no validation data: no validation loss in this run", s.split)

    from megatron.core import parallel_state

    logs = (parallel_state.is_pipeline_last_stage() and info.dp_rank == 0 and info.tp_rank == 0)
    metrics = MetricsLog(save_dir, iteration, s.train_iters, s.log_interval,
                         Throughput.of_run(shape, s.seq_length, s.precision, info.world_size)) if logs else None
    tokens_per_step = s.global_batch_size * s.seq_length
    model.train()
    while iteration < s.train_iters:
        started = time.perf_counter()
        batches = data.micro_batches(train, iteration * s.global_batch_size, s.micro_batch_size, num_micro,
                                     info.dp_rank, info.dp_size)
        result = train_step(model, optimizer, scheduler, batches, s, num_micro)
        iteration += 1
        if metrics:
            metrics.step(iteration, **result, tokens_per_s=tokens_per_step / (time.perf_counter() - started))
        # Validate before saving: a checkpoint then implies its validation line is in metrics.jsonl.
        if valid is not None and (iteration % s.eval_interval == 0 or iteration == s.train_iters):
            val_loss = _validate(model, valid, s, info, num_micro)
            if metrics:
                metrics.validation(iteration, val_loss)
        stop_signal = stop.agreed()
        if iteration % s.save_interval == 0 or iteration == s.train_iters or stop_signal:
            checkpoint.save_checkpoint(save_dir, iteration, shape, model, optimizer,
                                       state={"opt_param_scheduler": scheduler.state_dict(),
                                              "consumed_train_samples": iteration * s.global_batch_size},
                                       keep_last=s.keep_last or None)
        if stop_signal and iteration < s.train_iters:
            if metrics:
                metrics.close()
            log.warning("stopped at iteration %d/%d with a checkpoint (%s); rerun to resume", iteration,
                        s.train_iters, signal.Signals(stop_signal).name)
            raise SystemExit(128 + stop_signal)  # non-zero: the job is not complete
    done = {"kind": kind, "iteration": iteration,
            "loss": metrics.last_loss if metrics else None,
            "val_loss": metrics.last_val_loss if metrics else None,
            "checkpoint": str(checkpoint.iteration_dir(save_dir, iteration)), "save_dir": str(save_dir)}
    if metrics:
        metrics.close()
        done_path.parent.mkdir(parents=True, exist_ok=True)
        done_path.write_text(json.dumps(done, indent=2) + "\n")
        log.info("%s training complete: iteration %d, loss %s -> %s", kind, iteration, done["loss"], done_path)
    _barrier()
    return done
