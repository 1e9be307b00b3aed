"""The launch command the training entry point builds from its environment (one machine, one SLURM node,
several SLURM nodes), and the stop ahead of a SLURM job's time limit. Plain functions of the environment:
no cluster needed."""
from __future__ import annotations

import signal
import time
from datetime import datetime

import pytest

from llmrunner.train.launch import (
    STOP_AT_ENV,
    TimeLimitStop,
    expand_hostlist,
    gpus_on_node,
    job_nodes,
    launch_command,
    node_address,
    outside_the_step,
    processes_per_node,
    stop_time,
)

ARGV = ["cpt", "--init", "mg/base", "--data", "tok/a", "--save", "ckpt", "--done", "ckpt/complete.json"]
TRAIN = ["-m", "llmrunner.train", *ARGV]
# What the job step of `sbatch --nodes=4 --gres=gpu:8 --cpus-per-task=64` sees (Snakemake's srun -n1 step runs
# on one node: its SLURM_JOB_NODELIST names that node only), and the job's nodes, as squeue lists them.
FOUR_NODES = {"SLURM_JOB_ID": "81234", "SLURM_JOB_NODELIST": "gpu007", "SLURM_NODELIST": "gpu007",
              "SLURM_GPUS_ON_NODE": "8", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "SLURM_CPUS_PER_TASK": "64",
              "SLURM_NNODES": "1", "SLURM_STEP_ID": "0", "SLURM_CONF": "/etc/slurm/slurm.conf"}
JOB_NODES = expand_hostlist("gpu[007-009],gpu012")
# launch_command's resolvers, as job_nodes and node_address answer in that job (a node name that resolves), on one
# node, and outside SLURM
IN_THE_JOB = {"nodes": lambda env: JOB_NODES, "address": str}
ONE_NODE = {"nodes": lambda env: ["vm"], "address": str}
NO_SLURM = {"nodes": lambda env: [], "address": str}


@pytest.mark.parametrize("hostlist, hosts", [
    ("vm", ["vm"]),
    ("gpu[007-009],gpu012", ["gpu007", "gpu008", "gpu009", "gpu012"]),
    ("n[1-2,10],login-a", ["n1", "n2", "n10", "login-a"]),
    ("rack[1-2]-gpu", ["rack1-gpu", "rack2-gpu"]),
])
def test_slurm_node_lists_expand_to_host_names(hostlist, hosts):
    assert expand_hostlist(hostlist) == hosts


def test_multi_node_job_starts_one_torchrun_per_node_meeting_at_the_first_node():
    nproc = processes_per_node(1, FOUR_NODES)
    cmd = launch_command(ARGV, nproc, FOUR_NODES, **IN_THE_JOB, python="/venv/bin/python")
    srun, torchrun = cmd[:cmd.index("/venv/bin/python")], cmd[cmd.index("/venv/bin/python"):]
    assert srun == ["srun", "--jobid=81234", "--overlap", "--nodes=4", "--ntasks=4", "--ntasks-per-node=1",
                    "--cpus-per-task=64", "--kill-on-bad-exit=1"]
    port = int(torchrun[torchrun.index("--rdzv_endpoint") + 1].split(":")[1])
    assert torchrun == ["/venv/bin/python", "-m", "torch.distributed.run", "--nnodes", "4", "--nproc_per_node", "8",
                        "--rdzv_backend", "c10d", "--rdzv_endpoint", f"gpu007:{port}", "--rdzv_id", "81234", *TRAIN]
    assert 1024 < port < 65536
    other_job = launch_command(ARGV, nproc, {**FOUR_NODES, "SLURM_JOB_ID": "81235"}, **IN_THE_JOB,
                               python="/venv/bin/python")
    assert other_job[other_job.index("--rdzv_endpoint") + 1] != f"gpu007:{port}"


def test_the_rendezvous_listens_at_the_first_node_s_address():
    """Node names need not resolve: the rendezvous host is what `address` (SLURM's NodeAddr in a job) says."""
    addresses = {"gpu007": "10.1.0.7"}
    cmd = launch_command(ARGV, 8, FOUR_NODES, nodes=lambda env: JOB_NODES, address=addresses.get, python="py")
    assert cmd[cmd.index("--rdzv_endpoint") + 1].startswith("10.1.0.7:")


def fake_slurm_command(folder, name: str, script: str) -> None:
    """A stand-in for a SLURM client on PATH: a shell script that gets the real one's arguments."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)


def test_the_address_is_slurm_s_node_addr_else_the_node_name(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    assert node_address("gpu007") == "gpu007"  # no scontrol here
    # scontrol show node gpu007 --oneliner, as SLURM 22.05 prints it (shortened)
    fake_slurm_command(bin_dir, "scontrol", 'test "$3" = gpu007 || exit 1\n'
                       'echo "NodeName=$3 Arch=x86_64 NodeAddr=10.1.0.7 NodeHostName=$3 Version=22.05.8"')
    assert node_address("gpu007") == "10.1.0.7"
    assert node_address("gpu999") == "gpu999"  # scontrol fails: "Node gpu999 not found"


def test_the_job_s_nodes_come_from_squeue_not_from_the_job_step(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    fake_slurm_command(bin_dir, "squeue", 'test "$3" = 81234 && echo "gpu[007-009],gpu012"')
    assert job_nodes(FOUR_NODES) == JOB_NODES
    assert job_nodes({}) == []  # outside SLURM: nothing asked
    fake_slurm_command(bin_dir, "squeue", "exit 1")  # squeue cannot say: the step's own list, better than none
    assert job_nodes(FOUR_NODES) == ["gpu007"]


def test_the_step_setting_overrides_the_gpu_count():
    assert processes_per_node(4, FOUR_NODES) == 4
    cmd = launch_command(ARGV, processes_per_node(4, FOUR_NODES), FOUR_NODES, **IN_THE_JOB, python="py")
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4"


def test_one_node_runs_torchrun_standalone_or_trains_in_place():
    one_node = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "vm", "SLURM_GPUS_ON_NODE": "2",
                "CUDA_VISIBLE_DEVICES": "0,1"}
    assert launch_command(ARGV, processes_per_node(1, one_node), one_node, **ONE_NODE, python="py") == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *TRAIN]
    one_gpu = {**one_node, "SLURM_GPUS_ON_NODE": "1", "CUDA_VISIBLE_DEVICES": "0"}
    assert launch_command(ARGV, processes_per_node(1, one_gpu), one_gpu, **ONE_NODE) == []
    # no SLURM, no GPU: today's path (one process, or torchrun --standalone for nproc_per_node > 1)
    assert launch_command(ARGV, processes_per_node(1, {}), {}, **NO_SLURM) == []
    assert launch_command(ARGV, processes_per_node(3, {}), {}, **NO_SLURM, python="py")[:6] == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3"]


def test_a_torchrun_worker_trains_in_place_without_asking_slurm():
    def never(*_):
        raise AssertionError("a worker asked SLURM for the job's nodes or an address")

    assert launch_command(ARGV, 8, {**FOUR_NODES, "LOCAL_RANK": "3"}, nodes=never, address=never) == []


def test_the_multi_node_srun_leaves_the_job_step_behind():
    """The srun over every node must not carry the step's SLURM_* values (they cap it at the step's one node)."""
    env = outside_the_step({**FOUR_NODES, "PATH": "/bin", "LLMRUNNER_STOP_AT": "1800000000"})
    assert env == {"SLURM_JOB_ID": "81234", "SLURM_CONF": "/etc/slurm/slurm.conf", "PATH": "/bin",
                   "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "LLMRUNNER_STOP_AT": "1800000000"}


def test_gpus_come_from_slurm_else_from_cuda_visible_devices():
    assert gpus_on_node({"SLURM_GPUS_ON_NODE": "4", "CUDA_VISIBLE_DEVICES": "0"}) == 4
    assert gpus_on_node({"CUDA_VISIBLE_DEVICES": "2,3"}) == 2
    assert gpus_on_node({"CUDA_VISIBLE_DEVICES": ""}) == gpus_on_node({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    assert processes_per_node(1, {}) == 1


def test_the_stop_time_is_the_job_end_minus_the_margin():
    end = datetime(2026, 11, 29, 17, 5, 0)
    assert stop_time(end.isoformat(), 600) == end.timestamp() - 600
    assert stop_time("N/A", 600) is None and stop_time("Unknown", 600) is None and stop_time("", 600) is None
    assert stop_time(end.isoformat(), 0) is None


def test_a_past_stop_time_stops_like_the_wall_time_signal(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        assert TimeLimitStop.from_env({STOP_AT_ENV: f"{time.time() + 3600:.0f}"}).agreed() == 0
        assert TimeLimitStop.from_env({}).agreed() == 0
        assert TimeLimitStop.from_env({STOP_AT_ENV: f"{time.time() - 1:.0f}"}).agreed() == signal.SIGUSR2
    finally:
        dist.destroy_process_group()
