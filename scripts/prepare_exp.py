#!/usr/bin/env python3
"""Prepare an experiment's datapool (base model + raw data), clone an experiment, or make ablations of one.

  scripts/prepare_exp.py -c config/experiments/<exp>/pipeline.yaml
  scripts/prepare_exp.py --clone-experiment SRC DST [--copy-datapool]
  scripts/prepare_exp.py --ablate SRC [--datasets D1,D2] [--only]

--copy-datapool copies SRC's data, models and reports with Snakemake's record of them: a change in DST's
config then reruns exactly the steps it touches and what follows them. --ablate makes one experiment per
dataset left out (SRC-no-<dataset>; with --only, one per dataset kept alone among its kind: SRC-only-<dataset>),
each with `baseline: SRC` and SRC's datapool when SRC has run; by default every dataset of every kind that has
at least 2. It prints the one snakemake command that runs them all. Guide: docs/experiments.md.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmrunner.errors import LLMRunnerError  # noqa: E402
from llmrunner.experiments import (  # noqa: E402
    ablate,
    clone_experiment,
    datapool_root,
    experiment_from_pipeline,
    run_command,
    run_snakemake,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="the experiment's pipeline.yaml")
    parser.add_argument("--clone-experiment", nargs=2, metavar=("SRC", "DST"), help="copy an experiment's config")
    parser.add_argument("--copy-datapool", action="store_true",
                        help="with --clone-experiment: copy data, models, reports too (and Snakemake's record of them)")
    parser.add_argument("--ablate", metavar="SRC", help="make ablations of an experiment, one per dataset")
    parser.add_argument("--datasets", metavar="D1,D2",
                        help="with --ablate: the datasets to ablate (NAME or KIND:NAME); default: every dataset of "
                             "every kind that has at least 2")
    parser.add_argument("--only", action="store_true",
                        help="with --ablate: keep each dataset alone among its kind instead of leaving it out")
    args = parser.parse_args()
    if sum(map(bool, (args.config, args.clone_experiment, args.ablate))) != 1:
        parser.error("give one of -c PIPELINE_YAML, --clone-experiment SRC DST, --ablate SRC")
    if args.copy_datapool and not args.clone_experiment:
        parser.error("--copy-datapool goes with --clone-experiment (--ablate copies the datapool itself)")
    if (args.datasets or args.only) and not args.ablate:
        parser.error("--datasets and --only go with --ablate")
    try:
        if args.clone_experiment:
            for path in clone_experiment(*args.clone_experiment, copy_datapool=args.copy_datapool):
                print(f"created {path}")
            return 0
        if args.ablate:
            datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
            plans = ablate(args.ablate, datasets, only=args.only)
            copied = os.path.isdir(datapool_root(plans[0].name))
            for plan in plans:
                pool = f" and {datapool_root(plan.name)}" if copied else ""
                print(f"created config/experiments/{plan.name}{pool}: {plan.description}")
            if not copied:
                print(f"{args.ablate} has not run yet (no {datapool_root(args.ablate)}): each ablation runs from "
                      "the start")
            print("run them all, with the baseline for the compare page (profiles/slurm on a cluster):")
            print(f"  {run_command([args.ablate, *(p.name for p in plans)])}")
            return 0
        return run_snakemake(experiment_from_pipeline(args.config), ["prepare"], [])
    except LLMRunnerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
