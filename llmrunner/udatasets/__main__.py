"""Entry point of the udatasets step. One dataset in one process (the same output as the workflow's jobs):

    python -m llmrunner.udatasets --kind cpt|sft --input RAW_DIR_OR_FILE
        --out data/processed/<kind>/<dataset>.jsonl --settings JSON [--workers N] [--tokenizer HF_DIR]

The workflow's jobs, scatter/gather (a map job per shard i of n, then one gather job per dataset, which
reads the shard files of the datasets before it too, for de-dup across datasets):

    python -m llmrunner.udatasets shard --kind K --input RAW --dataset NAME --shard I --shards N
        --out SHARD_FILE --settings JSON [--workers N] [--tokenizer HF_DIR]
    python -m llmrunner.udatasets gather --kind K --shard-files FILE... --out OUT.jsonl --settings JSON

The one-process and shard forms take `--evalsets JSON` (a list of EvalSet.to_dict()) when the settings list
sets to `decontaminate`. The contamination report of an experiment (decontaminate.py), every training dataset
(a processed file, or a raw folder when udatasets is off) against every set given:

    python -m llmrunner.udatasets contamination --datasets KIND:NAME=PATH... --evalsets JSON --ngram N
        --min-words M
        --out reports/contamination.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.jsonl import resolve_inputs
from llmrunner.udatasets.core import gather_shards, map_and_gather, write_shard
from llmrunner.udatasets.readers import RAW_SUFFIXES
from llmrunner.udatasets.settings import UdatasetsSettings


def parser_for(form: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m llmrunner.udatasets{'' if form == 'one' else ' ' + form}",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if form == "contamination":
        parser.add_argument("--datasets", nargs="*", default=[], help="KIND:NAME=PATH of each training dataset")
        parser.add_argument("--evalsets", required=True, help="the eval sets, a JSON list of their definitions")
        parser.add_argument("--ngram", required=True, type=int, help="words per n-gram")
        parser.add_argument("--min-words", required=True, type=int,
                            help="eval texts shorter than the n-gram count whole from this many words")
        parser.add_argument("--out", required=True, type=Path, help="reports/contamination.json")
        return parser
    parser.add_argument("--kind", required=True, choices=["cpt", "sft"])
    parser.add_argument("--settings", default="{}", help="the step's settings as one JSON object")
    if form == "gather":
        parser.add_argument("--shard-files", nargs="+", required=True, type=Path,
                            help="shard files of the datasets before this one, then this dataset's, in shard order")
        parser.add_argument("--out", required=True, type=Path, help="data/processed/<kind>/<dataset>.jsonl")
        return parser
    parser.add_argument("--input", required=True, type=Path,
                        help="raw dataset folder (its data files are read in name order: "
                             + ", ".join(RAW_SUFFIXES) + ") or one file")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (the output does not change)")
    parser.add_argument("--tokenizer", default="", help="HF model folder whose tokenizer the token filters use")
    parser.add_argument("--evalsets", default="[]",
                        help="definitions of the eval sets that `decontaminate` lists (a JSON list)")
    if form == "one":
        parser.add_argument("--out", required=True, type=Path, help="data/processed/<kind>/<dataset>.jsonl")
        return parser
    parser.add_argument("--dataset", required=True, help="the dataset's name (pipeline.yaml)")
    parser.add_argument("--shard", required=True, type=int, help="this job's shard, 0 to N-1")
    parser.add_argument("--shards", required=True, type=int, help="the number of shards N")
    parser.add_argument("--out", required=True, type=Path, help="the shard file to write")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    form = argv[0] if argv and argv[0] in ("shard", "gather", "contamination") else "one"
    args = parser_for(form).parse_args(argv[1:] if form != "one" else argv)
    if form == "contamination":
        # imported here: the de-dup jobs need neither it nor the eval sets' modules (start-up time)
        from llmrunner.udatasets import decontaminate

        report = decontaminate.contamination_report([decontaminate.parse_dataset_arg(d) for d in args.datasets],
                                                    decontaminate.read_evalsets(args.evalsets), args.ngram,
                                                    args.min_words)
        decontaminate.write_report(report, args.out)
        return
    settings = UdatasetsSettings.from_dict(parse_settings(args.settings))
    if form == "gather":
        gather_shards(args.shard_files, args.out, dedup=settings.dedup, near=settings.minhash(),
                      augment=settings.augment_settings(args.kind))
        return
    if args.workers < 1:
        raise SystemExit(f"--workers must be at least 1, got {args.workers}")
    tokenizer = Path(args.tokenizer) if args.tokenizer else None
    inputs = resolve_inputs(args.input, RAW_SUFFIXES)
    if form == "one":
        dataset = args.out.name.removesuffix(".jsonl")  # the outputs are named after the dataset
        rules = settings.record_rules(args.kind, dataset, tokenizer, args.evalsets)
        map_and_gather(inputs, args.out, rules, dedup=settings.dedup, augment=settings.augment_settings(args.kind),
                        workers=args.workers)
        return
    if not 0 <= args.shard < args.shards:
        raise SystemExit(f"--shard must be from 0 to --shards - 1 ({args.shards - 1}), got {args.shard}")
    rules = settings.record_rules(args.kind, args.dataset, tokenizer, args.evalsets)
    write_shard(inputs, args.out, rules, args.dataset, args.shard, args.shards, workers=args.workers)


if __name__ == "__main__":
    run_main(main)
