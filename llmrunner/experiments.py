"""Experiment management behind the `llmrunner` command (llmrunner.command) and scripts/*.py: put the demo project
in a folder, find an experiment from its pipeline.yaml, clone one, generate ablations of one, and run Snakemake.

A clone with its datapool (`--copy-datapool`) also gets Snakemake's record of how each copied output was made
(.snakemake/metadata/, with the source's paths rewritten to the clone's), and file times as they were: without
that record Snakemake cannot see that a changed config makes a copied output stale, and would keep the
source's results as the clone's, without a word. With it, a change in the clone's config reruns exactly the
steps it touches and what follows them; no change, no job. docs/experiments.md is the user's guide.

An ablation is such a clone with datasets left out (`A-no-<dataset>`) or all but one kept (`A-only-<dataset>`),
compared against its source (`baseline: A`): only the jobs that read the changed data rerun.

Like Snakemake itself, these work on the current directory (normally the repository root):
config/experiments/<exp>/, the datapool and .snakemake/ are found there."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from llmrunner.config import (
    EXPERIMENT_NAME,
    EXPERIMENTS_DIR,
    KINDS,
    STEP_FILES,
    discover_experiments,
    load_experiment,
    load_run_config,
    load_yaml,
)
from llmrunner.errors import ConfigError
from llmrunner.package_data import DEMO_DIR, PROFILES_DIR, SNAKEFILE
from llmrunner.schemas import fill_defaults, load_schema

# Snakemake's per-output records (its file persistence backend, the default): one JSON file per output path,
# named by the path's urlsafe base64, cut into folders of at most NAME_MAX - 1 characters, each but the last
# starting with '@' (snakemake/persistence/file.py, _record_path). `incomplete` marks outputs of jobs that
# started and did not finish.
SNAKEMAKE_RECORDS = (Path(".snakemake") / "metadata", Path(".snakemake") / "incomplete")
RUN_CONFIG = Path("config/config.yaml")


def init_project(folder: Path) -> list[Path]:
    """Copy the demo project the package ships (package_data.DEMO_DIR: config/ and resources/demo/) into `folder`.
    Refused, with nothing written, where either is there already."""
    parts = sorted(p.relative_to(DEMO_DIR) for p in (DEMO_DIR / "config", DEMO_DIR / "resources" / "demo"))
    present = [str(folder / part) for part in parts if os.path.lexists(folder / part)]
    if present:
        raise ConfigError(f"{', '.join(present)} already there: `llmrunner init` copies the demo project only into "
                          "a folder without them. Run it in an empty folder, or move them away first")
    for part in parts:
        shutil.copytree(DEMO_DIR / part, folder / part)  # follows the checkout's links: real files in the copy
    return [folder / part for part in parts]


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


def datapool() -> str:
    """The datapool folder of config/config.yaml (its default from the schema), as the rules write it."""
    return fill_defaults(load_yaml(RUN_CONFIG), load_schema("config"))["datapool"]


def datapool_root(experiment: str) -> str:
    """DATAPOOL_ROOT of an experiment, spelled as the rules spell it (Snakemake's records are keyed by it)."""
    return f"{datapool()}/experiments/{experiment}"


# ---------------------------------------------------------------- clone
def clone_experiment(src: str, dst: str, copy_datapool: bool = False) -> list[Path]:
    """Copy config/experiments/<src> to <dst>; with copy_datapool also its datapool (data, models, reports)
    and Snakemake's record of it, so that only what a later change in <dst>'s config touches reruns.
    Everything is checked before anything is written: a refused clone leaves nothing behind."""
    _check_clone(src, dst, copy_datapool)
    shutil.copytree(EXPERIMENTS_DIR / src, EXPERIMENTS_DIR / dst)
    made = [EXPERIMENTS_DIR / dst]
    if copy_datapool:
        made.append(_copy_datapool(src, dst))
    return made


def _check_clone(src: str, dst: str, copy_datapool: bool) -> None:
    if not EXPERIMENT_NAME.match(dst) or ".." in dst:
        raise ConfigError(f"experiment name '{dst}' is not allowed: use letters, digits, '_', '-', '.'")
    if not (EXPERIMENTS_DIR / src / "pipeline.yaml").is_file():
        known = ", ".join(discover_experiments()) if EXPERIMENTS_DIR.is_dir() else "none"
        raise ConfigError(f"no experiment '{src}' in {EXPERIMENTS_DIR} (experiments: {known})")
    if (EXPERIMENTS_DIR / dst).exists():
        raise ConfigError(f"{EXPERIMENTS_DIR / dst} already exists: experiment '{dst}' is there; choose another "
                          "name, or delete that folder first")
    pool_src, pool_dst = datapool_root(src), datapool_root(dst)
    if os.path.lexists(pool_dst):
        raise ConfigError(f"{pool_dst} already exists: outputs of an earlier experiment '{dst}' are there; choose "
                          "another name, or delete that folder first (a clone never mixes with older outputs)")
    if not copy_datapool:
        return
    if not os.path.isdir(pool_src):
        raise ConfigError(f"--copy-datapool: {pool_src} does not exist; run experiment '{src}' first, "
                          "or clone its config only")
    if not any(_records_under(pool_src, SNAKEMAKE_RECORDS[0])):
        raise ConfigError(f"--copy-datapool: .snakemake/metadata/ in {os.getcwd()} has no record of the outputs in "
                          f"{pool_src}, so Snakemake could not tell which of them a change in the clone's config "
                          f"makes stale. Run this from the folder where '{src}' ran (with Snakemake's default "
                          "file persistence backend), or clone its config only")


def _copy_datapool(src: str, dst: str, leave_out: frozenset[str] = frozenset()) -> Path:
    """Copy <src>'s DATAPOOL_ROOT to <dst>'s, file times kept (so that mtime triggers stay quiet), and Snakemake's
    records of the copied outputs, <src>'s paths rewritten to <dst>'s. Not copied: logs and benchmarks (they
    describe <src>'s runs), what the report rules (report_*) wrote (the pages name the experiment: the clone's
    first run makes its own, jobs of seconds), and the paths in `leave_out` (relative to the root)."""
    pool_src, pool_dst = datapool_root(src), datapool_root(dst)
    pages = {key[len(pool_src) + 1:] for key, record_file in _records_under(pool_src, SNAKEMAKE_RECORDS[0])
             if str(json.loads(record_file.read_text()).get("rule")).startswith("report_")}
    leave_out = leave_out | {"logs", "benchmarks"} | pages

    def left_out(rel: str) -> bool:
        return any(rel == p or rel.startswith(f"{p}/") for p in leave_out)

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = os.path.relpath(folder, pool_src)
        return {n for n in names if left_out(os.path.normpath(os.path.join(rel, n)))}

    shutil.copytree(pool_src, pool_dst, ignore=ignore)  # copy2: contents and file times
    rewrite = _path_rewriter(pool_src, pool_dst)
    for records in SNAKEMAKE_RECORDS:
        for key, record_file in list(_records_under(pool_src, records)):
            if left_out(key[len(pool_src) + 1:]):
                continue
            record = _rewrite_strings(json.loads(record_file.read_text()), rewrite)
            target = _record_file(records, rewrite(key))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(record))
            shutil.copystat(record_file, target)  # an incomplete marker's time is the job's start time
    return Path(pool_dst)


def _path_rewriter(old_root: str, new_root: str) -> Callable[[str], str]:
    """old_root → new_root wherever it starts a path in a string (not where it starts a longer name:
    experiments/demo is not rewritten in experiments/demo2)."""
    pattern = re.compile(re.escape(old_root) + r"(?![A-Za-z0-9_.-])")
    return lambda text: pattern.sub(lambda _: new_root, text)


def _rewrite_strings(value: Any, rewrite: Callable[[str], str]) -> Any:
    """Every string in a JSON value (keys too) rewritten: inputs, logs, params, the shell command, checksums."""
    if isinstance(value, str):
        return rewrite(value)
    if isinstance(value, list):
        return [_rewrite_strings(v, rewrite) for v in value]
    if isinstance(value, dict):
        return {rewrite(k): _rewrite_strings(v, rewrite) for k, v in value.items()}
    return value


def _records_under(root: str, records: Path) -> Iterator[tuple[str, Path]]:
    """(output path, record file) of Snakemake's records in `records` for outputs under `root`."""
    prefix = f"{root}/"
    for folder, _, files in os.walk(records):
        for name in files:
            record_file = Path(folder, name)
            parts = record_file.relative_to(records).parts
            try:
                key = urlsafe_b64decode("".join(p.removeprefix("@") for p in parts)).decode()
            except ValueError:
                continue  # not a record (Snakemake writes only base64 names here)
            if key.startswith(prefix):
                yield key, record_file


def _record_file(records: Path, key: str) -> Path:
    """Where Snakemake keeps the record of output `key` (snakemake/persistence/file.py, _record_path)."""
    max_len = os.pathconf(records, "PC_NAME_MAX") or 255
    name = urlsafe_b64encode(key.encode()).decode()
    chunks = [name[i: i + max_len - 1] for i in range(0, len(name), max_len - 1)]
    return records.joinpath(*(f"@{c}" for c in chunks[:-1]), chunks[-1])


# ---------------------------------------------------------------- ablations
@dataclass(frozen=True)
class Ablation:
    """One experiment of an ablation: <source> with the datasets `removed` left out of data.<kind>."""

    name: str
    kind: str
    removed: tuple[str, ...]
    description: str


def plan_ablations(src: str, datasets: list[str] | None = None, only: bool = False) -> list[Ablation]:
    """The ablations of <src>: one per dataset left out (<src>-no-<dataset>), or with `only` one per dataset
    kept alone among those of its kind (<src>-only-<dataset>). `datasets`: which to ablate (NAME, or KIND:NAME
    where a name is in both kinds); default every dataset of every kind that has at least 2. The name carries
    the kind (<src>-no-<kind>-<dataset>) only where a dataset name is in both kinds.

    An ablation that would leave a kind without datasets while its tokenize step is on is refused, naming the
    dataset: switching tokenize off would cascade into training and conversion and change more than the data,
    which is not an ablation of one dataset."""
    exp = load_experiment(src, datapool())
    by_kind = {kind: list(exp.datasets(kind)) for kind in KINDS}
    chosen = _chosen_datasets(src, by_kind, datasets)
    in_both = set(by_kind["cpt"]) & set(by_kind["sft"])
    mode = "only" if only else "no"
    plans, problems = [], []
    for kind, name in chosen:
        label = f"{kind}-{name}" if name in in_both else name
        removed = tuple(d for d in by_kind[kind] if d != name) if only else (name,)
        what = (f"only {kind} dataset {name} of {', '.join(by_kind[kind])}" if only
                else f"without {kind} dataset {name}")
        if not removed:
            problems.append(f"--only {name}: it is the only {kind} dataset of '{src}', so {src}-only-{label} would "
                            "be the same experiment")
        elif len(removed) == len(by_kind[kind]) and exp.enabled(f"tokenize_{kind}"):
            problems.append(f"{src}-{mode}-{label} would leave data.{kind} of {exp.config_dir / 'pipeline.yaml'} "
                            f"with no dataset while steps.tokenize_{kind} is on: leave {name} out of --datasets "
                            f"(an ablation needs at least 2 {kind} datasets)")
        plans.append(Ablation(f"{src}-{mode}-{label}", kind, removed, f"Ablation of {src}: {what}."))
    if problems:
        raise ConfigError("\n".join(problems))
    return plans


def _chosen_datasets(src: str, by_kind: dict[str, list[str]], wanted: list[str] | None) -> list[tuple[str, str]]:
    """(kind, dataset) pairs to ablate: the named ones, or every dataset of a kind with at least 2."""
    if wanted is None:
        chosen = [(k, d) for k in KINDS if len(by_kind[k]) >= 2 for d in by_kind[k]]
        if not chosen:
            counts = ", ".join(f"{len(by_kind[k])} {k}" for k in KINDS)
            raise ConfigError(f"'{src}' has no kind with 2 or more datasets ({counts}): nothing to ablate by "
                              "default; name datasets with --datasets")
        return chosen
    known = [f"{k}:{d}" for k in KINDS for d in by_kind[k]]
    chosen, unknown = [], []
    for item in wanted:
        kind, _, name = item.rpartition(":")
        matches = [(k, name) for k in ([kind] if kind else KINDS) if name in by_kind.get(k, [])]
        if len(matches) > 1:
            raise ConfigError(f"--datasets: '{name}' is a cpt and an sft dataset of '{src}': write cpt:{name} or "
                              f"sft:{name}")
        if not matches:
            unknown.append(item)
        chosen += [m for m in matches if m not in chosen]
    if unknown:
        raise ConfigError(f"--datasets: {', '.join(unknown)} not in data of "
                          f"{EXPERIMENTS_DIR / src / 'pipeline.yaml'} (datasets: {', '.join(known)})")
    return chosen


def ablate(src: str, datasets: list[str] | None = None, only: bool = False) -> list[Ablation]:
    """Create the ablations of <src> (plan_ablations): each a clone of <src> with `baseline: <src>` and its
    datasets left out of pipeline.yaml (and of the train step's `blend`, which may name them), and with <src>'s
    datapool when <src> has run, so that only the jobs that read the changed data rerun. Everything is checked
    before anything is written."""
    plans = plan_ablations(src, datasets, only)
    has_run = os.path.isdir(datapool_root(src))
    for plan in plans:
        _check_clone(src, plan.name, copy_datapool=has_run)
    exp = load_experiment(src, datapool())
    for plan in plans:
        shutil.copytree(EXPERIMENTS_DIR / src, EXPERIMENTS_DIR / plan.name)
        _write_ablation_config(EXPERIMENTS_DIR / plan.name, src, plan)
        if has_run:
            leave_out = {p.removeprefix(f"{exp.root}/") for d in plan.removed
                         for p in (exp.raw_dir(plan.kind, d), *exp.udatasets_outputs(plan.kind, d),
                                   *exp.tokenized_files(plan.kind, d))}
            _copy_datapool(src, plan.name, frozenset(leave_out))
    return plans


def _write_ablation_config(config_dir: Path, src: str, plan: Ablation) -> None:
    """pipeline.yaml without the removed datasets, with `baseline` and `description` set; the train step's
    `blend` without their weights."""
    header = (f"# {plan.description} Made by scripts/prepare_exp.py --ablate {src}.\n"
              "# Keys: config/schemas/pipeline.schema.json.\n")
    pipeline_file = config_dir / "pipeline.yaml"
    pipeline = {"description": plan.description, "baseline": src, **load_yaml(pipeline_file)}
    pipeline.update(description=plan.description, baseline=src)
    for name in plan.removed:
        del pipeline["data"][plan.kind][name]
    pipeline_file.write_text(header + yaml.safe_dump(pipeline, sort_keys=False, allow_unicode=True))
    step_file = config_dir / "steps" / STEP_FILES[f"train_{plan.kind}"]
    settings = load_yaml(step_file) if step_file.is_file() else {}
    blend = settings.get("blend")
    if isinstance(blend, dict) and set(blend) & set(plan.removed):
        settings["blend"] = {k: v for k, v in blend.items() if k not in plan.removed}
        step_file.write_text(f"# {plan.description} blend without the datasets left out.\n"
                             + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))


def run_command(experiments: list[str]) -> str:
    """The one Snakemake command that runs `experiments` side by side (in parallel on SLURM)."""
    return f"snakemake --profile profiles/local --config experiments=[{','.join(experiments)}]"


# ---------------------------------------------------------------- run
def run_profiles() -> list[str]:
    """The profiles a run can name (`profiles/<name>/`); `default` is not one: Snakemake loads it on its own."""
    return sorted(p.name for p in PROFILES_DIR.iterdir() if (p / "config.yaml").is_file() and p.name != "default")


def run_snakemake(experiments: list[str] | None, targets: list[str], extra: list[str], profile: str = "local") -> int:
    """Run the workflow the package ships on the project in the current directory, for `experiments` (None: the
    ones config/config.yaml names), with one of the profiles it ships (`run_profiles`). The config is validated
    first, so that its errors come before any job."""
    if not RUN_CONFIG.is_file():
        raise ConfigError(f"no {RUN_CONFIG} in {os.getcwd()}: the workflow runs on the project in the current "
                          "folder. Change to your project's folder, or run `llmrunner init` to copy the demo project "
                          "(config/ and resources/demo/) here")
    run_config = load_yaml(RUN_CONFIG)
    load_run_config({**run_config, **({"experiments": experiments} if experiments else {})}, str(RUN_CONFIG))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), *targets, "--profile", str(PROFILES_DIR / profile),
           *(["--config", f"experiments=[{','.join(experiments)}]"] if experiments else []), *extra]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)
