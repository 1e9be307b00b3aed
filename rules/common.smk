# Config loading and validation (before any job starts), wildcard constraints, step targets.
import re
import sys

from llmrunner.config import load_run_config, set_job_environment
from llmrunner.errors import ConfigError

try:
    RUN = load_run_config(config)
except ConfigError as err:
    raise WorkflowError(f"LLMRunner config error:\n{err}") from None
for warning in RUN.warnings:
    print(f"LLMRunner config warning: {warning}", file=sys.stderr)

# DATAPOOL_ROOT of the experiment in a rule's wildcards.
ROOT = f"{RUN.datapool}/experiments/{{exp}}"
set_job_environment()


wildcard_constraints:
    exp="|".join(map(re.escape, RUN.experiments)) or "^$",
    kind="cpt|sft",
    stage="base|cpt|sft",
    dataset="[A-Za-z0-9][A-Za-z0-9_-]*",


def exp(wildcards):
    return RUN.exp(wildcards.exp)


def step_targets(step):
    return [p for e in RUN.experiments.values() for p in e.step_outputs(step)]
