"""`logs/metrics.jsonl` (one line per step, plus validation lines), the same scalars as TensorBoard
event files in `logs/tensorboard/` and, when W&B tracking is on (llmrunner.tracking), in a W&B run, and the
progress log line.

Besides loss, lr and gradient norm, a step line holds its speed: tokens/s (the whole job's), the model's
FLOPs per token, the achieved model TFLOP/s per device, MFU (against the GPU's dense bf16 peak, in bf16
runs on a GPU of PEAK_BF16_FLOPS) and peak GPU memory (on a GPU).
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from llmrunner.megatron.model import ModelShape
from llmrunner.tracking import start_run

log = logging.getLogger("llmrunner.train")

METRICS = Path("logs") / "metrics.jsonl"
TENSORBOARD = Path("logs") / "tensorboard"
# Step figures that depend on the machine and its load, not on the run's inputs: two otherwise identical runs
# (a resumed one and its reference) differ only in these.
MEASURED = ("tokens_per_s", "tflops_per_device", "mfu", "peak_gpu_memory_gib")
# Dense (no sparsity) bf16 tensor-core peak FLOP/s per GPU from the vendor's data sheets, by a pattern of
# torch.cuda.get_device_name(); the first match wins. Others (H100 NVL, H200 NVL, consumer cards): no MFU.
PEAK_BF16_FLOPS = (
    (r"H100.*PCIe", 756e12),
    (r"H100 (SXM|80GB HBM3)", 989e12),
    (r"H200(?! NVL)", 989e12),
    (r"A100", 312e12),
)


def flops_per_token(shape: ModelShape, seq_length: int) -> float:
    """Model FLOPs of one trained token (forward and backward) at this sequence length, counted as Megatron-LM's
    `num_floating_point_operations` counts a dense decoder with grouped-query attention and SwiGLU.

    Only matrix multiplications: per layer the q, k, v and output projections, QK^T and attention x V over the
    causal half of the score matrix, the SwiGLU gate, up and down projections; then the output logits (once,
    tied or not; the embedding lookup is no multiplication). Recomputed activations are not counted (model
    FLOPs, not hardware FLOPs).
    """
    hidden, ffn = shape.hidden_size, shape.ffn_hidden_size
    query = shape.num_attention_heads * shape.head_dim
    key_value = shape.num_key_value_heads * shape.head_dim
    # 6 = 2 FLOPs per multiply-add x 3 passes (forward, gradient of the input, gradient of the weight)
    projections = 6 * hidden * (2 * query + 2 * key_value)  # q and output; k and v
    scores = 6 * 2 * query * seq_length / 2  # QK^T and scores x V, causal: half the matrix
    mlp = 6 * 3 * hidden * ffn  # gate, up, down
    logits = 6 * hidden * shape.vocab_size
    return shape.num_layers * (projections + scores + mlp) + logits


def peak_bf16_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a GPU by its torch.cuda.get_device_name(); None for one not in the table."""
    return next((peak for pattern, peak in PEAK_BF16_FLOPS if re.search(pattern, device_name, re.IGNORECASE)), None)


@dataclass(frozen=True)
class Throughput:
    """What turns a step's tokens/s into model FLOP/s, MFU and peak memory."""

    flops_per_token: float
    devices: int
    """Processes of the job (GPUs, on GPUs): tokens/s is the whole job's, TFLOP/s and MFU are per device."""
    peak_flops: float | None
    """One device's dense peak in the run's precision; None: no MFU."""

    @classmethod
    def of_run(cls, shape: ModelShape, seq_length: int, precision: str, devices: int) -> Throughput:
        """For a run on this machine: MFU only in bf16 on a GPU of PEAK_BF16_FLOPS (the table is bf16 peaks)."""
        on_gpu = torch.cuda.is_available() and precision == "bf16"
        peak = peak_bf16_flops(torch.cuda.get_device_name()) if on_gpu else None
        return cls(flops_per_token(shape, seq_length), devices, peak)

    def figures(self, tokens_per_s: float) -> dict[str, float]:
        """The step line's speed and memory keys beyond tokens_per_s."""
        achieved = self.flops_per_token * tokens_per_s / self.devices
        figures = {"flops_per_token": self.flops_per_token, "tflops_per_device": achieved / 1e12}
        if self.peak_flops:
            figures["mfu"] = achieved / self.peak_flops
        if torch.cuda.is_available():
            figures["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return figures


class MetricsLog:
    """Appends metric lines and events; on resume, first drops those past the checkpoint being resumed."""

    def __init__(self, save_dir: Path, resume_iteration: int, train_iters: int, log_interval: int,
                 throughput: Throughput) -> None:
        self.throughput = throughput
        self.path = save_dir / METRICS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if self.path.is_file():
            # Steps after the checkpoint were lost with the interrupted run; they will be redone.
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["iteration"] <= resume_iteration]
        self.path.write_text("".join(line + "\n" for line in kept))
        self.last_loss: float | None = None
        self.last_val_loss: float | None = None
        for record in map(json.loads, kept):
            self.last_loss = record.get("loss", self.last_loss)
            self.last_val_loss = record.get("val_loss", self.last_val_loss)
        self.train_iters, self.log_interval = train_iters, log_interval
        self.start_time, self.start_iteration = time.time(), resume_iteration
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: ~1 s, only on the logging rank

        # A new event file per (re)start; purge_step tells TensorBoard to hide the older files' events
        # from that step on (the steps the interrupted run did after its last checkpoint).
        self.events = SummaryWriter(save_dir / TENSORBOARD,
                                    purge_step=resume_iteration + 1 if resume_iteration else None)
        # the checkpoint folder is <DATAPOOL_ROOT>/model/<kind>_checkpoints
        self.tracker = start_run(save_dir.name, save_dir.parents[1], "train", save_dir / METRICS.parent)

    def _append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        iteration = record["iteration"]
        for name, value in record.items():
            if name != "iteration":
                self.events.add_scalar(name, value, iteration)
        self.events.flush()  # on disk with its jsonl line: a kill loses neither more nor less than the jsonl
        if self.tracker is not None:
            self.tracker.log({k: v for k, v in record.items() if k != "iteration"}, step=iteration)

    def close(self) -> None:
        self.events.close()
        if self.tracker is not None:
            self.tracker.finish()

    def step(self, iteration: int, loss: float, lr: float, grad_norm: float, tokens_per_s: float) -> None:
        """Record one optimizer step; print a progress line every log_interval steps."""
        figures = self.throughput.figures(tokens_per_s)
        self._append({"iteration": iteration, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                      "tokens_per_s": tokens_per_s, **figures})
        self.last_loss = loss
        if iteration % self.log_interval == 0 or iteration == self.train_iters:
            elapsed = time.time() - self.start_time
            per_step = elapsed / max(iteration - self.start_iteration, 1)
            speed = f"{tokens_per_s:.0f} tok/s | {figures['tflops_per_device']:.3g} TFLOP/s per device"
            if "mfu" in figures:
                speed += f" | MFU {figures['mfu']:.1%}"
            if "peak_gpu_memory_gib" in figures:
                speed += f" | peak memory {figures['peak_gpu_memory_gib']:.1f} GiB"
            log.info("iter %d/%d | loss %.4f | lr %.3g | grad_norm %.3f | %s | elapsed %.0fs | eta %.0fs",
                     iteration, self.train_iters, loss, lr, grad_norm, speed, elapsed,
                     per_step * (self.train_iters - iteration))

    def validation(self, iteration: int, val_loss: float) -> None:
        """Record a validation loss."""
        self._append({"iteration": iteration, "val_loss": val_loss})
        self.last_val_loss = val_loss
        log.info("iter %d/%d | validation loss %.4f", iteration, self.train_iters, val_loss)
