"""python -m llmrunner.report experiment --root DATAPOOL_ROOT --datapool DIR --out reports/report.md
python -m llmrunner.report compare --datapool DIR --experiments A B ... --out DIR/reports/compare.md
python -m llmrunner.report feedback --root DATAPOOL_ROOT [--baseline-root DATAPOOL_ROOT] --out reports/feedback
python -m llmrunner.report dashboard --datapool DIR --experiments A B ... --out DIR/reports/index.html"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from llmrunner.cli import run_main
from llmrunner.report.core import compare_report, experiment_report
from llmrunner.report.feedback import Sizes, feedback
from llmrunner.report.html import dashboard

log = logging.getLogger("llmrunner.report")


def _count(text: str) -> int:
    """A sample size: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("experiment", help="one experiment: data, tokens, training, parity, eval")
    one.add_argument("--root", required=True, type=Path, help="the experiment's DATAPOOL_ROOT")
    one.add_argument("--datapool", required=True, type=Path,
                     help="the datapool (holds evalsets/<set>/<version>.json: the eval set versions seen)")
    one.add_argument("--out", required=True, type=Path, help="report.md to write (the loss plot: <root>/reports)")
    many = commands.add_parser("compare", help="several experiments side by side, a row per experiment × stage")
    many.add_argument("--datapool", required=True, type=Path, help="the datapool (holds experiments/<exp>/)")
    many.add_argument("--experiments", required=True, nargs="+", help="experiment names, in table order")
    many.add_argument("--out", required=True, type=Path, help="compare.md to write")
    fb = commands.add_parser("feedback", help="flipped eval items, largest gains and losses, samples of the "
                             "training data that changed (docs/feedback.md)")
    fb.add_argument("--root", required=True, type=Path, help="the experiment's DATAPOOL_ROOT")
    fb.add_argument("--baseline-root", type=Path, default=None,
                    help="the baseline experiment's DATAPOOL_ROOT; without it, the experiment's final stage is set "
                         "against its base model and every dataset is sampled")
    fb.add_argument("--out", required=True, type=Path,
                    help="the folder to write: index.md, eval.md, eval.jsonl, data.md, data.jsonl")
    fb.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    sizes = {"flips": (20, "flipped items per set, stage and direction"),
             "top": (10, "largest gains and largest losses per set and stage"),
             "kept": (5, "random kept records per dataset"),
             "rejects": (3, "random rejects per dataset and reject reason"),
             "clusters": (5, "largest duplicate clusters per dataset"),
             "members": (5, "duplicates listed per cluster")}
    for name, (default, meaning) in sizes.items():
        fb.add_argument(f"--{name}", type=_count, default=default, help=f"{meaning} (default {default})")
    board = commands.add_parser("dashboard", help="HTML pages: index.html of the run, and each experiment's "
                                "reports/report.html (run `compare` first: they show its baselines.json)")
    board.add_argument("--datapool", required=True, type=Path, help="the datapool (holds experiments/<exp>/)")
    board.add_argument("--experiments", required=True, nargs="+", help="experiment names, in table order")
    board.add_argument("--out", required=True, type=Path,
                       help="index.html to write; each experiment's page goes to <datapool>/experiments/<exp>/"
                            "reports/report.html")
    args = parser.parse_args(argv)

    if args.command == "experiment":
        experiment_report(args.root, args.out, args.datapool)
    elif args.command == "dashboard":
        for page in dashboard(args.datapool, args.experiments, args.out):
            log.info("wrote %s", page)
        return
    elif args.command == "feedback":
        feedback(args.root, args.baseline_root, args.out, Sizes(**{name: getattr(args, name) for name in sizes}),
                 args.seed)
    else:
        compare_report(args.datapool, args.experiments, args.out)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_main(main)
