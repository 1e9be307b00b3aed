#!/usr/bin/env python3
"""Prepare an experiment's datapool (base model + raw data), or clone an experiment.

  scripts/prepare_exp.py -c config/experiments/<exp>/pipeline.yaml
  scripts/prepare_exp.py --clone-experiment SRC DST [--copy-datapool]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmrunner.errors import LLMRunnerError  # noqa: E402
from llmrunner.experiments import clone_experiment, experiment_from_pipeline, run_snakemake  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", help="the experiment's pipeline.yaml")
    parser.add_argument("--clone-experiment", nargs=2, metavar=("SRC", "DST"), help="copy an experiment's config")
    parser.add_argument("--copy-datapool", action="store_true",
                        help="with --clone-experiment: copy data, models, reports too")
    args = parser.parse_args()
    if bool(args.config) == bool(args.clone_experiment):
        parser.error("give either -c PIPELINE_YAML or --clone-experiment SRC DST")
    if args.copy_datapool and not args.clone_experiment:
        parser.error("--copy-datapool goes with --clone-experiment")
    try:
        if args.clone_experiment:
            for path in clone_experiment(*args.clone_experiment, copy_datapool=args.copy_datapool):
                print(f"created {path}")
            return 0
        return run_snakemake(experiment_from_pipeline(args.config), ["prepare"], [])
    except LLMRunnerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
