"""The `llmrunner` command (`llmrunner -h`; each subcommand's `-h`): the workflow the package ships, run on the
project in the current folder (config/, the datapool). scripts/run.py, scripts/prepare_exp.py and
scripts/inspect_data.py are the seed's spellings of the same functions."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from llmrunner.cli import exit_code
from llmrunner.config import EXPERIMENTS_DIR, discover_experiments
from llmrunner.experiments import (
    ablate,
    clone_experiment,
    datapool_root,
    init_project,
    run_command,
    run_profiles,
    run_snakemake,
)
from llmrunner.package_data import SCHEMA_DIR
from llmrunner.schemas import load_schema
from llmrunner.udatasets.inspect import inspect_source, render

DESCRIPTION = """\
Run LLM data experiments with the workflow this package ships, on the project in the current folder: config/
(config.yaml, experiments/, evalsets/) and the datapool the runs write. `llmrunner init` puts the demo project
in an empty folder. Guides: README.md, docs/experiments.md, docs/inspect.md."""
SNAKEMAKE_ARGS = ("Other arguments go to Snakemake as they are: a target (train_sft, ...), -n for a dry run, "
                  "--cores N (`snakemake -h` lists them).")


def init(folder: Path) -> int:
    """`llmrunner init`: copy the demo project into `folder` and say what to run next."""
    for path in init_project(folder):
        print(f"created {path}")
    print("see the plan: llmrunner run -n; run the demo study: llmrunner run (settings: config/config.yaml)")
    print(f"every config key's type, default and meaning: {SCHEMA_DIR.resolve()}")
    return 0


def clone(src: str, dst: str, copy_datapool: bool) -> int:
    """`llmrunner clone`: copy an experiment's config (and with copy_datapool its datapool)."""
    for path in clone_experiment(src, dst, copy_datapool=copy_datapool):
        print(f"created {path}")
    return 0


def llmrunner_run_command(experiments: list[str]) -> str:
    """The `llmrunner run` command that runs `experiments` side by side (experiments.run_command: Snakemake's)."""
    return " ".join(["llmrunner run", *(f"--experiment {name}" for name in experiments)])


def make_ablations(src: str, datasets: list[str] | None, only: bool,
                   command: Callable[[list[str]], str] = run_command) -> int:
    """`llmrunner ablate`: make the ablations of `src`, say what was made and the one `command` that runs them."""
    plans = ablate(src, datasets, only=only)
    copied = os.path.isdir(datapool_root(plans[0].name))
    for plan in plans:
        pool = f" and {datapool_root(plan.name)}" if copied else ""
        print(f"created {EXPERIMENTS_DIR / plan.name}{pool}: {plan.description}")
    if not copied:
        print(f"{src} has not run yet (no {datapool_root(src)}): each ablation runs from the start")
    print("run them all, with the baseline for the compare page:")
    print(f"  {command([src, *(p.name for p in plans)])}")
    return 0


def experiment_name(name: str) -> str:
    """An argparse type: a folder under config/experiments/ (not checked without that folder: the run then says
    where the project's config should be)."""
    if EXPERIMENTS_DIR.is_dir() and name not in discover_experiments():
        raise argparse.ArgumentTypeError(f"no experiment '{name}' in {EXPERIMENTS_DIR} "
                                         f"(experiments: {', '.join(discover_experiments())})")
    return name


def dataset_list(text: str) -> list[str]:
    """An argparse type: --datasets D1,D2 → [D1, D2]."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one dataset: --datasets D1,D2")
    return names


def at_least(minimum: int):
    """An argparse type: an int no smaller than `minimum`."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `llmrunner inspect` (and scripts/inspect_data.py)."""
    parser.add_argument("source", help="a raw data file (.jsonl, .jsonl.gz, .jsonl.zst, .json, .parquet, .csv, "
                                       ".txt) or a folder of them")
    parser.add_argument("-n", "--samples", type=at_least(0), default=5, help="records to show (default 5)")
    parser.add_argument("--max-records", type=at_least(1), default=100_000,
                        help="read at most this many records (default 100000)")
    parser.add_argument("--txt-mode", choices=load_schema("pipeline")["$defs"]["dataset"]["properties"]["txt_mode"]
                        ["enum"], help="how .txt files are read (default: the schema's, document)")


def inspect(args: argparse.Namespace) -> int:
    """`llmrunner inspect`: samples, keys, lengths and a suggested pipeline.yaml entry for raw data."""
    print(render(inspect_source(args.source, args.samples, args.max_records, args.txt_mode)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmrunner", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub = commands.add_parser("init", help="copy the demo project (config/, resources/demo/) into a folder",
                              description="Copy the demo project into FOLDER: config/ (config.yaml, the eval sets, "
                                          "the demo study's experiments) and resources/demo/ (its data).")
    sub.add_argument("folder", nargs="?", type=Path, default=Path("."), help="where (default: the current folder)")
    sub.set_defaults(action=lambda args, extra: init(args.folder))

    for name, targets, what in (("run", [], "run the workflow (Snakemake) in the current folder"),
                                ("prepare", ["prepare"], "prepare the datapool: base model and raw data")):
        sub = commands.add_parser(name, help=what, allow_abbrev=False,
                                  description=f"{what[0].upper()}{what[1:]}, for the experiments config/config.yaml "
                                              f"names or those given. {SNAKEMAKE_ARGS}")
        sub.add_argument("--experiment", action="append", type=experiment_name, metavar="EXP",
                         help="an experiment (a folder under config/experiments/); repeat for more")
        sub.add_argument("--profile", choices=run_profiles(), default="local",
                         help="where the jobs run: local (this machine, the default) or slurm (each job a SLURM job; "
                              "README, SLURM)")
        sub.set_defaults(action=lambda args, extra, targets=targets: run_snakemake(args.experiment, targets, extra,
                                                                                   args.profile),
                         passes_extra=True)

    sub = commands.add_parser("clone", help="copy an experiment's config (and its datapool)",
                              description="Copy config/experiments/SRC to DST. Guide: docs/experiments.md.")
    sub.add_argument("src")
    sub.add_argument("dst")
    sub.add_argument("--copy-datapool", action="store_true",
                     help="copy data, models, reports too (and Snakemake's record of them): a change in DST's config "
                          "then reruns exactly the steps it touches")
    sub.set_defaults(action=lambda args, extra: clone(args.src, args.dst, args.copy_datapool))

    sub = commands.add_parser("ablate", help="make ablations of an experiment, one per dataset",
                              description="Make one experiment per dataset left out (SRC-no-<dataset>), each with "
                                          "`baseline: SRC` and SRC's datapool when SRC has run, and print the one "
                                          "command that runs them all. Guide: docs/experiments.md.")
    sub.add_argument("src")
    sub.add_argument("--datasets", type=dataset_list, metavar="D1,D2",
                     help="the datasets to ablate (NAME or KIND:NAME); default: every dataset of every kind that has "
                          "at least 2")
    sub.add_argument("--only", action="store_true",
                     help="keep each dataset alone among its kind (SRC-only-<dataset>) instead of leaving it out")
    sub.set_defaults(action=lambda args, extra: make_ablations(args.src, args.datasets, args.only,
                                                               llmrunner_run_command))

    sub = commands.add_parser("inspect", help="look at raw data before writing its dataset entry",
                              description="Samples, keys with types and fill rates, lengths, and a pipeline.yaml "
                                          "entry whose adapter was run on the records read (docs/inspect.md).")
    add_inspect_arguments(sub)
    sub.set_defaults(action=lambda args, extra: inspect(args))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the subcommand; its exit code (Snakemake's for run and prepare)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return exit_code(lambda: args.action(args, extra))


if __name__ == "__main__":
    sys.exit(main())
