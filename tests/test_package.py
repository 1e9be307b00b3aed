"""The `llmrunner` command: its argparse surface, `init` and `run` in a folder of the user's own, and the package
as a user installs it: a wheel built from the sdist, installed into a fresh venv, plans the demo study with the
workflow, schemas, profiles and demo project it ships."""
from __future__ import annotations

import ast
import filecmp
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.demo import planned_jobs, snakemake
from tests.paths import REPO

# the project's own install (make install): its console script beside the interpreter running the tests
LLMRUNNER = Path(sys.executable).with_name("llmrunner")
COMMANDS = ("init", "run", "prepare", "clone", "ablate", "inspect")


def llmrunner(*args: str, cwd: Path, command: Path = LLMRUNNER) -> subprocess.CompletedProcess:
    return subprocess.run([str(command), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_help_lists_every_command(tmp_path):
    proc = llmrunner("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: llmrunner")
    assert all(f"    {name} " in proc.stdout for name in COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(tmp_path, name):
    proc = llmrunner(name, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: llmrunner {name}")


def test_unknown_command_prints_usage_and_fails(tmp_path):
    proc = llmrunner("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: llmrunner") and "invalid choice: 'frobnicate'" in proc.stderr


def test_unknown_experiment_prints_usage_and_names_the_known_ones(project):
    proc = llmrunner("run", "--experiment", "nope", "-n", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: llmrunner run")
    assert "no experiment 'nope' in config/experiments (experiments: demo, demo-no-python_docs)" in proc.stderr


def test_arguments_of_other_commands_are_not_passed_on(project):
    proc = llmrunner("clone", "demo", "copy", "-n", cwd=project)
    assert proc.returncode == 2 and "unrecognized arguments: -n" in proc.stderr
    assert not (project / "config/experiments/copy").exists()


def test_run_on_slurm_plans_each_training_job_as_a_slurm_job(project):
    proc = llmrunner("run", "--profile", "slurm", "--experiment", "demo", "-n", cwd=project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"--profile {REPO / 'profiles' / 'slurm'}" in proc.stdout  # the slurm profile the package ships
    assert planned_jobs(proc)["train_stage"] == 2


def test_run_outside_a_project_says_how_to_get_one(tmp_path):
    proc = llmrunner("run", "-n", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: no config/config.yaml in {tmp_path}") and "llmrunner init" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_init_copies_the_demo_project_once(tmp_path):
    proc = llmrunner("init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "created config" in proc.stdout and "llmrunner run -n" in proc.stdout
    for folder in ("config/experiments/demo", "config/experiments/demo-no-python_docs", "config/evalsets",
                   "resources/demo"):
        copy = tmp_path / folder
        assert not copy.is_symlink() and not filecmp.dircmp(REPO / folder, copy).diff_files
    assert filecmp.cmp(REPO / "config/config.yaml", tmp_path / "config/config.yaml", shallow=False)
    assert sorted(p.name for p in (tmp_path / "config/experiments").iterdir()) == ["demo", "demo-no-python_docs"]

    again = llmrunner("init", cwd=tmp_path)
    assert again.returncode == 1 and again.stderr.startswith("error: config, resources/demo already there")


def test_clone_command_copies_an_experiment(project):
    proc = llmrunner("clone", "demo", "my_exp", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "created config/experiments/my_exp\n"
    assert (project / "config/experiments/my_exp/pipeline.yaml").read_text() == \
        (REPO / "config/experiments/demo/pipeline.yaml").read_text()


def test_ablate_command_prints_the_llmrunner_command_that_runs_them(project):
    shutil.rmtree(project / "config/experiments/demo-no-python_docs")
    proc = llmrunner("ablate", "demo", "--datasets", "python_docs", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("created config/experiments/demo-no-python_docs: ")
    assert proc.stdout.endswith("  llmrunner run --experiment demo --experiment demo-no-python_docs\n")


# Declared, run rather than imported: Snakemake and its SLURM executor run the workflow; tensorboard is imported
# through torch.utils.tensorboard. Imported, not declared: Transformer Engine, used only where it imports.
RUN_NOT_IMPORTED = {"snakemake", "snakemake-executor-plugin-slurm", "tensorboard"}
OPTIONAL_IMPORTS = {"transformer_engine"}


def imported_distributions() -> set[str]:
    """The distributions whose modules llmrunner/ imports (absolute imports outside the standard library)."""
    tops = set()
    for path in (REPO / "llmrunner").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
    tops -= {*sys.stdlib_module_names, "llmrunner", "__future__", *OPTIONAL_IMPORTS}
    owners = packages_distributions()
    unknown = sorted(top for top in tops if top not in owners)
    assert not unknown, f"imported by llmrunner/ but not installed here: {unknown}"
    return {canonicalize_name(dist) for top in tops for dist in owners[top]}


def test_dependencies_are_what_the_package_imports():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    tracking = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["tracking"]}
    imported = imported_distributions()
    assert sorted(imported - required - tracking) == []  # every import declared (W&B: the tracking extra)
    assert sorted(required - imported) == sorted(RUN_NOT_IMPORTED)  # nothing declared that nothing uses


def build_wheel(out: Path) -> Path:
    """sdist from the checkout, then a wheel from that sdist (as pip does for a source release): the package
    data the checkout holds as symlinks must be real files in both."""
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.build_sdist(sys.argv[1])", str(out)], cwd=REPO, check=True, capture_output=True)
    sdist, = out.glob("llmrunner-*.tar.gz")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(sdist)], check=True, capture_output=True)
    wheel, = out.glob("llmrunner-*.whl")
    return wheel


def install_into_fresh_venv(wheel: Path, venv: Path) -> Path:
    """A venv that sees the current environment's packages (torch, megatron-core, Snakemake: not reinstalled)
    through a .pth line, but not the project's editable install (its import hook is set up by a .pth file there,
    which a path line does not run), with the wheel installed into it; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    (Path(own) / "current_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return python


@pytest.mark.slow
def test_installed_wheel_plans_the_demo_in_a_folder_of_its_own(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {"llmrunner/workflow/Snakefile", "llmrunner/workflow/rules/common.smk",
            "llmrunner/workflow/profiles/local/config.yaml", "llmrunner/workflow/schemas/pipeline.schema.json",
            "llmrunner/demo/config/experiments/demo/pipeline.yaml",
            "llmrunner/demo/resources/demo/cpt/python-docs.jsonl.gz"} <= shipped

    venv = tmp_path / "venv"
    python = install_into_fresh_venv(wheel, venv)
    where = subprocess.run([str(python), "-c", "import llmrunner; print(llmrunner.__file__)"], cwd=tmp_path,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv / "lib"), where  # the wheel's copy, not the checkout's

    work = tmp_path / "work"
    work.mkdir()
    command = venv / "bin" / "llmrunner"
    assert llmrunner("init", cwd=work, command=command).returncode == 0
    proc = llmrunner("run", "-n", cwd=work, command=command)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"-s {venv}" in proc.stdout  # the Snakefile the wheel installed
    jobs = planned_jobs(proc)
    assert jobs["train_stage"] == 4 and jobs["eval_stage"] == 6 and jobs["report_compare"] == 1  # both experiments
    assert jobs == planned_jobs(snakemake(work, "-n"))  # what the checkout's workflow plans there
    on_slurm = llmrunner("run", "--profile", "slurm", "-n", cwd=work, command=command)
    assert on_slurm.returncode == 0 and f"--profile {venv}" in on_slurm.stdout, on_slurm.stderr[-3000:]
