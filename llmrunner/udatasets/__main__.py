"""Entry point of the udatasets step.

    python -m llmrunner.udatasets --kind cpt|sft --input RAW_DIR
        --out data/processed/<kind>/<dataset>.jsonl --settings JSON
"""
from __future__ import annotations

import argparse
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.jsonl import resolve_inputs
from llmrunner.udatasets.core import clean_documents
from llmrunner.udatasets.readers import RAW_SUFFIXES
from llmrunner.udatasets.settings import UdatasetsSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.udatasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", required=True, choices=["cpt", "sft"])
    parser.add_argument("--input", required=True, type=Path,
                        help="raw dataset folder (its data files are read in name order: "
                             + ", ".join(RAW_SUFFIXES) + ")")
    parser.add_argument("--out", required=True, type=Path, help="data/processed/<kind>/<dataset>.jsonl")
    parser.add_argument("--settings", default="{}", help="the step's settings as one JSON object")
    args = parser.parse_args(argv)

    settings = UdatasetsSettings.from_dict(parse_settings(args.settings))
    dataset = args.out.name.removesuffix(".jsonl")  # the rule names the output after the dataset
    clean_documents(resolve_inputs(args.input, RAW_SUFFIXES), args.out,
                    adapter=settings.make_adapter(args.kind, dataset), min_chars=settings.min_chars,
                    max_chars=settings.max_chars, dedup=settings.dedup, txt_mode=settings.txt_mode,
                    cleaning=settings.cleaning())


if __name__ == "__main__":
    run_main(main)
