"""Shared fixtures: a throwaway project folder with config/ and resources/ like the repository's,
and the short demo run that tests/workflow and tests/slurm share (one local run per session)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.demo import short_demo, snakemake
from tests.paths import REPO
from tests.recipes import RECIPES, write_recipe_models


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a copy of config/ (the demo study; not the real-model recipes, which need model
    folders) and the demo resources. Config paths are relative to the working directory, as in a real run."""
    shutil.copytree(REPO / "config", tmp_path / "config", ignore=lambda folder, names: set(names) & set(RECIPES))
    (tmp_path / "resources").symlink_to(REPO / "resources")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def recipe_models(tmp_path_factory) -> Path:
    """A $LLMRUNNER_MODELS folder for the real-model recipes (real config.json and tokenizer files, no weights)."""
    return write_recipe_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    short_demo(workdir)
    return workdir


@pytest.fixture(scope="session")
def demo_run(demo_workdir: Path) -> Path:
    """The short demo run end to end; returns its DATAPOOL_ROOT."""
    snakemake(demo_workdir, "--cores", "2", "--config", "experiments=[demo]")
    return demo_workdir / "datapool/experiments/demo"
