"""Experiment management: clone (with and without the datapool) and finding an experiment."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmrunner.errors import ConfigError
from llmrunner.experiments import clone_experiment, experiment_from_pipeline
from tests.paths import REPO


def test_clone_copies_config_only(project):
    made = clone_experiment("demo", "my_exp")
    assert made == [Path("config/experiments/my_exp")]
    assert Path("config/experiments/my_exp/steps/4.train_cpt.yaml").read_text() == \
        Path("config/experiments/demo/steps/4.train_cpt.yaml").read_text()
    assert not Path("datapool/experiments/my_exp").exists()


def test_clone_with_datapool_copies_data_models_reports(project):
    src = Path("datapool/experiments/demo")
    for rel in ("data/raw/cpt/x/a.jsonl", "model/base/tiny/config.json", "reports/report.md", "logs/old.log"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    clone_experiment("demo", "copy", copy_datapool=True)
    dst = Path("datapool/experiments/copy")
    assert (dst / "data/raw/cpt/x/a.jsonl").read_text() == "data/raw/cpt/x/a.jsonl"
    assert (dst / "model/base/tiny/config.json").exists() and (dst / "reports/report.md").exists()
    assert not (dst / "logs").exists()  # the source's job logs describe the source's runs


def test_clone_errors_name_the_problem(project):
    with pytest.raises(ConfigError, match="no experiment 'nope'.*experiments: demo"):
        clone_experiment("nope", "x")
    clone_experiment("demo", "twice")
    with pytest.raises(ConfigError, match="already exists"):
        clone_experiment("demo", "twice")
    with pytest.raises(ConfigError, match="not allowed"):
        clone_experiment("demo", "../escape")
    with pytest.raises(ConfigError, match="run the source experiment first"):
        clone_experiment("demo", "nodata", copy_datapool=True)


def test_experiment_from_pipeline(project):
    assert experiment_from_pipeline("config/experiments/demo/pipeline.yaml") == "demo"
    assert experiment_from_pipeline("config/experiments/demo") == "demo"
    Path("elsewhere").mkdir()
    Path("elsewhere/pipeline.yaml").write_text("{}")
    with pytest.raises(ConfigError, match="experiments live in"):
        experiment_from_pipeline("elsewhere/pipeline.yaml")


def test_prepare_exp_script_reports_errors_in_one_line():
    proc = subprocess.run([sys.executable, str(REPO / "scripts/prepare_exp.py"), "--clone-experiment", "nope", "x"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no experiment 'nope'") and "Traceback" not in proc.stderr
