"""Experiment management behind scripts/prepare_exp.py and scripts/run.py: find an experiment
from its pipeline.yaml, clone one, and run Snakemake for one experiment.

Like Snakemake itself, these work on the current directory (normally the repository root):
config/experiments/<exp>/ and the datapool are found there."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from llmrunner.config import EXPERIMENT_NAME, EXPERIMENTS_DIR, load_run_config, load_yaml
from llmrunner.errors import ConfigError
from llmrunner.schemas import REPO_ROOT


def experiment_from_pipeline(pipeline: str | Path) -> str:
    """config/experiments/<exp>/pipeline.yaml → <exp>, checking the file is where experiments live."""
    path = Path(pipeline)
    if path.is_dir():
        path = path / "pipeline.yaml"
    if not path.is_file():
        raise ConfigError(f"{pipeline}: no such pipeline config (expected config/experiments/<exp>/pipeline.yaml)")
    if path.resolve().parent.parent != EXPERIMENTS_DIR.resolve():
        raise ConfigError(f"{pipeline}: experiments live in {EXPERIMENTS_DIR}/<exp>/pipeline.yaml; "
                          "move the folder there (or clone one with --clone-experiment)")
    return path.parent.name


def datapool_root(experiment: str) -> Path:
    datapool = load_yaml(Path("config/config.yaml")).get("datapool", "datapool")
    return Path(datapool) / "experiments" / experiment


def clone_experiment(src: str, dst: str, copy_datapool: bool = False) -> list[Path]:
    """Copy config/experiments/<src> to <dst>; with copy_datapool also its data, models, reports."""
    if not EXPERIMENT_NAME.match(dst) or ".." in dst:
        raise ConfigError(f"experiment name '{dst}' is not allowed: use letters, digits, '_', '-', '.'")
    src_dir, dst_dir = EXPERIMENTS_DIR / src, EXPERIMENTS_DIR / dst
    if not (src_dir / "pipeline.yaml").is_file():
        known = sorted(p.name for p in EXPERIMENTS_DIR.iterdir() if (p / "pipeline.yaml").is_file())
        raise ConfigError(f"no experiment '{src}' in {EXPERIMENTS_DIR} (experiments: {', '.join(known)})")
    if dst_dir.exists():
        raise ConfigError(f"{dst_dir} already exists: choose another name or delete it first")
    shutil.copytree(src_dir, dst_dir)
    made = [dst_dir]
    if copy_datapool:
        pool_src, pool_dst = datapool_root(src), datapool_root(dst)
        if not pool_src.is_dir():
            raise ConfigError(f"--copy-datapool: {pool_src} does not exist; run the source experiment first "
                              f"(config copied to {dst_dir})")
        if pool_dst.exists():
            raise ConfigError(f"--copy-datapool: {pool_dst} already exists (config copied to {dst_dir})")
        # logs and benchmarks describe the source's runs, not the clone's
        shutil.copytree(pool_src, pool_dst, ignore=shutil.ignore_patterns("logs", "benchmarks"))
        made.append(pool_dst)
    return made


def run_snakemake(experiment: str, targets: list[str], extra: list[str]) -> int:
    """Run the workflow in the current directory for one experiment (config validated first, so
    errors come before any job)."""
    load_run_config({"experiments": [experiment]})
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "Snakefile"), *targets,
           "--profile", str(REPO_ROOT / "profiles/local"),
           "--config", f"experiments=[{experiment}]", *extra]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)
