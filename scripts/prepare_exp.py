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
The seed's spelling of `llmrunner prepare --experiment <exp>`, `llmrunner clone` and `llmrunner ablate`.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmrunner.cli import exit_code  # noqa: E402
from llmrunner.command import clone, dataset_list, make_ablations  # noqa: E402
from llmrunner.experiments import experiment_from_pipeline, run_snakemake  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="the experiment's pipeline.yaml")
    parser.add_argument("--clone-experiment", nargs=2, metavar=("SRC", "DST"), help="copy an experiment's config")
    parser.add_argument("--copy-datapool", action="store_true",
                        help="with --clone-experiment: copy data, models, reports too (and Snakemake's record of them)")
    parser.add_argument("--ablate", metavar="SRC", help="make ablations of an experiment, one per dataset")
    parser.add_argument("--datasets", type=dataset_list, metavar="D1,D2",
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
    if args.clone_experiment:
        return exit_code(lambda: clone(*args.clone_experiment, copy_datapool=args.copy_datapool))
    if args.ablate:
        return exit_code(lambda: make_ablations(args.ablate, args.datasets, args.only))
    return exit_code(lambda: run_snakemake([experiment_from_pipeline(args.config)], ["prepare"], []))


if __name__ == "__main__":
    sys.exit(main())
