"""python -m llmrunner.train {cpt,sft} --init MG_CKPT --data PREFIX [PREFIX ...] --save DIR --done FILE
    --settings JSON [--threads N]

With several processes per node (`nproc_per_node` > 1, or a SLURM job with several GPUs on the node)
the command replaces itself by torchrun running the same command in that many processes; in a SLURM
job over several nodes, by srun starting one torchrun per node (llmrunner/train/launch.py). Under
torchrun already (LOCAL_RANK set) it is one of those processes. The command locks the --save folder
for the whole run (folder_lock.py): a second trainer there stops at once. Entry code stays under the
__main__ guard: dist_checkpointing's writer spawns processes that re-import this module.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

from llmrunner.cli import parse_settings, run_main
from llmrunner.megatron import cpu_compat
from llmrunner.megatron.parallel import destroy_distributed
from llmrunner.train import folder_lock, run_state
from llmrunner.train.launch import (
    TimeLimitStop,
    exec_launch,
    export_stop_time,
    job_nodes,
    launch_command,
    node_address,
    processes_per_node,
)
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
    parser.add_argument("--threads", type=int,
                        help="CPU threads for the whole job (the rule's threads), shared by the nproc_per_node "
                             "processes; overrides the settings' threads")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even when run by hand
    if not torch.cuda.is_available():
        cpu_compat.pin_mkl_branch()  # before any computation, and for every process launched below
        cpu_compat.keep_freed_memory()  # each process its own (torchrun's workers run this too)
    settings = TrainSettings.from_dict(parse_settings(args.settings))
    nproc = processes_per_node(settings.nproc_per_node, os.environ)
    export_stop_time(settings.stop_before_time_limit)  # before launching: every process inherits it
    launch = launch_command(argv, nproc, os.environ, nodes=job_nodes, address=node_address)
    if "LOCAL_RANK" in os.environ:  # a torchrun worker: its launcher checked the folder, this one shares it
        folder_lock.share(args.save)
    else:
        folder_lock.hold(args.save, [sys.executable, "-m", "llmrunner.train", *argv], launching=bool(launch))
    if launch:
        # Hash the inputs and ready the folder here, once, where no rank waits on a collective with a timeout
        # meanwhile; rank 0 then finds the decision made and the hashes recorded.
        run_state.prepare(args.kind, args.init, args.data, args.save, settings.fingerprint())
        exec_launch(launch)
    stop = TimeLimitStop.from_env()
    stop.install()  # SIGUSR2 / SIGTERM: checkpoint after the current step, then exit non-zero
    if args.threads:
        settings = dataclasses.replace(settings, threads=max(1, args.threads // nproc))
    try:
        run_training(args.kind, args.init, args.data, args.save, args.done, settings, stop)
    finally:
        destroy_distributed()


if __name__ == "__main__":
    run_main(main)
