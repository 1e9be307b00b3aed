"""How the training command starts its processes, on one machine or in a SLURM job, and when it stops
ahead of the job's time limit.

Three layouts, chosen from the environment the command runs in:
- one process (nproc 1, one node): train here;
- one node, several processes: replace this process by `torchrun --standalone` (exec keeps the process id);
- a SLURM job over several nodes: replace this process by `srun --overlap --ntasks-per-node=1 torchrun ...`,
  one torchrun per node meeting at the first node of the job (c10d rendezvous at its SLURM NodeAddr).

Processes per node: the step's `nproc_per_node` when above 1, else one per GPU the job got on the node.

Time limit: Snakemake's SLURM executor runs a job's command under its own Snakemake process inside a job
step, and SLURM signals every process of a step, that Snakemake first: it dies on SIGUSR2, the job ends
and the training processes are killed `KillWait` later, mid-save (measured on SLURM 22.05 with
snakemake-executor-plugin-slurm 2.8). So the command reads the job's end time once (squeue) and every
rank stops by itself, with a checkpoint, `stop_before_time_limit` seconds ahead of it.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime

from llmrunner.train.stop import StopRequest

log = logging.getLogger("llmrunner.train")

# torchrun forwards these to its workers (its default list lacks SIGUSR2, SLURM's wall-time warning)
# and then waits this long for them to finish the step and save before killing them. Its default
# (30 s) is short for saving a large model; much longer would keep a job whose worker crashed alive
# that long, since torchrun also stops the surviving workers this way. Either can be set outside.
TORCHRUN_ENV = {"PET_SIGNALS_TO_HANDLE": "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR2",
                "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "120"}
# Every process of a run reads the stop time from here (epoch seconds), set once by the first one.
STOP_AT_ENV = "LLMRUNNER_STOP_AT"
# The rendezvous port on the first node: fixed per job, so two jobs sharing a node do not collide.
RDZV_PORT_BASE, RDZV_PORT_SPAN = 20000, 20000


def expand_hostlist(hostlist: str) -> list[str]:
    """SLURM's compact node list as host names: `gpu[01-03,07],login1` -> gpu01 gpu02 gpu03 gpu07 login1."""
    hosts = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?([^,]*)", hostlist):
        prefix, ranges, suffix = match.groups()
        if not ranges:
            hosts.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            for number in range(int(first), int(last or first) + 1):
                hosts.append(f"{prefix}{number:0{len(first)}d}{suffix}")
    return hosts


def gpus_on_node(env: Mapping[str, str]) -> int:
    """GPUs this job got on this node: SLURM's count, else the devices CUDA_VISIBLE_DEVICES names."""
    if env.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return int(env["SLURM_GPUS_ON_NODE"])
    visible = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    return len([d for d in visible.split(",") if d.strip()]) if visible and visible != "-1" else 0


def processes_per_node(nproc_per_node: int, env: Mapping[str, str]) -> int:
    """The step's nproc_per_node when above 1 (set on purpose), else one per GPU of the node (at least 1)."""
    return nproc_per_node if nproc_per_node > 1 else max(1, gpus_on_node(env))


def node_address(node: str) -> str:
    """The address SLURM reaches `node` at (its NodeAddr), where the other nodes can reach it too; the name
    itself when scontrol cannot say. Node names need not resolve (NodeName=gpu01 NodeAddr=10.1.0.1)."""
    try:
        proc = subprocess.run(["scontrol", "show", "node", node, "--oneliner"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError):
        return node
    match = re.search(r"\bNodeAddr=(\S+)", proc.stdout)
    return match.group(1) if proc.returncode == 0 and match else node


def job_nodes(env: Mapping[str, str]) -> list[str]:
    """The nodes of the SLURM job this command runs in ([] outside one), asked from squeue: inside a job step,
    as under Snakemake's SLURM executor (`srun -n1`), SLURM_JOB_NODELIST names the step's one node only
    (measured on SLURM 22.05)."""
    job = env.get("SLURM_JOB_ID")
    if not job:
        return []
    try:
        proc = subprocess.run(["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True, text=True, timeout=60)
        listed = proc.stdout.strip() if proc.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        listed = ""
    return expand_hostlist(listed or env.get("SLURM_JOB_NODELIST", ""))


def launch_command(argv: list[str], nproc: int, env: Mapping[str, str], *,
                   nodes: Callable[[Mapping[str, str]], list[str]], address: Callable[[str], str],
                   python: str = sys.executable) -> list[str]:
    """The command that runs `python -m llmrunner.train ARGV` as the layout needs; [] means: train here.

    `nodes` gives the SLURM job's nodes from `env` (job_nodes), `address` the host the rendezvous listens on
    for the first one's name (node_address). Both are asked only by the command that launches, not by its
    torchrun workers (thousands of squeue calls on a large job). A pure function when they are, so the
    multi-node command can be checked without a cluster.
    """
    if "LOCAL_RANK" in env:  # already one of torchrun's workers
        return []
    train = ["-m", "llmrunner.train", *argv]
    hosts = nodes(env)
    if len(hosts) > 1:
        port = RDZV_PORT_BASE + int(env["SLURM_JOB_ID"]) % RDZV_PORT_SPAN
        cpus = [f"--cpus-per-task={env['SLURM_CPUS_PER_TASK']}"] if env.get("SLURM_CPUS_PER_TASK") else []
        # --jobid: the whole allocation, not the job step this command runs in (exec_launch also drops the
        # step's SLURM_* variables, which would cap srun at the step's nodes); --overlap: that step (Snakemake's)
        # holds CPUs and GPUs on its node; --kill-on-bad-exit: a failed node ends the others.
        return ["srun", f"--jobid={env['SLURM_JOB_ID']}", "--overlap", f"--nodes={len(hosts)}",
                f"--ntasks={len(hosts)}", "--ntasks-per-node=1",
                *cpus, "--kill-on-bad-exit=1",
                python, "-m", "torch.distributed.run", "--nnodes", str(len(hosts)), "--nproc_per_node", str(nproc),
                "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{address(hosts[0])}:{port}",
                "--rdzv_id", env["SLURM_JOB_ID"], *train]
    if nproc > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *train]
    return []


def outside_the_step(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the SLURM_* variables of the job step it comes from (the job id and SLURM_CONF kept): an
    srun started with the step's SLURM_NNODES / SLURM_JOB_NODELIST refuses more nodes than the step has ("Only
    allocated 1 nodes asked for 2"), as Snakemake's SLURM executor does for its own srun."""
    return {k: v for k, v in env.items() if not k.startswith("SLURM_") or k in ("SLURM_JOB_ID", "SLURM_CONF")}


def exec_launch(cmd: list[str]) -> None:
    """Replace this process by `cmd`: a scheduler's signal to the job's command then reaches torchrun /
    srun, which forward it to every worker."""
    env = {**TORCHRUN_ENV, **os.environ}  # what the user set wins
    if cmd[0] == "srun":
        env = outside_the_step(env)
    program = shutil.which(cmd[0]) or cmd[0]
    log.info("launching: %s", " ".join(cmd))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(program, cmd, env)


def stop_time(end_time: str, stop_before_s: int) -> float | None:
    """Epoch seconds to stop at, from squeue's end time (`2026-11-29T17:05:00`, local time); None when
    the job has no time limit (squeue prints N/A or Unknown) or stopping early is off (0)."""
    try:
        end = datetime.fromisoformat(end_time.strip())
    except ValueError:
        return None
    return end.timestamp() - stop_before_s if stop_before_s > 0 else None


def job_end_time(job_id: str) -> str:
    """The job's end time as squeue prints it (empty when squeue cannot say)."""
    try:
        proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%e"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("cannot read the SLURM job's end time (%s): no stop before the time limit", err)
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def export_stop_time(stop_before_s: int, env: MutableMapping[str, str] = os.environ) -> None:
    """In a SLURM job, set STOP_AT_ENV once (the first process) for every process of the run."""
    if STOP_AT_ENV in env or not env.get("SLURM_JOB_ID") or stop_before_s <= 0:
        return
    at = stop_time(job_end_time(env["SLURM_JOB_ID"]), stop_before_s)
    if at is not None:
        env[STOP_AT_ENV] = f"{at:.0f}"
        log.info("SLURM job %s: stopping with a checkpoint after the step that ends past %s (%d s before its "
                 "time limit)", env["SLURM_JOB_ID"], datetime.fromtimestamp(at).isoformat(), stop_before_s)


class TimeLimitStop(StopRequest):
    """A StopRequest that also fires at a fixed time (STOP_AT_ENV), as if SIGUSR2 had arrived then."""

    def __init__(self, stop_at: float | None = None) -> None:
        super().__init__()
        self.stop_at = stop_at

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TimeLimitStop:
        return cls(float(env[STOP_AT_ENV]) if env.get(STOP_AT_ENV) else None)

    def agreed(self) -> int:
        if self.stop_at is not None and not self.signum and time.time() >= self.stop_at:
            log.warning("the SLURM job's time limit is near: stopping after this step with a checkpoint")
            self.signum = signal.SIGUSR2
        return super().agreed()
