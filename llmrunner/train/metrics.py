"""`logs/metrics.jsonl` (one line per step, plus validation lines), the same scalars as TensorBoard
event files in `logs/tensorboard/` and, when W&B tracking is on (llmrunner.tracking), in a W&B run, and the
progress log line."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from llmrunner.tracking import start_run

log = logging.getLogger("llmrunner.train")

METRICS = Path("logs") / "metrics.jsonl"
TENSORBOARD = Path("logs") / "tensorboard"


class MetricsLog:
    """Appends metric lines and events; on resume, first drops those past the checkpoint being resumed."""

    def __init__(self, save_dir: Path, resume_iteration: int, train_iters: int, log_interval: int) -> None:
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
        self._append({"iteration": iteration, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                      "tokens_per_s": tokens_per_s})
        self.last_loss = loss
        if iteration % self.log_interval == 0 or iteration == self.train_iters:
            elapsed = time.time() - self.start_time
            per_step = elapsed / max(iteration - self.start_iteration, 1)
            log.info("iter %d/%d | loss %.4f | lr %.3g | grad_norm %.3f | %.0f tok/s | elapsed %.0fs | eta %.0fs",
                     iteration, self.train_iters, loss, lr, grad_norm, tokens_per_s, elapsed,
                     per_step * (self.train_iters - iteration))

    def validation(self, iteration: int, val_loss: float) -> None:
        """Record a validation loss."""
        self._append({"iteration": iteration, "val_loss": val_loss})
        self.last_val_loss = val_loss
        log.info("iter %d/%d | validation loss %.4f", iteration, self.train_iters, val_loss)
