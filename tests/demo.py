"""Helpers for tests that run the real workflow (real Snakemake, real stages) on the demo:
a throwaway working directory with the demo config at CI-sized step counts, Snakemake as a user
runs it, and the plan of a dry run. The session fixtures using them are in tests/conftest.py."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.paths import REPO, write_yaml


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def copy_finished_demo(demo_workdir: Path, tmp_path_factory, name: str) -> Path:
    """The finished demo's working directory (config, datapool, .snakemake) copied to a new folder, file times
    and the resources link kept, so that a test can change it without touching the session's run."""
    copy = tmp_path_factory.mktemp(name) / "checkout"
    shutil.copytree(demo_workdir, copy, symlinks=True)
    return copy


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule name → job count from a dry run's 'Job stats' table."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].splitlines()
    jobs = {}
    for line in table[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def jobs_of(plan: str, rule: str) -> list[dict]:
    """Each planned job of `rule`: its wildcards, resources and shell command, from a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", plan):
        if not re.search(rf"^(?:local)?rule {rule}:$", block, re.M):
            continue
        fields = dict(re.findall(r"^ {4}(\w+): (.*)$", block, re.M))
        jobs.append({"wildcards": dict(kv.split("=", 1) for kv in fields["wildcards"].split(", "))
                     if "wildcards" in fields else {},
                     "resources": dict(kv.split("=", 1) for kv in fields["resources"].split(", ")),
                     "command": block.split("Shell command:", 1)[1].strip() if "Shell command:" in block else ""})
    return jobs


# the shipped ablation of demo (make demo runs both)
ABLATION = "demo-no-python_docs"


def short_demo(workdir: Path) -> None:
    """The shipped demo study (demo and its ablation) with CI-sized step counts, plus a CPT-off and an SFT-off
    variant of demo: the four experiments config.yaml runs."""
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "resources").symlink_to(REPO / "resources")
    overrides = {
        "4.train_cpt.yaml": {"train_iters": 30, "seq_length": 128, "save_interval": 15, "eval_interval": 15,
                             "warmup_iters": 3, "log_interval": 5},
        "7.train_sft.yaml": {"train_iters": 12, "seq_length": 256, "save_interval": 6, "eval_interval": 6,
                             "warmup_iters": 2, "log_interval": 3, "micro_batch_size": 2, "global_batch_size": 2},
        "8.eval.yaml": {"limit": 40},
    }
    for steps in (workdir / "config/experiments/demo/steps", workdir / f"config/experiments/{ABLATION}/steps"):
        for name, values in overrides.items():
            data = yaml.safe_load((steps / name).read_text()) or {}
            write_yaml(steps / name, {**data, **values})
    for variant, off in (("cpt_off", "train_cpt"), ("sft_off", "train_sft")):
        shutil.copytree(workdir / "config/experiments/demo", workdir / f"config/experiments/{variant}")
        pipeline_file = workdir / f"config/experiments/{variant}/pipeline.yaml"
        pipeline = yaml.safe_load(pipeline_file.read_text())
        pipeline["steps"][off] = False
        write_yaml(pipeline_file, pipeline)
    run_config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    write_yaml(workdir / "config/config.yaml", {**run_config, "experiments": ["demo", ABLATION, "cpt_off", "sft_off"]})

