"""python -m llmrunner.train {cpt,sft} --init MG_CKPT --data PREFIX [PREFIX ...] --save DIR --done FILE
    --settings JSON [--threads N]

Run under torchrun for several processes (tensor / pipeline / data parallel); a plain `python -m`
is one process. Entry code stays under the __main__ guard: dist_checkpointing's writer spawns
processes that re-import this module.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.megatron.parallel import destroy_distributed
from llmrunner.train.settings import TrainSettings
from llmrunner.train.trainer import KINDS, run_training


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llmrunner.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS,
                        help="cpt: GPTDataset over text; sft: packed conversations with loss masks")
    parser.add_argument("--init", required=True, type=Path,
                        help="Megatron checkpoint folder to start from (model.json + iter_*)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="data prefixes without _text_document (data/tokenized/<kind>/<dataset>)")
    parser.add_argument("--save", required=True, type=Path,
                        help="checkpoint folder (resumed when inputs are unchanged)")
    parser.add_argument("--done", required=True, type=Path, help="completion file written last (complete.json)")
    parser.add_argument("--settings", default="{}", help="the step's validated config as JSON")
    parser.add_argument("--threads", type=int, help="torch CPU threads (overrides the settings' threads)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even when run by hand
    # Schedulers stop a job with SIGTERM: leave through Python so the checkpoint writer's helper
    # process is shut down too (the last complete checkpoint is kept; the rerun resumes from it).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    settings = TrainSettings.from_dict(parse_settings(args.settings))
    if args.threads:
        settings = dataclasses.replace(settings, threads=args.threads)
    try:
        run_training(args.kind, args.init, args.data, args.save, args.done, settings)
    finally:
        destroy_distributed()


if __name__ == "__main__":
    run_main(main)
