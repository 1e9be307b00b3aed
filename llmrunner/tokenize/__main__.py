"""Entry point of the tokenize_cpt and tokenize_sft steps.

    python -m llmrunner.tokenize cpt --input PATH --tokenizer HF_DIR
        --out-prefix data/tokenized/cpt/<dataset> --settings JSON [--threads N]
    python -m llmrunner.tokenize sft --input PATH --tokenizer HF_DIR
        --out-prefix data/tokenized/sft/<dataset> --settings JSON [--threads N]

PATH is the processed .jsonl, or a raw folder of unified-schema files when udatasets is off.
--threads N (the Snakemake job's threads) overrides the settings' threads.

Sharded (the `shards` setting above 1): each of N jobs writes one shard, then one job merges them:
    python -m llmrunner.tokenize cpt ... --out-prefix .shards/<dataset>.K-of-N --shard K --shards N
    python -m llmrunner.tokenize cpt ... --out-prefix data/tokenized/cpt/<dataset> --merge SHARD_PREFIX...
Shard K (0-based) takes the K-th of N contiguous blocks of the input lines; the merge writes the
bytes an unsharded run writes.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.jsonl import resolve_inputs
from llmrunner.tokenize.core import (
    CPT_SUMMED,
    Shard,
    merge_shards,
    require_tokens,
    tokenize_cpt,
)
from llmrunner.tokenize.settings import TokenizeCptSettings, TokenizeSftSettings
from llmrunner.tokenize.sft import SFT_SUMMED, require_conversations, tokenize_sft
from llmrunner.tokenizer import configure_threads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.tokenize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["cpt", "sft"])
    parser.add_argument("--input", required=True, type=Path, help="processed .jsonl, or a raw dataset folder")
    parser.add_argument("--tokenizer", required=True, type=Path, help="HF model folder with the tokenizer")
    parser.add_argument("--out-prefix", required=True, type=Path, help="data/tokenized/<kind>/<dataset>")
    parser.add_argument("--settings", default="{}", help="the step's settings as one JSON object")
    parser.add_argument("--threads", type=int, help="tokenizer threads (overrides the settings' threads)")
    parser.add_argument("--shard", type=int, default=0, help="write only this shard (0-based) of --shards")
    parser.add_argument("--shards", type=int, default=1, help="how many shards the input is split into")
    parser.add_argument("--merge", nargs="*", type=Path, default=[], metavar="SHARD_PREFIX",
                        help="instead of tokenizing, merge these shard outputs (in order) into --out-prefix")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even when run by hand
    values = parse_settings(args.settings)
    settings_class = TokenizeCptSettings if args.kind == "cpt" else TokenizeSftSettings
    settings = settings_class.from_dict(values)
    if args.merge:
        names = ("text_document",) if args.kind == "cpt" else ("text_document", "loss_mask_document")
        stats = merge_shards(args.merge, args.out_prefix, names, CPT_SUMMED if args.kind == "cpt" else SFT_SUMMED)
        # A shard may be empty; the merged dataset may not (the unsharded job checks itself).
        (require_tokens if args.kind == "cpt" else require_conversations)(stats, args.out_prefix)
        return
    configure_threads(args.threads or settings.threads)
    inputs = resolve_inputs(args.input)
    shard = Shard(args.shard, args.shards)
    if args.kind == "cpt":
        tokenize_cpt(inputs, args.tokenizer, args.out_prefix, append_eod=settings.append_eod, shard=shard)
    else:
        tokenize_sft(inputs, args.tokenizer, args.out_prefix, max_tokens=settings.max_tokens,
                     overlong=settings.overlong, train_on=settings.train_on, shard=shard)


if __name__ == "__main__":
    run_main(main)
