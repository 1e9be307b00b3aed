"""python -m llmrunner.convert hf2mg --hf HF_DIR --out MG_DIR --settings JSON [--threads N]
python -m llmrunner.convert mg2hf --mg MG_DIR --hf-side HF_DIR --out HF_OUT --settings JSON [--threads N]

Both end with a logits parity check (written to <out>/parity.json) and fail when it does not pass.
--threads N (the Snakemake job's threads) overrides the settings' threads. With `command` in the
settings, that external converter writes the output instead (its output goes to --command-log,
default <out>.command.log), and <out>/convert_command.json records what ran.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.convert.core import convert_hf_to_megatron, convert_megatron_to_hf
from llmrunner.convert.external import convert_hf_to_megatron_external, convert_megatron_to_hf_external
from llmrunner.convert.settings import ConvertSettings

log = logging.getLogger("llmrunner.convert")


def _convert(args: argparse.Namespace, settings: ConvertSettings) -> str:
    """Run the built-in or the external converter; return what the parity check found."""
    options = {"tolerance": settings.parity_tolerance, "threads": args.threads or settings.threads}
    if settings.command is None:
        if args.command == "hf2mg":
            parity = convert_hf_to_megatron(args.hf, args.out, **options)
        else:
            parity = convert_megatron_to_hf(args.mg, args.hf_side, args.out, patterns=settings.copy_hf_files,
                                            tolerance_bf16=settings.parity_tolerance_bf16, dtype=settings.dtype,
                                            **options)
    else:
        options.update(command=settings.command,
                       command_log=args.command_log or args.out.with_name(args.out.name + ".command.log"))
        if args.command == "hf2mg":
            parity = convert_hf_to_megatron_external(args.hf, args.out, **options)["parity"]
        else:
            parity = convert_megatron_to_hf_external(args.mg, args.hf_side, args.out,
                                                     patterns=settings.copy_hf_files, **options)["parity"]
    if isinstance(parity, str):  # skipped, and why
        return f"parity {parity}"
    found = f"max |logit diff| {parity['max_abs_logit_diff']:.3g} (tolerance {parity['tolerance']:g})"
    if "bfloat16" in parity:
        bf16 = parity["bfloat16"]
        found += (f"; in bfloat16 {bf16['max_abs_logit_diff']:.3g} = {bf16['relative_diff']:.3g} x max |logit| "
                  f"(tolerance {bf16['tolerance']:g})")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    hf2mg = commands.add_parser("hf2mg", help="HF Qwen3/Qwen2/Llama folder -> Megatron checkpoint folder (iteration 0)")
    hf2mg.add_argument("--hf", required=True, type=Path, help="HF model folder (config.json + safetensors)")
    mg2hf = commands.add_parser("mg2hf", help="latest iteration of a Megatron checkpoint folder -> HF folder")
    mg2hf.add_argument("--mg", required=True, type=Path, help="Megatron checkpoint folder (with model.json)")
    mg2hf.add_argument("--hf-side", required=True, type=Path,
                       help="HF folder whose tokenizer and generation files are copied into the output")
    for sub in (hf2mg, mg2hf):
        sub.add_argument("--out", required=True, type=Path, help="output folder (replaced if written before)")
        sub.add_argument("--settings", default="{}", help="the step's validated config as JSON")
        sub.add_argument("--threads", type=int, help="torch CPU threads (overrides the settings' threads)")
        sub.add_argument("--command-log", type=Path, help="where the external command's output goes")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even when run by hand
    settings = ConvertSettings.from_dict(parse_settings(args.settings))
    log.info("%s done: %s", args.command, _convert(args, settings))


if __name__ == "__main__":
    run_main(main)
