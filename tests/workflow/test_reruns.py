"""Reruns a user relies on, on a copy of the finished demo: a copied checkout has nothing to do, no absolute
path reaches a rule, and a job killed after a config change is redone with everything after it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.demo import copy_finished_demo, planned_jobs, snakemake
from tests.paths import REPO

pytestmark = pytest.mark.workflow
EXPERIMENT = ("--config", "experiments=[demo]")


@pytest.fixture(scope="module")
def copied_demo(demo_run: Path, demo_workdir: Path, tmp_path_factory) -> Path:
    """The finished demo's working directory copied elsewhere (config, datapool, .snakemake), file times kept."""
    return copy_finished_demo(demo_workdir, tmp_path_factory, "moved")


def test_a_copied_checkout_has_nothing_to_do(copied_demo: Path):
    proc = snakemake(copied_demo, "-n", *EXPERIMENT)
    assert planned_jobs(proc) == {}, proc.stdout + proc.stderr


def test_no_absolute_path_in_inputs_outputs_or_commands(demo_run: Path, demo_workdir: Path):
    """What Snakemake records per output (inputs, shell command with the params) names no folder of this machine."""
    summary = snakemake(demo_workdir, "--detailed-summary", *EXPERIMENT).stdout
    rows = [line for line in summary.splitlines() if line.startswith(("datapool/", "/"))]
    assert len(rows) > 20
    for row in rows:
        for folder in (str(demo_workdir), str(REPO), str(Path.home())):
            assert folder not in row, row


def _jobs_of(workdir: Path, module: str) -> list[int]:
    """Processes running `python -m <module>` in `workdir` (jobs of a Snakemake run there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"-m" in cmdline and module.encode() in cmdline and cwd == str(workdir):
            found.append(int(entry.name))
    return found


def _arg(pid: int, flag: str) -> str | None:
    """The value after `flag` on process `pid`'s command line (None when it has gone or has no such flag)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def _start_snakemake(workdir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *EXPERIMENT,
           "-d", str(workdir)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _wait_for_job(run: subprocess.Popen, workdir: Path, module: str) -> list[int]:
    deadline = time.monotonic() + 180
    while run.poll() is None and time.monotonic() < deadline:
        if pids := _jobs_of(workdir, module):
            return pids
        time.sleep(0.02)
    return []


def test_a_killed_job_is_redone_with_everything_after_it(copied_demo: Path):
    """The issue's reproduction: a config change, the tokenize job killed with SIGKILL mid-run (Snakemake
    deletes its outputs), then `snakemake -n` must plan that job again and everything downstream — not
    "Nothing to be done" because the older checkpoints, models and reports still exist."""
    step = copied_demo / "config/experiments/demo/steps/2.tokenize_cpt.yaml"
    step.write_text(yaml.safe_dump({**(yaml.safe_load(step.read_text()) or {}), "append_eod": False}))
    run = _start_snakemake(copied_demo)
    killed = _wait_for_job(run, copied_demo, "llmrunner.tokenize")
    prefixes = {_arg(pid, "--out-prefix") for pid in killed}  # one tokenize job runs at a time on 2 cores
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    output = run.communicate(timeout=300)[0]
    assert killed, f"the tokenize job was not seen running:\n{output[-3000:]}"
    assert run.returncode != 0
    assert prefixes and all(not (copied_demo / f"{prefix}_text_document.bin").exists() for prefix in prefixes)

    jobs = planned_jobs(snakemake(copied_demo, "-n", *EXPERIMENT))
    assert jobs == {"tokenize_cpt_dataset": 3, "train_stage": 2, "mg2hf_stage": 2, "eval_stage": 2,
                    "report_experiment": 1, "report_feedback": 1, "report_compare": 1, "all": 1}


def test_a_second_trainer_after_snakemake_was_killed_is_refused(copied_demo: Path):
    """Snakemake killed, its training job runs on; `--unlock` and a rerun start the training job again, which
    must stop at once naming the running trainer, whose checkpoint folder it leaves alone."""
    run = _start_snakemake(copied_demo)  # tokenize (still to redo after the test above), then train_cpt
    trainers = _wait_for_job(run, copied_demo, "llmrunner.train")
    assert trainers, run.communicate(timeout=60)[0][-3000:]
    run.kill()  # SIGKILL: Snakemake cannot stop its job
    run.wait()
    [trainer] = trainers
    log = copied_demo / "datapool/experiments/demo/logs/train_cpt.log"
    try:
        deadline = time.monotonic() + 120
        while "llmrunner.train" not in log.read_text() and time.monotonic() < deadline:  # its first log lines
            time.sleep(0.1)
        os.kill(trainer, signal.SIGSTOP)  # the trainer holds the folder for as long as the test needs
        folder = copied_demo / "datapool/experiments/demo/model/cpt_checkpoints"
        before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
        snakemake(copied_demo, "--unlock", *EXPERIMENT)
        rerun = snakemake(copied_demo, "--cores", "2", *EXPERIMENT, check=False)
        assert rerun.returncode != 0
        message = f"training is already running in datapool/experiments/demo/model/cpt_checkpoints: pid {trainer}"
        assert message in log.read_text() and message in rerun.stdout + rerun.stderr  # show-failed-logs: the log
        assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    finally:
        os.kill(trainer, signal.SIGKILL)
