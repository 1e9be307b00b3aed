"""Entry point of the tokenize_cpt and tokenize_sft steps.

    python -m llmrunner.tokenize cpt --input PATH --tokenizer HF_DIR
        --out-prefix data/tokenized/cpt/<dataset> --settings JSON [--threads N]
    python -m llmrunner.tokenize sft --input PATH --tokenizer HF_DIR
        --out-prefix data/tokenized/sft/<dataset> --settings JSON [--threads N]

PATH is the processed .jsonl, or a raw folder of unified-schema files when udatasets is off.
--threads N (the Snakemake job's threads) overrides the settings' threads.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.jsonl import resolve_inputs
from llmrunner.tokenize.core import configure_threads, tokenize_cpt
from llmrunner.tokenize.settings import TokenizeCptSettings, TokenizeSftSettings
from llmrunner.tokenize.sft import tokenize_sft


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.tokenize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["cpt", "sft"])
    parser.add_argument("--input", required=True, type=Path, help="processed .jsonl, or a raw dataset folder")
    parser.add_argument("--tokenizer", required=True, type=Path, help="HF model folder with the tokenizer")
    parser.add_argument("--out-prefix", required=True, type=Path, help="data/tokenized/<kind>/<dataset>")
    parser.add_argument("--settings", default="{}", help="the step's settings as one JSON object")
    parser.add_argument("--threads", type=int, help="tokenizer threads (overrides the settings' threads)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even when run by hand
    values = parse_settings(args.settings)
    settings_class = TokenizeCptSettings if args.kind == "cpt" else TokenizeSftSettings
    settings = settings_class.from_dict(values)
    configure_threads(args.threads or settings.threads)
    inputs = resolve_inputs(args.input)
    if args.kind == "cpt":
        tokenize_cpt(inputs, args.tokenizer, args.out_prefix, append_eod=settings.append_eod)
    else:
        tokenize_sft(inputs, args.tokenizer, args.out_prefix, max_tokens=settings.max_tokens,
                     overlong=settings.overlong, train_on=settings.train_on)


if __name__ == "__main__":
    run_main(main)
