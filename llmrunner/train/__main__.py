"""python -m llmrunner.train {cpt,sft} --init MG_CKPT --data PREFIX [PREFIX ...] --save DIR --done FILE
    --settings JSON [--threads N]

With `nproc_per_node` > 1 in the settings, the command replaces itself by torchrun running the same
command in that many processes (tensor / pipeline / data parallel on one node); under torchrun
already (LOCAL_RANK set) it is one of those processes. Entry code stays under the __main__ guard:
dist_checkpointing's writer spawns processes that re-import this module.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from llmrunner.cli import parse_settings, run_main
from llmrunner.megatron.parallel import destroy_distributed
from llmrunner.train.settings import TrainSettings
from llmrunner.train.stop import StopRequest
from llmrunner.train.trainer import KINDS, run_training

# torchrun forwards these to its workers (its default list lacks SIGUSR2, SLURM's wall-time warning)
# and then waits this long for them to finish the step and save before killing them. Its default
# (30 s) is short for saving a large model; much longer would keep a job whose worker crashed alive
# that long, since torchrun also stops the surviving workers this way. Either can be set outside.
TORCHRUN_ENV = {"PET_SIGNALS_TO_HANDLE": "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR2",
                "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "120"}


def exec_torchrun(nproc_per_node: int, argv: list[str]) -> None:
    """Replace this process by `torchrun --standalone --nproc_per_node N -m llmrunner.train ARGV`.

    Done here rather than in the rule so that the rule stays one plain command for any layout, and
    the same command works by hand. exec keeps the process id: a signal sent to the job's command
    (a scheduler's SIGTERM or SIGUSR2) reaches torchrun, which forwards it to every worker.
    """
    env = {**TORCHRUN_ENV, **os.environ}  # what the user set wins
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc_per_node),
           "-m", "llmrunner.train", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


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
    settings = TrainSettings.from_dict(parse_settings(args.settings))
    if settings.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        exec_torchrun(settings.nproc_per_node, argv)
    stop = StopRequest()
    stop.install()  # SIGUSR2 / SIGTERM: checkpoint after the current step, then exit non-zero
    if args.threads:
        settings = dataclasses.replace(settings, threads=max(1, args.threads // settings.nproc_per_node))
    try:
        run_training(args.kind, args.init, args.data, args.save, args.done, settings, stop)
    finally:
        destroy_distributed()


if __name__ == "__main__":
    run_main(main)
