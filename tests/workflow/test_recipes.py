"""The real-model recipes (config/experiments/qwen3-*_nvidia_full): off unless named, and planned through
profiles/slurm as a user plans them before a run, against model folders holding the real config.json and tokenizer
files but no weights (prepare copies the weights at run time; a dry run never reads them)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from llmrunner.config import load_run_config
from tests.demo import jobs_of, planned_jobs, snakemake
from tests.paths import REPO
from tests.recipes import RECIPES

pytestmark = pytest.mark.workflow

def step_yaml(recipe: str, file_name: str) -> dict:
    return yaml.safe_load((REPO / f"config/experiments/{recipe}/steps/{file_name}").read_text())


def test_recipes_are_off_by_default(monkeypatch):
    """`snakemake` and `make demo` run the demo study; a recipe runs only when named."""
    monkeypatch.chdir(REPO)
    run = load_run_config(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    assert sorted(run.experiments) == ["demo", "demo-no-python_docs"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, recipe_models) -> subprocess.CompletedProcess:
    workdir = tmp_path_factory.mktemp("recipes")
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "resources").symlink_to(REPO / "resources")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMRUNNER_MODELS", str(recipe_models))
        return snakemake(workdir, "-n", "--profile", str(REPO / "profiles/slurm"),
                         "--config", f"experiments=[{','.join(RECIPES)}]")


@pytest.fixture(scope="module")
def plan(dry_run) -> str:
    return dry_run.stdout + dry_run.stderr


def test_every_step_of_both_recipes_is_planned(dry_run):
    jobs = planned_jobs(dry_run)
    per_recipe = {"prepare_base_model": 1, "hf2mg_base": 1, "train_stage": 2, "mg2hf_stage": 2, "eval_stage": 3,
                  "report_experiment": 1}
    for rule, count in per_recipe.items():
        assert jobs.get(rule) == count * len(RECIPES), (rule, jobs)
    # shards: 4 CPT tokenize jobs per dataset, merged into one
    assert jobs["tokenize_cpt_shard"] == 4 * 3 * len(RECIPES), jobs


@pytest.mark.parametrize("recipe", RECIPES)
def test_training_jobs_ask_slurm_for_what_the_recipe_says(plan, recipe):
    for stage, file_name in (("cpt", "4.train_cpt.yaml"), ("sft", "7.train_sft.yaml")):
        step = step_yaml(recipe, file_name)
        (job,) = [j for j in jobs_of(plan, "train_stage") if j["wildcards"] == {"exp": recipe, "stage": stage}]
        request = step["slurm"]
        assert {k: job["resources"][k] for k in ("nodes", "gres", "mem_mb", "runtime", "slurm_partition")} == {
            "nodes": str(request["nodes"]), "gres": f"gpu:{request['gpus_per_node']}",
            "mem_mb": str(request["mem_mb"]), "runtime": str(request["runtime"]), "slurm_partition": "gpu"}
        settings = json.loads(re.search(r"--settings '([^']+)'", job["command"]).group(1))
        assert settings["precision"] == "bf16"
        for key, value in step.items():  # every training setting the recipe writes reaches the job
            if key not in ("slurm", "threads") and not str(value).startswith("$"):
                assert settings[key] == value, key
        assert "slurm" not in settings  # the request is the job's resources, not a training setting


def test_the_recipes_train_the_real_model_they_name(plan):
    """prepare copies each recipe's model folder into its datapool, and hf2mg converts that copy."""
    for recipe, (folder, _) in RECIPES.items():
        (job,) = [j for j in jobs_of(plan, "prepare_base_model") if j["wildcards"]["exp"] == recipe]
        assert f"/{folder}" in job["command"], job["command"]
        (convert,) = [j for j in jobs_of(plan, "hf2mg_base") if j["wildcards"]["exp"] == recipe]
        assert f"experiments/{recipe}/model/base/{folder} " in convert["command"], convert["command"]
