"""Entry point of the prepare step.

    python -m llmrunner.prepare base-model --src SRC --out DIR
    python -m llmrunner.prepare raw-data [--sources FILE...] [--hf JSON...] --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from llmrunner.cli import run_main
from llmrunner.prepare.core import copy_raw_data, prepare_base_model
from llmrunner.udatasets.hf_sources import HfSource


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    base = commands.add_parser("base-model", help="copy an HF model folder, or build builtin:tiny-qwen3")
    base.add_argument("--src", required=True, help="HF model folder, or builtin:tiny-qwen3")
    base.add_argument("--out", required=True, type=Path, help="output folder (model/base/<name>)")
    raw = commands.add_parser("raw-data", help="copy raw data files into a dataset folder")
    raw.add_argument("--sources", nargs="*", default=[], type=Path, help="files (globs already expanded)")
    raw.add_argument("--hf", nargs="*", default=[], type=json.loads,
                     help="Hugging Face dataset sources, each a JSON object {hf, split, config, revision}")
    raw.add_argument("--out", required=True, type=Path, help="output folder (data/raw/<kind>/<dataset>)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even when run by hand
    if args.command == "base-model":
        prepare_base_model(args.src, args.out)
    else:
        copy_raw_data(args.sources, args.out, [HfSource(**source) for source in args.hf])


if __name__ == "__main__":
    run_main(main)
