"""python -m llmrunner.convert hf2mg --hf HF_DIR --out MG_DIR --settings JSON [--threads N]
python -m llmrunner.convert mg2hf --mg MG_DIR --hf-side HF_DIR --out HF_OUT --settings JSON [--threads N]

Both end with a logits parity check (written to <out>/parity.json) and fail when it does not pass.
--threads N (the Snakemake job's threads) overrides the settings' threads.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.convert.core import convert_hf_to_megatron, convert_megatron_to_hf
from llmrunner.convert.settings import ConvertSettings

log = logging.getLogger("llmrunner.convert")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    hf2mg = commands.add_parser("hf2mg", help="HF Qwen3 folder -> Megatron checkpoint folder (iteration 0)")
    hf2mg.add_argument("--hf", required=True, type=Path, help="HF model folder (config.json + safetensors)")
    mg2hf = commands.add_parser("mg2hf", help="latest iteration of a Megatron checkpoint folder -> HF folder")
    mg2hf.add_argument("--mg", required=True, type=Path, help="Megatron checkpoint folder (with model.json)")
    mg2hf.add_argument("--hf-side", required=True, type=Path,
                       help="HF folder whose tokenizer and generation files are copied into the output")
    for sub in (hf2mg, mg2hf):
        sub.add_argument("--out", required=True, type=Path, help="output folder (replaced if written before)")
        sub.add_argument("--settings", default="{}", help="the step's validated config as JSON")
        sub.add_argument("--threads", type=int, help="torch CPU threads (overrides the settings' threads)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even when run by hand
    settings = ConvertSettings.from_dict(parse_settings(args.settings))
    options = {"tolerance": settings.parity_tolerance, "threads": args.threads or settings.threads}
    if args.command == "hf2mg":
        result = convert_hf_to_megatron(args.hf, args.out, **options)
    else:
        result = convert_megatron_to_hf(args.mg, args.hf_side, args.out, **options)
    log.info("%s done: max |logit diff| %.3g (tolerance %g)", args.command, result["max_abs_logit_diff"],
             result["tolerance"])


if __name__ == "__main__":
    run_main(main)
