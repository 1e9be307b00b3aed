"""python -m llmrunner.archive --comparison DIR/reports/baselines.json --plan JSON --out DIR/archive/index.md"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from llmrunner.archive.core import archive_all
from llmrunner.cli import run_main

log = logging.getLogger("llmrunner.archive")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.archive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comparison", required=True, type=Path,
                        help="baselines.json of the compare report: each experiment's paired Δ against its baseline")
    parser.add_argument("--plan", required=True,
                        help="JSON {exp: {baseline, primary, config_dir, config_record, data, stats, adapters}}")
    parser.add_argument("--out", required=True, type=Path,
                        help="index.md to write; entries go beside it, under <exp>/<entry>/")
    args = parser.parse_args(argv)
    decisions = archive_all(args.comparison, json.loads(args.plan), args.out)
    log.info("wrote %s (%d of %d experiments archived)", args.out, sum(d.archived for d in decisions),
             len(decisions))


if __name__ == "__main__":
    run_main(main)
