"""The Megatron pieces of a training run: DDP model, optimizer, LR schedule, one train/eval step.

Losses are per token: each micro-batch returns (sum of masked token losses, number of target
tokens) and megatron's schedule divides the gradients by the step's total target tokens
(`calculate_per_token_loss`), so gradient accumulation and data parallelism give the same
update as one big batch, also when SFT micro-batches hold different numbers of targets.
"""
from __future__ import annotations

import functools
import logging

import torch

from llmrunner.errors import StageError
from llmrunner.megatron.model import ModelShape, build_gpt_model, resolve_transformer_impl
from llmrunner.train.settings import TrainSettings

log = logging.getLogger("llmrunner.train")


def memory_options(shape: ModelShape, s: TrainSettings) -> dict:
    """The TransformerConfig fields for the recompute and sequence-parallel settings (Megatron-LM's flags of
    the same names); a recompute_num_layers the model's layers cannot take is a StageError."""
    options = {"sequence_parallel": s.sequence_parallel}
    if s.recompute == "selective":
        options["recompute_granularity"] = "selective"  # megatron-core's default module list: core attention
    elif s.recompute == "full":
        stage_layers = shape.num_layers // s.pipeline_parallel
        # megatron-core indexes past the last layer when uniform chunks do not tile a stage
        if s.recompute_num_layers > stage_layers or (s.recompute_method == "uniform"
                                                     and stage_layers % s.recompute_num_layers):
            need = "a divisor of" if s.recompute_method == "uniform" else "at most"
            raise StageError(f"`recompute_num_layers` {s.recompute_num_layers} does not fit the model: with "
                             f"recompute_method {s.recompute_method} it must be {need} the layers per pipeline "
                             f"stage, {shape.num_layers} layers / pipeline_parallel {s.pipeline_parallel} = "
                             f"{stage_layers}")
        options.update(recompute_granularity="full", recompute_method=s.recompute_method,
                       recompute_num_layers=s.recompute_num_layers)
    return options


def build_model_and_optimizer(shape: ModelShape, s: TrainSettings):
    """(DDP-wrapped GPTModel, megatron optimizer, OptimizerParamScheduler) for these settings."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    bf16 = s.precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    impl = resolve_transformer_impl(s.transformer_impl)
    model = build_gpt_model(shape, dtype, impl, **memory_options(shape, s))
    if torch.distributed.get_rank() == 0:  # what megatron-core was given, not only what was asked
        log.info("layers: %s (transformer_impl %s); activation recompute: %s; sequence parallel: %s", impl,
                 s.transformer_impl, model.config.recompute_granularity or "none", model.config.sequence_parallel)
    config = model.config
    # Read by DDP at construction (no 1/dp pre-scaling) and by the pipeline schedules.
    config.calculate_per_token_loss = True
    config.finalize_model_grads_func = finalize_model_grads
    if bf16:
        from megatron.core.transformer.module import Float16Module

        model = Float16Module(config, model)
    # The distributed optimizer needs both: DDP then reduce-scatters gradients into contiguous buffers
    # (instead of all-reducing them) and all-gathers the updated weights after each step.
    model = DistributedDataParallel(
        config, DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False,
                                              use_distributed_optimizer=s.use_distributed_optimizer), model)
    config.no_sync_func = model.no_sync  # accumulate micro-batch gradients before reducing
    optimizer = get_megatron_optimizer(
        OptimizerConfig(optimizer="adam", lr=s.lr, min_lr=s.min_lr, weight_decay=s.weight_decay,
                        adam_beta1=s.adam_beta1, adam_beta2=s.adam_beta2, adam_eps=s.adam_eps,
                        clip_grad=s.clip_grad, bf16=bf16, params_dtype=dtype,
                        use_distributed_optimizer=s.use_distributed_optimizer), [model])
    config.grad_scale_func = optimizer.scale_loss
    # Counted in optimizer steps (Megatron-LM counts samples; the shape of the curve is the same).
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=s.lr, min_lr=s.min_lr, lr_warmup_steps=s.warmup_iters,
        lr_decay_steps=s.train_iters, lr_decay_style=s.lr_decay_style, start_wd=s.weight_decay,
        end_wd=s.weight_decay, wd_incr_steps=s.train_iters, wd_incr_style="constant")
    return model, optimizer, scheduler


def _loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    mask = loss_mask.reshape(-1).float()
    loss = torch.sum(output_tensor.float().reshape(-1) * mask)
    num_tokens = mask.sum().to(torch.int)
    return loss, num_tokens, {"lm loss": torch.stack([loss.detach(), mask.sum().detach()])}


def _forward_step(data_iterator, model):
    batch = next(data_iterator)
    if torch.cuda.is_available():
        batch = {k: v.cuda(non_blocking=True) for k, v in batch.items()}
    # CPT batches have no attention_mask: megatron then applies its causal mask. SFT batches
    # carry a block-causal one so packed conversations do not see each other.
    output = model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"), labels=batch["labels"])
    return output, functools.partial(_loss_func, batch["loss_mask"])


def _loss_totals(losses: list[dict]) -> torch.Tensor:
    """[sum of token losses, target tokens] over micro-batches and data-parallel ranks.

    Only the last pipeline stage computes losses; the others return NaNs.
    """
    from megatron.core import parallel_state

    if not parallel_state.is_pipeline_last_stage():
        return torch.full((2,), float("nan"))
    total = torch.stack([item["lm loss"] for item in losses]).sum(0)
    torch.distributed.all_reduce(total, group=parallel_state.get_data_parallel_group())
    return total.cpu()


def mean_loss(totals: torch.Tensor) -> float:
    """Loss per target token from [sum, tokens] totals."""
    return (totals[0] / totals[1].clamp(min=1)).item()


def _run_schedule(model, batches, s: TrainSettings, num_micro_batches: int, forward_only: bool) -> list[dict]:
    from megatron.core.pipeline_parallel import get_forward_backward_func

    return get_forward_backward_func()(
        forward_step_func=_forward_step, data_iterator=batches, model=[model], num_microbatches=num_micro_batches,
        seq_length=s.seq_length, micro_batch_size=s.micro_batch_size, forward_only=forward_only)


def train_step(model, optimizer, scheduler, batches, s: TrainSettings, num_micro_batches: int) -> dict:
    """One optimizer step; returns loss (before the update), lr used and gradient norm."""
    model.zero_grad_buffer()
    optimizer.zero_grad()
    losses = _run_schedule(model, batches, s, num_micro_batches, forward_only=False)
    lr = optimizer.param_groups[0]["lr"]
    _, grad_norm, _ = optimizer.step()
    scheduler.step(increment=1)
    # grad_norm is None only for a step skipped on fp16 overflow; fp32/bf16 never skip.
    return {"loss": mean_loss(_loss_totals(losses)), "lr": lr, "grad_norm": float(grad_norm)}


@torch.no_grad()
def eval_step(model, batches, s: TrainSettings, num_micro_batches: int) -> torch.Tensor:
    """[sum of token losses, target tokens] of one validation global batch."""
    model.eval()
    try:
        losses = _run_schedule(model, batches, s, num_micro_batches, forward_only=True)
    finally:
        model.train()
    return _loss_totals(losses)
