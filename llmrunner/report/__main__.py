"""python -m llmrunner.report experiment --root DATAPOOL_ROOT --datapool DIR --out reports/report.md
python -m llmrunner.report compare --datapool DIR --experiments A B ... --out DIR/reports/compare.md"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from llmrunner.cli import run_main
from llmrunner.report.core import compare_report, experiment_report

log = logging.getLogger("llmrunner.report")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("experiment", help="one experiment: data, tokens, training, parity, eval")
    one.add_argument("--root", required=True, type=Path, help="the experiment's DATAPOOL_ROOT")
    one.add_argument("--datapool", required=True, type=Path,
                     help="the datapool (holds evalsets/<set>/<version>.json: the eval set versions seen)")
    one.add_argument("--out", required=True, type=Path, help="report.md to write; loss.png goes beside it")
    many = commands.add_parser("compare", help="several experiments side by side, a row per experiment × stage")
    many.add_argument("--datapool", required=True, type=Path, help="the datapool (holds experiments/<exp>/)")
    many.add_argument("--experiments", required=True, nargs="+", help="experiment names, in table order")
    many.add_argument("--out", required=True, type=Path, help="compare.md to write")
    args = parser.parse_args(argv)

    if args.command == "experiment":
        experiment_report(args.root, args.out, args.datapool)
    else:
        compare_report(args.datapool, args.experiments, args.out)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_main(main)
