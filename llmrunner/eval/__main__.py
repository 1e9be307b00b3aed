"""python -m llmrunner.eval --model HF_DIR --out reports/eval/<stage>/results.json --settings JSON"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.eval.core import evaluate_model, write_results
from llmrunner.eval.settings import EvalSettings
from llmrunner.eval.tasks import TASK_DATA_KEY


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.eval", description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="HF model folder (config, safetensors, tokenizer)")
    parser.add_argument("--out", required=True, type=Path,
                        help="results.json to write; lm-eval's own files go beside it")
    parser.add_argument("--settings", default="{}", help="the eval step's validated config as JSON")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (the Snakemake job's threads); overrides settings.threads")
    args = parser.parse_args(argv)

    settings = EvalSettings.from_dict(parse_settings(args.settings))
    task_files = {task: Path(getattr(settings, TASK_DATA_KEY[task])) for task in settings.tasks}
    threads = args.threads or settings.threads
    args.out.unlink(missing_ok=True)  # a failed run must not leave the previous results looking current
    output = evaluate_model(args.model, args.out.parent, task_files, batch_size=settings.batch_size,
                            max_length=settings.max_length, limit=settings.limit, threads=threads)
    write_results(args.out, args.model, output, asdict(settings) | {"threads": threads})


if __name__ == "__main__":
    run_main(main)
