# Config loading and validation (before any job starts), wildcard constraints, step targets.
import os
import re
import sys

from llmrunner.config import load_run_config, set_job_environment
from llmrunner.errors import ConfigError
from llmrunner.layout import ExperimentLayout

try:
    RUN = load_run_config(config)
except ConfigError as err:
    raise WorkflowError(f"LLMRunner config error:\n{err}") from None
for warning in RUN.warnings:
    print(f"LLMRunner config warning: {warning}", file=sys.stderr)

# DATAPOOL_ROOT of the experiment in a rule's wildcards.
ROOT = f"{RUN.datapool}/experiments/{{exp}}"
# Its files, as llmrunner/layout.py names them.
PATHS = ExperimentLayout(ROOT)
set_job_environment()


wildcard_constraints:
    exp="|".join(map(re.escape, RUN.experiments)) or "^$",
    kind="cpt|sft",
    stage="base|cpt|sft",
    dataset="[A-Za-z0-9][A-Za-z0-9_-]*",


# What a job asks its cluster for, declared here rather than in the SLURM profile (whose set-resources would
# override it; the profile names only partitions and account): memory in MB, time limit in minutes, and GPU jobs
# one GPU. Training asks for what its experiment's train steps say (rules/train.smk). Local runs ignore them.
CPU_JOB = {"mem_mb": 8000, "runtime": 120}
GPU_JOB = {"gres": "gpu:1", "mem_mb": 64000, "runtime": 60}  # hf2mg, mg2hf
EVAL_JOB = GPU_JOB | {"runtime": 240}
# The one software environment of every rule (README, Everyday use); it installs the project from this folder.
ENV = "../envs/llmrunner.yaml"
os.environ.update(LLMRUNNER_WORKFLOW=workflow.basedir)


def exp(wildcards):
    return RUN.exp(wildcards.exp)


def step_targets(step):
    return [p for e in RUN.experiments.values() for p in e.step_outputs(step)]
