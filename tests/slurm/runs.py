"""Snakemake through profiles/slurm on the tests' local SLURM (tests/slurm/cluster.py): a run in the background,
and what its SLURM jobs were (the run's job name, each job's rule from its comment)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import REPO

PROFILE = REPO / "profiles/slurm"
# First status check 1 s after a submission or a finished job (plugin default 40 s; the interval
# then grows by 10 s per check that sees nothing finish).
POLLING = ("--slurm-init-seconds-before-status-checks", "1")
RUN_TIMEOUT_S = 900


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            "--profile", str(PROFILE), "--config", "experiments=[demo]", *args]


class SlurmRun:
    """`snakemake --profile profiles/slurm` in the background; output to a file (no pipe to drain)."""

    def __init__(self, workdir: Path, name: str, *args: str):
        self.log = workdir.parent / f"{workdir.name}.{name}.out"
        self.cmd = snakemake_cmd(workdir, *POLLING, *args)
        self.started = time.monotonic()
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, text=True,
                                         env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def stop(self) -> None:
        self.proc.terminate()  # Snakemake cancels its SLURM jobs on SIGTERM
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def wait(self, cluster) -> subprocess.CompletedProcess:
        try:
            self.proc.wait(timeout=max(1.0, RUN_TIMEOUT_S - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"{' '.join(self.cmd)} still running after {RUN_TIMEOUT_S} s:\n"
                        f"{self.log.read_text()[-6000:]}\n{cluster.daemon_logs()}", pytrace=False)
        except BaseException:  # interrupted: leave no Snakemake behind to poll a cluster going down
            self.stop()
            raise
        self.seconds = time.monotonic() - self.started
        return subprocess.CompletedProcess(self.cmd, self.proc.returncode, self.log.read_text(), "")


def run_id(proc: subprocess.CompletedProcess) -> str:
    """The SLURM job name the plugin gave every job of this run."""
    return re.search(r"SLURM run ID: (\S+)", proc.stdout).group(1)


def rule_of(job: dict) -> tuple[str, str]:
    """(rule, wildcards) from the job comment `rule_<rule>[_wildcards_<values>]`."""
    match = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.*))?", job.get("Comment", ""))
    assert match, f"SLURM job {job['JobId']} has no rule comment: {job.get('Comment')!r}"
    return match.group(1), match.group(2) or ""
