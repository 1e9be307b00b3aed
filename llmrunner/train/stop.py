"""Stopping on a scheduler's signal: finish the step, save a checkpoint, exit non-zero.

SLURM sends SIGUSR2 ahead of the wall-time limit when a job submitted by hand asks for it
(`sbatch --signal=B:SIGUSR2@<seconds>`; under Snakemake's executor the time limit is read instead,
launch.py), and SIGTERM when it cancels or preempts a job. Either one only sets a flag; the
training loop reads it after every step, saves, and leaves with exit status 128 + signal, so
Snakemake keeps the job incomplete and its rerun resumes from that checkpoint.
"""
from __future__ import annotations

import logging
import signal

import torch

log = logging.getLogger("llmrunner.train")

STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


class StopRequest:
    """The stop flag, set from a signal handler and read at step boundaries."""

    def __init__(self) -> None:
        self.signum = 0

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum:
            # torchrun forwards SLURM's signal, and a SIGTERM often follows SIGUSR2: keep saving.
            log.warning("%s received while stopping: the checkpoint is still being written",
                        signal.Signals(signum).name)
            return
        self.signum = signum
        log.warning("%s received: stopping after this step with a checkpoint", signal.Signals(signum).name)

    def agreed(self) -> int:
        """The signal any rank received (0: none), the same on every rank.

        One all-reduce per step: a rank must not leave the loop while the others still enter the
        next step's collectives (torchrun forwards a signal to every worker, but not at one instant).
        """
        flag = torch.tensor([self.signum], device="cuda" if torch.cuda.is_available() else "cpu")
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())
