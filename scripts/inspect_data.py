#!/usr/bin/env python3
"""Inspect raw data before writing its dataset entry (docs/inspect.md): samples, keys with types and fill rates,
lengths, and a pipeline.yaml entry whose adapter was run on the records read.

  scripts/inspect_data.py SOURCE [-n 5] [--max-records 100000] [--txt-mode document|paragraphs]

SOURCE: a raw file (.jsonl, .jsonl.gz, .jsonl.zst, .json, .parquet, .csv, .txt) or a folder of them.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmrunner.errors import LLMRunnerError  # noqa: E402
from llmrunner.schemas import load_schema  # noqa: E402
from llmrunner.udatasets.inspect import inspect_source, render  # noqa: E402


def at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a raw data file or a folder of them")
    parser.add_argument("-n", "--samples", type=at_least(0), default=5, help="records to show (default 5)")
    parser.add_argument("--max-records", type=at_least(1), default=100_000,
                        help="read at most this many records (default 100000)")
    parser.add_argument("--txt-mode", choices=load_schema("pipeline")["$defs"]["dataset"]["properties"]["txt_mode"]
                        ["enum"], help="how .txt files are read (default: the schema's, document)")
    args = parser.parse_args()
    try:
        print(render(inspect_source(args.source, args.samples, args.max_records, args.txt_mode)))
    except LLMRunnerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
