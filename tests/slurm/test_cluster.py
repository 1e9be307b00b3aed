"""The local SLURM itself (seconds): partitions up, fake GPUs handed out through gres, a job over both nodes."""
from __future__ import annotations

import subprocess

import pytest

from tests.slurm.cluster import PARTITIONS, find_binary

pytestmark = pytest.mark.slurm


def run(*argv: str) -> str:
    proc = subprocess.run([find_binary(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"
    return proc.stdout


def test_partitions_are_up_and_idle(slurm_cluster):
    states = dict(line.split() for line in run("sinfo", "-h", "-o", "%R %t").splitlines())
    assert {p: states.get(p) for p in PARTITIONS} == {p: "idle" for p in PARTITIONS}


def test_a_gres_job_sees_a_gpu_and_a_cpu_job_none(slurm_cluster):
    show = "echo CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"
    assert run("srun", "-p", "gpu", "--gres=gpu:1", "bash", "-c", show).strip() == "CUDA_VISIBLE_DEVICES=0"
    assert run("srun", "-p", "cpu", "bash", "-c", show).strip() == "CUDA_VISIBLE_DEVICES=unset"
    jobs = {job["Partition"]: job for job in slurm_cluster.jobs()}
    assert jobs["gpu"]["TresPerNode"] == "gres:gpu:1" and "TresPerNode" not in jobs["cpu"]


def test_a_two_node_job_runs_a_task_on_each_node_with_its_own_gpu(slurm_cluster):
    show = "echo $SLURMD_NODENAME ${CUDA_VISIBLE_DEVICES-unset}"
    out = run("srun", "-p", "gpu", "--nodes=2", "--ntasks-per-node=1", "--gres=gpu:1", "bash", "-c", show)
    assert sorted(out.splitlines()) == sorted(f"{node} 0" for node in slurm_cluster.nodes)
