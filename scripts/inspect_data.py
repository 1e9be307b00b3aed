#!/usr/bin/env python3
"""Inspect raw data before writing its dataset entry (docs/inspect.md): samples, keys with types and fill rates,
lengths, and a pipeline.yaml entry whose adapter was run on the records read.

  scripts/inspect_data.py SOURCE [-n 5] [--max-records 100000] [--txt-mode document|paragraphs]

SOURCE: a raw file (.jsonl, .jsonl.gz, .jsonl.zst, .json, .parquet, .csv, .txt) or a folder of them.
The seed's spelling of `llmrunner inspect`.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmrunner.cli import exit_code  # noqa: E402
from llmrunner.command import add_inspect_arguments, inspect  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_inspect_arguments(parser)
    args = parser.parse_args()
    return exit_code(lambda: inspect(args))


if __name__ == "__main__":
    sys.exit(main())
