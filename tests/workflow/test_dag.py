"""The DAG a user sees before running anything: dry runs, switches, lint, the rule graph, bad config."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.demo import planned_jobs, snakemake
from tests.paths import REPO

pytestmark = pytest.mark.workflow


def test_full_plan_has_every_step(demo_workdir):
    jobs = planned_jobs(snakemake(demo_workdir, "-n", "-F", "--config", "experiments=[demo]"))
    # three CPT datasets (one per source) and one SFT dataset
    assert jobs == {"prepare_base_model": 1, "prepare_raw_data": 4, "udatasets_shard": 4, "udatasets_gather": 4,
                    "tokenize_cpt_dataset": 3, "tokenize_sft_dataset": 1, "hf2mg_base": 1, "train_stage": 2,
                    "mg2hf_stage": 2, "eval_stage": 3, "contamination": 1, "report_experiment": 1,
                    "report_feedback": 1, "report_compare": 1, "all": 1}


def test_cpt_off_trains_sft_from_base(demo_workdir):
    proc = snakemake(demo_workdir, "-n", "--config", "experiments=[cpt_off]")
    jobs = planned_jobs(proc)
    assert jobs["train_stage"] == 1 and jobs["eval_stage"] == 2 and jobs["mg2hf_stage"] == 1
    assert "--init datapool/experiments/cpt_off/model/mg/base" in proc.stdout
    assert "cpt_checkpoints" not in proc.stdout


def test_sft_off_ends_at_cpt_eval(demo_workdir):
    proc = snakemake(demo_workdir, "-n", "--config", "experiments=[sft_off]")
    jobs = planned_jobs(proc)
    assert jobs["train_stage"] == 1 and jobs["mg2hf_stage"] == 1 and jobs["eval_stage"] == 2
    assert "sft_checkpoints" not in proc.stdout


def test_target_train_sft_builds_only_what_sft_needs(demo_workdir):
    jobs = planned_jobs(snakemake(demo_workdir, "-n", "-F", "train_sft", "--config", "experiments=[demo]"))
    assert "eval_stage" not in jobs and "mg2hf_stage" not in jobs and "report_experiment" not in jobs
    assert jobs["train_stage"] == 2  # SFT continues from CPT


def test_lint_is_clean(demo_workdir):
    proc = snakemake(demo_workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefiles_are_snakefmt_formatted():
    # line length from pyproject.toml's [tool.snakefmt]; `snakefmt Snakefile rules` fixes what this finds
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "--diff", "Snakefile", "rules"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz (dot) not installed")
def test_rulegraph_draws(demo_workdir):
    graph = snakemake(demo_workdir, "--rulegraph", "--config", "experiments=[demo]").stdout
    svg = subprocess.run(["dot", "-Tsvg"], input=graph, capture_output=True, text=True, check=True).stdout
    assert "<svg" in svg and "train_stage" in svg


def test_config_typo_stops_before_any_job(demo_workdir):
    bad = demo_workdir / "config/experiments/demo/steps/1.udatasets.yaml"
    original = bad.read_text()
    bad.write_text(original + "min_char: 3\n")
    try:
        proc = snakemake(demo_workdir, "--cores", "1", "--config", "experiments=[demo]", check=False)
    finally:
        bad.write_text(original)
    assert proc.returncode != 0
    assert "1.udatasets.yaml: unknown key 'min_char' (did you mean 'min_chars'?)" in proc.stdout + proc.stderr
    assert "Building DAG" not in proc.stderr + proc.stdout


def test_bad_experiment_name_stops_the_run(demo_workdir):
    proc = snakemake(demo_workdir, "-n", "--config", "experiments=[../x]", check=False)
    assert proc.returncode != 0 and "experiment name '../x' is not allowed" in proc.stdout + proc.stderr
