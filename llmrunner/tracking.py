"""Optional Weights & Biases tracking of training metrics and eval results.

Off unless W&B's own switch, `WANDB_MODE`, is `offline` or `online` in the environment the jobs run in
(Snakemake passes its environment on, to SLURM jobs too). Then every line a trainer writes to
`logs/metrics.jsonl` also goes to a W&B run, and every eval job logs its sets' scores. Runs are named
`<exp>/<what>` (`demo/cpt_checkpoints`, `demo/eval-sft`) and grouped by experiment; the project is
`WANDB_PROJECT` (default `llmrunner`), the entity `WANDB_ENTITY`, as W&B reads them. A run's local files go
beside the job's own outputs (`<checkpoints>/logs/wandb/`, `reports/eval/<stage>/wandb/`); offline runs are
uploaded later with `wandb sync <that folder>/offline-run-*`.

Tracking never changes an output, so it is not part of any job's params: switching it on reruns nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmrunner.errors import StageError

MODES = ("offline", "online")
DEFAULT_PROJECT = "llmrunner"


def start_run(what: str, datapool_root: Path, job_type: str, folder: Path) -> Any | None:
    """A W&B run for one job of the experiment at `datapool_root` (its folder name is the experiment), its
    files in `folder`/wandb/ (W&B's layout); None when tracking is off."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode not in MODES:
        return None
    try:
        import wandb
    except ImportError:
        raise StageError(f"WANDB_MODE={mode} asks for W&B tracking, but wandb is not installed: "
                         "pip install wandb (or unset WANDB_MODE)") from None
    experiment = datapool_root.resolve().name
    folder.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT), name=f"{experiment}/{what}",
                      group=experiment, job_type=job_type, dir=str(folder), mode=mode)


def log_summary(what: str, datapool_root: Path, job_type: str, folder: Path, values: dict) -> None:
    """One finished job's results as a W&B run's summary (the eval step's set scores); nothing when off."""
    run = start_run(what, datapool_root, job_type, folder)
    if run is not None:
        run.summary.update(values)
        run.finish()
