#!/usr/bin/env python3
"""Run the pipeline for one experiment: scripts/run.py -c config/experiments/<exp>/pipeline.yaml [snakemake args...]

The seed's spelling of `llmrunner run --experiment <exp> [snakemake args...]`, which is
`snakemake --profile profiles/local --config experiments=[<exp>] ...`; extra arguments go to Snakemake
(a target such as train_sft, -n for a dry run, ...).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmrunner.cli import exit_code  # noqa: E402
from llmrunner.experiments import experiment_from_pipeline, run_snakemake  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default="config/experiments/demo/pipeline.yaml",
                        help="the experiment's pipeline.yaml")
    args, extra = parser.parse_known_args()
    return exit_code(lambda: run_snakemake([experiment_from_pipeline(args.config)], [], extra))


if __name__ == "__main__":
    sys.exit(main())
