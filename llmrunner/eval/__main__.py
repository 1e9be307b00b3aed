"""python -m llmrunner.eval --model HF_DIR --stage base|cpt|sft --out reports/eval/<stage>/results.json
--settings JSON --evalsets JSON --datapool DATAPOOL [--threads N]"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.errors import LLMRunnerError
from llmrunner.eval.core import evaluate_model, write_results
from llmrunner.eval.settings import EvalSettings
from llmrunner.evalsets import evalsets_from_json, write_version_record
from llmrunner.tracking import log_summary


def eval_summary(results: dict) -> dict:
    """What the eval job logs to W&B (when tracking is on): each set's score, version and item count."""
    return {f"{name}/{key}": s[key] for name, s in results["sets"].items() for key in ("score", "version", "items")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.eval", description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="HF model folder (config, safetensors, tokenizer)")
    parser.add_argument("--stage", required=True, choices=("base", "cpt", "sft"),
                        help="which model this is: sft prompts generation sets through the chat template")
    parser.add_argument("--out", required=True, type=Path,
                        help="results.json to write; lm-eval's own files and items/<set>.jsonl go beside it")
    parser.add_argument("--settings", default="{}", help="the eval step's validated config as JSON")
    parser.add_argument("--evalsets", required=True, help="the sets to score: JSON list of EvalSet.to_dict()")
    parser.add_argument("--datapool", required=True, type=Path,
                        help="datapool folder: each scored set version is recorded under evalsets/<name>/")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (the Snakemake job's threads); overrides settings.threads")
    args = parser.parse_args(argv)

    settings = EvalSettings.from_dict(parse_settings(args.settings))
    evalsets = list(evalsets_from_json(args.evalsets).values())
    if not evalsets:
        raise LLMRunnerError("--evalsets lists no eval set; the eval step needs at least one")
    threads = args.threads or settings.threads
    args.out.unlink(missing_ok=True)  # a failed run must not leave the previous results looking current
    output, scored = evaluate_model(args.model, args.out.parent, evalsets, args.stage,
                                    batch_size=settings.batch_size, max_length=settings.max_length,
                                    dtype=settings.dtype, limit=settings.limit, threads=threads)
    for evalset in evalsets:
        result = scored[evalset.name]
        write_version_record(str(args.datapool), evalset, result.summary["version"], result.ids)
    summary = write_results(args.out, args.model, args.stage, output, scored,
                            asdict(settings) | {"threads": threads})
    # results.json: <DATAPOOL_ROOT>/reports/eval/<stage>/results.json
    log_summary(f"eval-{args.stage}", args.out.parents[3], "eval", args.out.parent, eval_summary(summary))


if __name__ == "__main__":
    run_main(main)
